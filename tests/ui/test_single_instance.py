"""One app per data folder, with the real app started as a user starts it (`python -m desktop`,
offscreen): a second launch brings the open window forward and leaves; a window that does not
answer is named in one sentence; a killed window's lock does not keep the folder closed; the
command line works beside the open window."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPEN = "other launches hand over to it"  # what the window logs once it answers other launches
SHOWN = "asked for the window: brought it forward"


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return dict(os.environ, HEARTH_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen",
                PYTHONUNBUFFERED="1")


def log_text(env) -> str:
    log = Path(env["HEARTH_HOME"]) / "logs" / "hearth.log"
    return log.read_text(encoding="utf-8") if log.exists() else ""


def start_window(env) -> subprocess.Popen:
    """`hearth` with no command, left running until its window answers other launches."""
    process = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while f"(process {process.pid}); {OPEN}" not in log_text(env):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the window never opened"
        time.sleep(0.1)
    return process


def launch(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desktop", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)


def end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def test_a_second_launch_brings_the_open_window_forward_and_leaves(env):
    first = start_window(env)
    try:
        started = time.monotonic()
        second = launch(env)
        took = time.monotonic() - started
        print(f"the second launch handed over and left after {took:.2f} s")
        assert second.returncode == 0, second.stderr
        assert second.stdout == "" and second.stderr == ""
        assert first.poll() is None  # the first window is still open
        log = log_text(env)
        assert log.count(OPEN) == 1  # one window on the folder, ever
        assert log.count(SHOWN) == 1  # and it was asked to come forward
    finally:
        end(first)


def test_a_window_that_does_not_answer_is_named_in_one_sentence(env):
    first = start_window(env)
    os.kill(first.pid, signal.SIGSTOP)  # suspended: holds the folder, answers nobody
    try:
        second = launch(env)
    finally:
        os.kill(first.pid, signal.SIGCONT)
        end(first)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert "already open" in lines[0] and f"process {first.pid}" in lines[0] and "does not answer" in lines[0]
    assert log_text(env).count(OPEN) == 1


def test_a_killed_windows_lock_does_not_keep_the_folder_closed(env):
    first = start_window(env)
    first.kill()  # SIGKILL: the lock file and the socket are left behind
    first.communicate(timeout=10)
    assert (Path(env["HEARTH_HOME"]) / "data" / "hearth.lock").exists()
    again = start_window(env)  # takes the folder over (its log line names its own process)
    try:
        second = launch(env)
        assert second.returncode == 0, second.stderr
        assert SHOWN in log_text(env)
    finally:
        end(again)


def test_the_command_line_works_beside_the_open_window(env):
    first = start_window(env)
    try:
        listed = launch(env, "models", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == "[]"
        assert first.poll() is None
    finally:
        end(first)


def test_two_launches_at_once_open_one_window(env):
    """A double click twice: the second may find the first still starting (its lock taken, its window
    not drawn yet) and waits for it to answer rather than calling it unresponsive."""
    first = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # the first has the folder's lock, not yet its window
        second = launch(env)
        assert second.returncode == 0, second.stderr
        assert first.poll() is None
        log = log_text(env)
        assert log.count(OPEN) == 1 and f"(process {first.pid}); {OPEN}" in log
        assert log.count(SHOWN) == 1
    finally:
        end(first)


@pytest.mark.parametrize("kind", ["folder", "dangling link"])
def test_a_folder_or_a_link_named_like_the_lock_is_named_in_one_true_sentence(env, kind):
    lock = Path(env["HEARTH_HOME"]) / "data" / "hearth.lock"
    lock.parent.mkdir(parents=True)
    if kind == "folder":
        lock.mkdir()
        (lock / "kept.txt").write_text("someone's file")
    else:
        lock.symlink_to(lock.parent / "nowhere")
    started = time.monotonic()
    second = launch(env)
    assert time.monotonic() - started < 20  # said at once, not after waiting for a window
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    what = "a folder" if kind == "folder" else "a link"
    assert lines[0] == (f"{lock} is {what}, not Hearth's lock file, so Hearth cannot tell whether it is already "
                        "open on this data folder; move or remove it and start Hearth again.")
    assert "does not answer" not in second.stderr
    assert kind != "folder" or (lock / "kept.txt").read_text() == "someone's file"  # nothing removed
