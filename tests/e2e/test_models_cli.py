"""`hearth models …` with names from outside, other apps' folders and files that move: the real
command in a subprocess, with HEARTH_HOME (and HOME, for other apps' folders) in tmp_path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.e2e.test_cli import hearth
from tests.gguf_forge import write_gguf


def forge(path, name="m", width=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(path, {"general.architecture": "llama", "general.name": name, "general.file_type": 0},
                      [("token_embd.weight", [64, width], 0)])


@pytest.fixture
def env(home, tmp_path, monkeypatch):
    """The environment of a person whose home folder is tmp_path/user (other apps' models live there)."""
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    return os.environ.copy()


def test_names_in_any_script_and_with_control_characters_list_safely(env, tmp_path):
    hostile = "evil\nID  NAME\x1b[2J\u202eoops"
    for i, name in enumerate(("Модель A", "日本語モデル", hostile)):
        added = hearth("models", "import", str(forge(tmp_path / "in" / f"{name}.gguf", width=16 + i)), env=env)
        assert added.returncode == 0, added.stderr
        assert "Traceback" not in added.stderr
    table = hearth("models", "list", env=env).stdout
    lines = table.splitlines()
    assert len(lines) == 4  # the header and one line a model: no name breaks a line
    assert "\x1b" not in table and "\u202e" not in table
    assert any("evil\\nID  NAME\\x1b[2J\\u202eoops" in line for line in lines)
    assert any(line.startswith("ribenyumoderu") and "日本語モデル" in line for line in lines)
    listed = json.loads(hearth("models", "list", "--json", env=env).stdout)
    assert sorted(m["name"] for m in listed) == sorted(["Модель A", "日本語モデル", hostile])  # the real names
    assert sorted(m["id"] for m in listed) == ["evil-id-name-2joops", "model-a", "ribenyumoderu"]


def test_an_empty_or_short_reference_removes_nothing_and_says_so(env, tmp_path):
    for name, width in (("qwen-small", 16), ("qwen-large", 17)):
        assert hearth("models", "import", "--link", str(forge(tmp_path / f"{name}.gguf", width=width)),
                      env=env).returncode == 0
    for ref, words in (("", "Nothing was removed. No model was named"),
                       ("  ", "Nothing was removed. No model was named"),
                       ("qw", "“qw” is too short to pick a model"),
                       ("qwen", "“qwen” could mean several models: qwen-large, qwen-small")):
        result = hearth("models", "rm", ref, env=env)
        assert result.returncode == 1
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    assert len(json.loads(hearth("models", "list", "--json", env=env).stdout)) == 2
    for args in (("chat", "-m", " ", "Hello?"), ("models", "info", "")):  # the same rule wherever a model is named
        result = hearth(*args, env=env)
        assert result.returncode == 1 and result.stderr == ("hearth: No model was named: give an installed "
                                                            "model's id (`hearth models list` shows them).\n")
    assert hearth("models", "rm", "qwen-s", env=env).stdout.startswith("Removed qwen-small")


def test_a_255_byte_file_name_imports_and_leaves_nothing_else(env, tmp_path, home):
    name = "д" * 125 + ".gguf"  # 255 bytes
    result = hearth("models", "import", str(forge(tmp_path / name)), env=env)
    assert result.returncode == 0, result.stderr
    files = [p for p in (home / "models").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name.endswith(".gguf") and len(files[0].name.encode()) <= 200


def test_models_found_lists_other_apps_models_and_why_it_skipped_entries(env, tmp_path):
    user = tmp_path / "user"
    lm = forge(user / ".lmstudio/models/org/repo/phi-Q4_0.gguf", width=16)
    os.mkfifo(user / ".lmstudio/models/org/repo/stuck.gguf")
    ollama = user / ".ollama/models"
    forge(ollama / "blobs/sha256-9a8b", width=17)
    manifest = ollama / "manifests/registry.ollama.ai/library/llama3.2/latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:9a8b"}]}))
    (manifest.parent / "1b").symlink_to("/dev/zero")
    here = os.getcwd()
    os.chdir(manifest.parent)  # a socket's path must be short: bind it by its relative name
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("socket")
    finally:
        os.chdir(here)
    try:
        found = json.loads(hearth("models", "found", "--json", env=env, timeout=60).stdout)
    finally:
        sock.close()
    assert [(f["app"], f["name"], f["in_hearth"]) for f in found["found"]] == [
        ("LM Studio", "phi-Q4_0.gguf", ""), ("Ollama", "llama3.2:latest", "")]
    assert found["found"][0]["path"] == str(lm) and found["found"][0]["size"] == lm.stat().st_size
    assert {(os.path.basename(s["path"]), s["reason"]) for s in found["skipped"]} == {
        ("stuck.gguf", "not a regular file: it is a pipe (FIFO)"),
        ("1b", "not a regular file: it is a device"),
        ("socket", "not a regular file: it is a socket"),
    }
    # a path from the list is what `import --link` takes; Ollama's blob gets its model:tag name
    for f in found["found"]:
        linked = hearth("models", "import", "--link", f["path"], env=env)
        assert linked.returncode == 0, linked.stderr
    assert "as “llama3-2-latest”" in linked.stdout
    again = hearth("models", "found", "--verbose", env=env)
    assert "llama3-2-latest" in again.stdout and "phi-q4_0" in again.stdout
    assert f"skipped {manifest.parent / '1b'}: not a regular file: it is a device" in again.stdout


def test_a_model_whose_file_is_gone_is_marked_and_found_again(env, tmp_path):
    original = forge(tmp_path / "here/travels.gguf")
    hearth("models", "import", "--link", str(original), env=env)
    moved = tmp_path / "travels-moved.gguf"
    original.rename(moved)
    listed = hearth("models", "list", env=env)
    assert "linked · File missing" in listed.stdout
    assert json.loads(hearth("models", "list", "--json", env=env).stdout)[0]["file_problem"] == "File missing"
    os.mkfifo(original)  # where the file was, now a pipe: info must not open it
    info = hearth("models", "info", "travels", "--json", env=env, timeout=30)
    assert json.loads(info.stdout)["file_problem"] == "File missing"
    original.unlink()
    chat = hearth("chat", "-m", "travels", "Hello?", env=env)
    assert chat.returncode == 1 and "Traceback" not in chat.stderr
    assert chat.stderr.startswith("hearth: The file of “travels” is missing: it was at ")
    wrong = hearth("models", "locate", "travels", str(forge(tmp_path / "other.gguf", width=40)), env=env)
    assert "is not the file of travels: its content differs" in wrong.stderr
    assert hearth("models", "locate", "travels", str(moved), env=env).returncode == 0
    assert "File missing" not in hearth("models", "list", env=env).stdout


def test_removing_by_a_shared_name_removes_nothing_and_a_gone_id_never_removes_its_twin(env, tmp_path):
    for folder, width in (("a", 16), ("b", 17)):  # two different models, both called "Модель A"
        assert hearth("models", "import", str(forge(tmp_path / folder / "Модель A.gguf", width=width)),
                      env=env).returncode == 0
    ids = lambda: sorted(m["id"] for m in json.loads(hearth("models", "list", "--json", env=env).stdout))  # noqa: E731
    assert ids() == ["model-a", "model-a-2"]
    shared = hearth("models", "rm", "Модель A", env=env)
    assert shared.returncode == 1 and shared.stderr == (
        "hearth: Nothing was removed. “Модель A” could mean several models with that name: model-a (Модель A), "
        "model-a-2 (Модель A). Give the id of the one you mean.\n")
    for command in (("models", "info", "Модель A"), ("models", "locate", "Модель A", str(tmp_path / "a/Модель A.gguf")),
                    ("chat", "-m", "Модель A", "Hello?")):  # the same rule wherever a model is named
        result = hearth(*command, env=env)
        assert result.returncode == 1 and "could mean several models with that name" in result.stderr, command
    assert ids() == ["model-a", "model-a-2"]
    first = hearth("models", "rm", "model-a", env=env)
    assert first.stdout.startswith("Removed model-a (Модель A), freed ")
    again = hearth("models", "rm", "model-a", env=env)  # typed twice: the id is gone
    assert again.returncode == 1 and again.stderr == (
        "hearth: Nothing was removed. No model called “model-a” is installed. Installed: model-a-2 (Модель A).\n")
    assert ids() == ["model-a-2"]


@pytest.mark.parametrize("link", [False, True])
def test_importing_a_link_loop_or_nothing_says_so_in_one_sentence(env, tmp_path, link):
    loop = tmp_path / "loop.gguf"
    loop.symlink_to(loop)
    flags = ("--link",) if link else ()
    for path, words in ((str(loop), "“loop.gguf” is a link that loops back on itself"),
                        ("", "No file was named: give the path of a .gguf file."),
                        (str(tmp_path / ("я" * 300 + ".gguf")), "has a name or path too long")):
        result = hearth("models", "import", *flags, path, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_models_found_says_which_apps_folder_was_cut_short_and_still_looks_at_the_others(env, tmp_path):
    user = tmp_path / "user"
    jan = user / "jan/models"
    jan.mkdir(parents=True)
    for i in range(120):  # stands for 60,000 files: the command runs with a budget of 50 entries a folder
        (jan / f"note-{i:03d}.txt").write_text("x")
    forge(user / ".cache/huggingface/hub/models--org--Phi-GGUF/snapshots/abc/phi-Q4_0.gguf")
    script = ("import sys; from desktop.core import elsewhere; elsewhere.MAX_ENTRIES = 50; "
              "from desktop.cli import main; sys.exit(main(['models', 'found']))")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "phi-Q4_0.gguf" in result.stdout
    assert ("hearth: Jan's folder has more than 50 entries; the rest of it (from note-050.txt) was not "
            "looked at.") in result.stderr.splitlines()
