"""`make run`'s first step: the starter model is added only when no model is installed."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _install(model_file):
    return subprocess.run([sys.executable, "tools/starter.py", "install", str(model_file)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _models():
    out = subprocess.run([sys.executable, "-m", "desktop", "models", "list", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    return [m["id"] for m in json.loads(out)]


def test_the_starter_model_is_added_on_first_run_only(home, model_file):
    first = _install(model_file)
    assert first.returncode == 0, first.stderr
    assert "Added the starter model SmolLM2-135M-Instruct" in first.stdout
    assert _models() == ["smollm2-135m-instruct-q4_1"]
    assert (home / "models" / "local").is_dir()
    subprocess.run([sys.executable, "-m", "desktop", "models", "rm", "smollm2"], cwd=ROOT, timeout=60)
    # A user who removed it and has none... gets it again; one who has a model keeps theirs alone.
    assert _install(model_file).returncode == 0
    again = _install(model_file)
    assert again.returncode == 0 and again.stdout == ""
    assert _models() == ["smollm2-135m-instruct-q4_1"]
