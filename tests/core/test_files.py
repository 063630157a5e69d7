"""Hearth's own files are replaced whole or not at all, even with two Hearths saving together."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from desktop.core.cloud import Providers
from desktop.core.files import write_json
from desktop.core.settings import Sampling, Settings, SettingsFile

SAVES = 1500

# One Hearth process saving its settings over and over, as the app and a `hearth` command do.
SAVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from desktop.core.settings import Sampling, Settings, SettingsFile

    f = SettingsFile(Path(sys.argv[1]))
    failures = 0
    for i in range(int(sys.argv[2])):
        try:
            f.save(Settings(sampling=Sampling(seed=i), system_prompt=sys.argv[3] * 200))
        except OSError as exc:
            failures += 1
            print(type(exc).__name__, exc, file=sys.stderr)
    print(failures)
""")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_two_hearths_saving_settings_together_never_fail_and_the_file_is_always_whole(tmp_path):
    path = tmp_path / "settings.json"
    SettingsFile(path).save(Settings())
    root = Path(__file__).resolve().parents[2]
    savers = [subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(SAVES), who], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for who in ("A", "B")]
    reads = 0
    while any(s.poll() is None for s in savers):
        saved = json.loads(path.read_text(encoding="utf-8"))  # never half a file, never missing
        assert saved["system_prompt"] in ("A" * 200, "B" * 200, Settings().system_prompt)
        reads += 1
    for s in savers:
        out, err = s.communicate()
        assert s.returncode == 0, err
        assert out.strip() == "0", f"saves failed: {err[:500]}"
    assert reads > 0
    assert SettingsFile(path).load().system_prompt in ("A" * 200, "B" * 200)
    assert _leftovers(tmp_path) == []


def test_a_save_that_cannot_be_written_keeps_the_previous_settings(tmp_path):
    path = tmp_path / "settings.json"
    good = Settings(sampling=Sampling(temperature=0.3), system_prompt="Keep me.")
    SettingsFile(path).save(good)
    with pytest.raises(TypeError):
        SettingsFile(path).save(Settings(system_prompt=object()))  # type: ignore[arg-type]
    assert SettingsFile(path).load() == good
    assert _leftovers(tmp_path) == []


def test_a_save_that_fails_at_the_last_step_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "providers.json"
    target.mkdir()  # something that is not a file stands where the list goes: the rename fails
    (target / "inside").write_text("untouched")
    with pytest.raises(OSError):
        write_json(target, [{"name": "box"}])
    assert (target / "inside").read_text() == "untouched"
    assert _leftovers(tmp_path) == []


def test_providers_and_their_models_survive_a_failed_save(tmp_path):
    registry = Providers(tmp_path / "providers.json")
    registry.add("box", base_url="http://192.168.1.20:8000/v1", own=True)
    registry.set_models("box", ["llama-3"])
    with pytest.raises(TypeError):
        registry.set_models("box", [object()])  # type: ignore[list-item]
    assert [p.models for p in registry.all()] == [("llama-3",)]
    assert _leftovers(tmp_path) == []
