"""Build Hearth's installers from this checkout into dist/.

Everywhere: dist/Hearth/, the PyInstaller one-folder app (on macOS also dist/Hearth.app). Then on
Linux:
- dist/hearth-VERSION-linux-x86_64-BACKEND.tar.gz  the same folder, portable (double-click `Hearth`)
- dist/hearth_VERSION_BACKEND_amd64.deb           installs to /opt/hearth, with a menu entry and icon
On Windows, packaging/windows/hearth.iss (Inno Setup) makes the installer from dist/Hearth; on
macOS, packaging/macos/make_dmg.sh makes the disk image from dist/Hearth.app.

The llama.cpp backend is whichever llama-cpp-python this Python has (`make package BACKEND=…`
installs the matching wheel first). Usage: python packaging/build.py [--backend cpu] [--no-freeze]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
WORK = ROOT / "build" / "package"
# System libraries the bundled Qt loads to draw on an X11 or Wayland desktop (Qt itself is inside).
DEB_DEPENDS = ("libc6 (>= 2.31), libgl1, libegl1, libfontconfig1, libfreetype6, libdbus-1-3, libglib2.0-0, "
               "libxkbcommon0, libxkbcommon-x11-0, libxcb-cursor0, libxcb-icccm4, libxcb-image0, "
               "libxcb-keysyms1, libxcb-randr0, libxcb-render-util0, libxcb-shape0, libxcb-xinerama0, "
               "libxcb-xkb1, libx11-xcb1")

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "packaging"))


def version() -> str:
    from desktop import __version__

    return __version__


def freeze() -> Path:
    """Run PyInstaller with packaging/hearth.spec; returns dist/Hearth."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                    "--distpath", str(DIST), "--workpath", str(WORK / "pyinstaller"),
                    str(ROOT / "packaging" / "hearth.spec")], check=True, cwd=ROOT)
    app = DIST / "Hearth"
    print(f"froze {app} in {time.monotonic() - started:.0f} s ({folder_size(app) / 1e6:.0f} MB)")
    return app


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def licence_texts(app: Path) -> None:
    """Each bundled distribution's own licence files, into the app's licenses/ folder."""
    import json
    from importlib import metadata

    folder = app / "licenses"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    shutil.copy(ROOT / "LICENSE", folder / "Hearth-LICENSE.txt")
    components = json.loads((ROOT / "resources" / "licenses.json").read_text(encoding="utf-8"))["components"]
    for dist in sorted({c["dist"] for c in components if c["dist"] and c["dist"] != "hearth"}):
        files = [f for f in metadata.distribution(dist).files or ()
                 if any(k in f.name.upper() for k in ("LICENSE", "LICENCE", "COPYING", "NOTICE"))]
        for f in files:
            shutil.copy(f.locate(), folder / f"{dist}-{f.name}")


def tarball(app: Path, backend: str) -> Path:
    target = DIST / f"hearth-{version()}-linux-x86_64-{backend}.tar.gz"
    with tarfile.open(target, "w:gz", compresslevel=6) as tar:
        tar.add(app, arcname="Hearth")
    return target


def deb(app: Path, backend: str, icons: dict[int, Path]) -> Path:
    stage = WORK / "deb"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(app, stage / "opt" / "hearth", symlinks=True)
    (stage / "usr" / "bin").mkdir(parents=True)
    (stage / "usr" / "bin" / "hearth").symlink_to("../../opt/hearth/Hearth")
    apps = stage / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    desktop = (ROOT / "resources" / "hearth.desktop").read_text(encoding="utf-8")
    (apps / "hearth.desktop").write_text(desktop.replace("Exec=hearth", "Exec=/opt/hearth/Hearth"), encoding="utf-8")
    for size, png in icons.items():
        folder = stage / "usr" / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        folder.mkdir(parents=True)
        shutil.copy(png, folder / "hearth.png")
    control = stage / "DEBIAN"
    control.mkdir()
    installed_kb = folder_size(stage) // 1024
    (control / "control").write_text(
        f"Package: hearth\n"
        f"Version: {version()}\n"
        f"Architecture: amd64\n"
        f"Maintainer: Hearth developers <hearth@users.noreply.github.com>\n"
        f"Installed-Size: {installed_kb}\n"
        f"Depends: {DEB_DEPENDS}\n"
        f"Section: utils\n"
        f"Priority: optional\n"
        f"Homepage: https://github.com/hearth-app/hearth\n"
        f"Description: Private, local chat with open LLMs ({backend} build)\n"
        f" Hearth finds and downloads open models (GGUF) from the Hugging Face hub and runs them\n"
        f" on this computer with llama.cpp, fully offline. Chats stay on your disk. An optional\n"
        f" cloud tab compares local and cloud models side by side.\n", encoding="utf-8")
    target = DIST / f"hearth_{version()}_{backend}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(target)], check=True,
                   stdout=subprocess.DEVNULL)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=os.environ.get("BACKEND", "cpu"))
    parser.add_argument("--no-freeze", action="store_true", help="package the dist/Hearth already built")
    args = parser.parse_args()
    DIST.mkdir(exist_ok=True)
    app = DIST / "Hearth" if args.no_freeze else freeze()
    licence_texts(app)
    if not sys.platform.startswith("linux"):
        print(f"{app} is ready: see packaging/windows/hearth.iss or packaging/macos/make_dmg.sh for the installer")
        return 0
    artifacts = [tarball(app, args.backend)]
    if shutil.which("dpkg-deb"):
        from icons import PNG_FOLDER, PNG_SIZES

        artifacts.append(deb(app, args.backend, {n: PNG_FOLDER / f"hearth-{n}.png" for n in PNG_SIZES}))
    else:
        print("dpkg-deb not found: no .deb built", file=sys.stderr)
    for path in artifacts:
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
