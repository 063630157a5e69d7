"""The installers `make package` builds: the frozen app starts with no Python around it, loads the
starter model in its own engine child (itself, started again with `engine`), streams an answer,
and writes only to the user's folders; the .deb has the files and control fields a package
manager needs, and the app runs from an unpacked copy of it.

Skipped when dist/ has no build (run `make package`); `.ci/run` builds one and sets
HEARTH_REQUIRE_PACKAGE=1, which makes a missing build a failure instead."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from desktop import __version__

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dist" / "Hearth"
DEB = next(iter(sorted((ROOT / "dist").glob(f"hearth_{__version__}_*_amd64.deb"))), None) \
    if (ROOT / "dist").is_dir() else None

if not (APP / "Hearth").exists():
    if os.environ.get("HEARTH_REQUIRE_PACKAGE"):
        raise RuntimeError("HEARTH_REQUIRE_PACKAGE is set but dist/Hearth was not built: run `make package`")
    pytest.skip("no packaged app in dist/: run `make package`", allow_module_level=True)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No virtual environment, no PYTHONPATH: what a double-click gets."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "QT_QPA_PLATFORM": "offscreen", **extra}
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    return env


def run(exe: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout)


def read_only_copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return dest


def test_the_frozen_app_chats_from_a_read_only_folder_and_keeps_its_data_in_the_users_folders(tmp_path, model_file):
    app = read_only_copy(APP, tmp_path / "Hearth")  # as if installed where the user may not write
    env = clean_env(tmp_path)
    version = run(app / "Hearth", "--version", env=env)
    assert version.returncode == 0 and version.stdout.strip() == f"Hearth {__version__}"
    added = run(app / "Hearth", "models", "import", "--link", str(model_file), env=env)
    assert added.returncode == 0, added.stderr
    test = run(app / "Hearth", "--self-test", env=env)
    assert test.returncode == 0, test.stderr + test.stdout
    assert "self-test: ok" in test.stdout
    data = Path(env["HOME"]) / ".local" / "share" / "Hearth"
    assert (data / "hearth.db").exists()  # platformdirs' place for the user's data
    assert "hearth-engine: ready" in (Path(env["HOME"]) / ".local" / "state" / "Hearth" / "log" / "engine.log").read_text()


def test_the_deb_has_what_a_package_manager_needs_and_its_app_runs(tmp_path, model_file):
    assert DEB is not None, "no .deb in dist/"
    info = subprocess.run(["dpkg-deb", "--field", str(DEB)], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line and not line.startswith(" "))
    assert (fields["Package"], fields["Version"], fields["Architecture"]) == ("hearth", __version__, "amd64")
    assert "libxcb-cursor0" in fields["Depends"] and int(fields["Installed-Size"]) > 100_000
    contents = subprocess.run(["dpkg-deb", "--contents", str(DEB)], capture_output=True, text=True,
                              check=True).stdout
    for path in ("./opt/hearth/Hearth", "./usr/share/applications/hearth.desktop",
                 "./usr/share/icons/hicolor/256x256/apps/hearth.png", "./usr/share/icons/hicolor/48x48/apps/hearth.png",
                 "./usr/bin/hearth -> ../../opt/hearth/Hearth"):
        assert path in contents, path
    assert "root/root" in contents.splitlines()[0]

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(DEB), str(root)], check=True)
    desktop = (root / "usr" / "share" / "applications" / "hearth.desktop").read_text()
    assert "Exec=/opt/hearth/Hearth" in desktop and "Icon=hearth" in desktop
    env = clean_env(tmp_path, HEARTH_HOME=str(tmp_path / "data"))
    assert run(root / "opt" / "hearth" / "Hearth", "models", "import", "--link", str(model_file), env=env).returncode == 0
    test = run(root / "usr" / "bin" / "hearth", "--self-test", env=env)
    assert test.returncode == 0 and "self-test: ok" in test.stdout, test.stderr
