"""`hearth models search` and `hearth models pull` against the hub stand-in on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.hub_server import Hub

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def server(model_file, home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    s = Hub().start()
    s.add(REPO, model_file.name, model_file, downloads=42)
    monkeypatch.setenv("HF_ENDPOINT", s.url)
    yield s
    s.stop()


def hearth(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "desktop", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def test_search_prints_what_the_hub_has(server):
    out = hearth("models", "search", "smol")
    assert out.returncode == 0, out.stderr
    assert f"{REPO}  ·  42 downloads" in out.stdout
    assert json.loads(hearth("models", "search", "smol", "--json").stdout)[0]["id"] == REPO


def test_pull_downloads_checks_and_installs_a_model(server, home, model_file):
    out = hearth("models", "pull", f"{REPO}:Q4_1")
    assert out.returncode == 0, out.stderr
    assert "Downloaded SmolLM2-135M-Instruct (Q4_1, 98.4 MB)" in out.stdout
    assert "98.4 MB of 98.4 MB (100 %)" in out.stderr
    [model] = json.loads(hearth("models", "list", "--json").stdout)
    assert (model["origin"], model["repo"], model["file"], model["revision"]) == (
        "downloaded", REPO, model_file.name, server.revision)
    on_disk = home / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF" / model_file.name
    assert on_disk.read_bytes() == model_file.read_bytes()
    again = hearth("models", "pull", REPO)
    assert again.returncode == 1 and "already installed" in again.stderr


def test_a_pull_stopped_halfway_continues_when_run_again(server, home, model_file):
    server.faults.throttle = 0.004
    part = home / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF" / (model_file.name + ".part")
    app = subprocess.Popen([sys.executable, "-m", "desktop", "models", "pull", REPO],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 40_000_000):
        time.sleep(0.05)
    app.send_signal(signal.SIGKILL)
    app.wait()
    had = part.stat().st_size
    server.faults.throttle = 0
    before = server.bytes_served
    out = hearth("models", "pull", REPO)
    assert out.returncode == 0, out.stderr
    assert server.bytes_served - before <= model_file.stat().st_size - had + 1_000_000
    assert json.loads(hearth("models", "list", "--json").stdout)[0]["origin"] == "downloaded"


@pytest.mark.parametrize("ref, words", [
    ("nobody/nothing", "has no repository “nobody/nothing” (404)"),
    (f"{REPO}:Q2_K", "It offers: Q4_1"),
    ("not-a-repo", "write it as publisher/name"),
])
def test_pull_mistakes_get_one_sentence(server, ref, words):
    out = hearth("models", "pull", ref)
    assert out.returncode == 1
    assert words in out.stderr and "Traceback" not in out.stderr


def test_ctrl_c_during_a_pull_says_how_to_continue(server, home):
    server.faults.throttle = 0.004
    app = subprocess.Popen([sys.executable, "-m", "desktop", "models", "pull", REPO],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    app.send_signal(signal.SIGINT)
    _, err = app.communicate(timeout=30)
    assert app.returncode == 130
    assert "Stopped. Run the same command again to continue." in err
    assert "Traceback" not in err


def test_info_on_a_hub_repository_says_what_each_file_needs_here(server):
    out = hearth("models", "info", REPO, "--context", "2048")
    assert out.returncode == 0, out.stderr
    assert "licence apache-2.0  ·  architecture llama" in out.stdout
    assert "Memory needed with a context of 2,048 tokens" in out.stdout
    assert "Q4_1" in out.stdout and "98.4 MB" in out.stdout and "fits in RAM  ★ recommended" in out.stdout
    data = json.loads(hearth("models", "info", REPO, "--json").stdout)
    assert data["variants"][0]["recommended"] is True and data["architecture"] == "llama"


def test_a_pull_of_a_model_llama_cpp_cannot_run_stops_before_downloading(server, home, tmp_path):
    from tests.gguf_forge import write_gguf

    odd = write_gguf(tmp_path / "odd-F32.gguf", {"general.architecture": "hearthnet", "hearthnet.block_count": 2},
                     [("token_embd.weight", [1024, 1024], 0)])
    server.add("someone/Odd-GGUF", odd.name, odd)
    out = hearth("models", "pull", "someone/Odd-GGUF")
    assert out.returncode == 1
    assert "is a hearthnet model, which the llama.cpp inside Hearth" in out.stderr
    assert server.bytes_served < odd.stat().st_size and not (home / "models" / "someone").exists()


def test_a_split_model_downloads_as_one_model_that_answers_and_goes_as_one(server, home, model_file, tmp_path):
    from tests.gguf_forge import split_gguf

    parts = split_gguf(model_file, 3, tmp_path / "split")
    for part in parts:
        server.add("someone/SmolLM2-Split-GGUF", part.name, part)
    info = hearth("models", "info", "someone/SmolLM2-Split-GGUF")
    assert info.returncode == 0, info.stderr
    [row] = [line for line in info.stdout.splitlines() if "Q4_1" in line]
    assert "98.4 MB" in row and "(3 files)" in row

    out = hearth("models", "pull", "someone/SmolLM2-Split-GGUF")
    assert out.returncode == 0, out.stderr
    total = sum(p.stat().st_size for p in parts)
    assert "(Q4_1, 98.4 MB)" in out.stdout and "98.4 MB of 98.4 MB (100 %)" in out.stderr
    [model] = json.loads(hearth("models", "list", "--json").stdout)
    assert (model["file"], model["size"]) == (parts[0].name, total)
    folder = home / "models" / "someone" / "SmolLM2-Split-GGUF"
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in parts]
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in parts)

    answer = hearth("chat", "-m", model["id"], "--max-tokens", "8", "--temperature", "0", "Say hi.")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()

    gone = hearth("models", "rm", model["id"])
    assert gone.returncode == 0, gone.stderr
    assert "freed 98.4 MB" in gone.stdout and not folder.exists()


def test_a_pull_resumed_after_the_file_changed_on_the_hub_says_so_and_gets_the_new_file(server, home, model_file,
                                                                                      tmp_path):
    server.faults.throttle = 0.004
    folder = home / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF"
    part = folder / (model_file.name + ".part")
    app = subprocess.Popen([sys.executable, "-m", "desktop", "models", "pull", REPO],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 20_000_000):
        time.sleep(0.05)
    app.send_signal(signal.SIGINT)
    app.wait(timeout=30)
    data = bytearray(model_file.read_bytes())  # uploaded again: other bytes in the last tensor
    data[-100:] = bytes(255 - b for b in data[-100:])
    new = tmp_path / "new" / model_file.name
    new.parent.mkdir()
    new.write_bytes(bytes(data))
    server.replace(REPO, model_file.name, new)
    server.faults.throttle = 0

    out = hearth("models", "pull", REPO)
    assert out.returncode == 0, out.stderr
    assert ("hearth: The file changed on the server since the download was paused; starting again from the "
            "beginning.\n") in out.stderr and "Traceback" not in out.stderr
    assert (folder / model_file.name).read_bytes() == new.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == [model_file.name]
