"""The `hearth` command as a person uses it in a terminal, with HEARTH_HOME keeping data in one place."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest


def hearth(*args, env=None, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "desktop", *args], capture_output=True, text=True,
                          env=env or os.environ.copy(), input=input, timeout=timeout)


def test_models_import_list_info_and_rm(home, model_file):
    assert json.loads(hearth("models", "list", "--json").stdout) == []
    added = hearth("models", "import", str(model_file))
    assert added.returncode == 0, added.stderr
    assert "SmolLM2-135M-Instruct" in added.stdout and "smollm2-135m-instruct-q4_1" in added.stdout
    listed = json.loads(hearth("models", "list", "--json").stdout)
    assert [(m["id"], m["quantization"], m["origin"]) for m in listed] == [
        ("smollm2-135m-instruct-q4_1", "Q4_1", "imported")]
    table = hearth("models", "list").stdout
    assert "SmolLM2-135M-Instruct" in table and "98.4 MB" in table
    info = hearth("models", "info", "smollm2").stdout
    assert "apache-2.0" in info and "llama" in info
    removed = hearth("models", "rm", "smollm2-135m-instruct-q4_1")
    assert removed.returncode == 0
    assert "freed 98.4 MB" in removed.stdout
    assert json.loads(hearth("models", "list", "--json").stdout) == []
    assert (home / "data" / "hearth.db").exists()


def test_chat_streams_the_answer_to_stdout_and_saves_it(home, model_file):
    hearth("models", "import", "--link", str(model_file))
    result = hearth("chat", "-m", "smollm2", "--max-tokens", "16", "--seed", "7", "--temperature", "0",
                    "--system", "Answer briefly.", "What is 2+2?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    db = sqlite3.connect(home / "data" / "hearth.db")
    rows = db.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "What is 2+2?", "complete")
    assert rows[1][0] == "assistant" and rows[1][2] == "complete"
    assert rows[1][1].strip() == result.stdout.strip()
    system = db.execute("SELECT system_prompt FROM conversations").fetchone()[0]
    assert system == "Answer briefly."


def test_chat_with_a_gguf_path_and_a_prompt_from_stdin(home, model_file):
    result = hearth("chat", "-m", str(model_file), "--max-tokens", "8", "-", input="Say hi.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize("args, words", [
    (["chat", "-m", "nope", "hello"], "No model called “nope” is installed"),
    (["models", "rm", "nope"], "No model called “nope”"),
    (["models", "import", "/does/not/exist.gguf"], "There is no file"),
])
def test_mistakes_print_one_sentence_and_exit_non_zero(home, args, words):
    result = hearth(*args)
    assert result.returncode == 1
    assert words in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_a_broken_model_file_is_named_in_the_error(home, model_file, tmp_path):
    cut = tmp_path / "broken.gguf"
    cut.write_bytes(model_file.read_bytes()[:5_000_000])
    result = hearth("chat", "-m", str(cut), "hello")
    assert result.returncode == 1
    assert "“broken.gguf” ends early: it is 5.0 MB of 98.4 MB" in result.stderr
    assert "Traceback" not in result.stderr


def test_killing_the_app_mid_answer_loses_at_most_the_last_second(home, model_file):
    hearth("models", "import", "--link", str(model_file))
    app = subprocess.Popen([sys.executable, "-m", "desktop", "chat", "-m", "smollm2", "--max-tokens", "3000",
                            "Tell me a very long story about a lighthouse keeper."],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db_path = home / "data" / "hearth.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the answer has been streaming for a while
        if db_path.exists():
            db = sqlite3.connect(db_path)
            row = db.execute("SELECT content FROM messages WHERE role='assistant'").fetchone()
            db.close()
            if row and len(row[0]) > 200:
                break
        time.sleep(0.2)
    engine_pids = [c.pid for c in psutil.Process(app.pid).children()]
    assert engine_pids, "the engine child should be running"
    app.send_signal(signal.SIGKILL)
    killed_at = time.time()
    app.wait()

    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT role, content, status, updated_at FROM messages ORDER BY id").fetchall()
    assert rows[0][:3] == ("user", "Tell me a very long story about a lighthouse keeper.", "complete")
    role, content, status, updated_at = rows[1]
    assert role == "assistant" and status == "streaming" and len(content) > 200
    assert killed_at - updated_at < 1.0, "more than the last second of the answer was lost"
    for pid in engine_pids:  # the engine went with the app
        try:
            psutil.Process(pid).wait(timeout=10)
        except psutil.NoSuchProcess:
            pass

    # The next start marks the cut-off answer as stopped (once nobody can still be writing it).
    time.sleep(0.1)
    db.execute("UPDATE messages SET updated_at = updated_at - 60 WHERE role = 'assistant'")
    db.commit()
    hearth("models", "list")
    status, error = db.execute("SELECT status, error FROM messages WHERE role='assistant'").fetchone()
    assert status == "stopped" and "closed before" in error


def test_help_lists_only_the_commands_a_person_uses(home):
    result = hearth("--help")
    assert result.returncode == 0
    for command in ("chat", "models", "compare", "providers", "gui"):
        assert f"\n    {command} " in result.stdout
    assert "engine" not in result.stdout
    assert "SUPPRESS" not in result.stdout
    assert "--quit-when-shown" not in result.stdout
    gui = hearth("gui", "--help")
    assert gui.returncode == 0 and "SUPPRESS" not in gui.stdout and "--self-test" not in gui.stdout
    mistake = hearth("chta", "hi")
    assert mistake.returncode == 2
    assert "invalid choice: 'chta'" in mistake.stderr and "engine" not in mistake.stderr
    # The app still starts its engine with it.
    engine = hearth("engine", "--help")
    assert engine.returncode == 0 and "--model" in engine.stdout


def test_ctrl_c_while_hearth_starts_prints_no_traceback(home):
    """Ctrl+C as a person presses it right after Enter: while Hearth loads its parts, before
    it even looks for the model (here one that is not installed)."""
    interrupted = 0
    for _ in range(5):
        app = subprocess.Popen([sys.executable, "-m", "desktop", "chat", "-m", "nope", "hi"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Wait until it is loading its database code: past Python's own start-up, inside Hearth's.
        while app.poll() is None and "_sqlite3" not in mapped_files(app.pid):
            time.sleep(0.001)
        app.send_signal(signal.SIGINT)
        _out, err = app.communicate(timeout=60)
        assert "Traceback" not in err
        if err == "hearth: Stopped.\n":
            assert app.returncode in (130, -signal.SIGINT)  # as the shell expects of Ctrl+C
            interrupted += 1
        else:  # it had already finished: the one sentence about the model
            assert app.returncode == 1 and "No model called “nope”" in err
    assert interrupted


def mapped_files(pid: int) -> str:
    """The files a running process has mapped (Linux): the compiled modules it has loaded so far."""
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # it has ended
        return ""


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
released = time.time()  # still held: whatever is written after the lock is stamped later
db.execute("COMMIT")
print(released, flush=True)
"""


def answer_begun(db_path: Path) -> bool:
    if not db_path.exists():
        return False
    db = sqlite3.connect(db_path)
    try:
        return bool(db.execute("SELECT 1 FROM messages WHERE role = 'assistant'").fetchone())
    except sqlite3.OperationalError:  # no table yet
        return False
    finally:
        db.close()


def chat_while_another_program_locks_the_database(home, model_file, seconds: float):
    """`hearth chat` in a pipe; once its answer has begun, another program takes the database
    with BEGIN EXCLUSIVE (a backup tool, a database browser) and holds it `seconds`."""
    hearth("models", "import", "--link", str(model_file))
    app = subprocess.Popen([sys.executable, "-m", "desktop", "chat", "-m", "smollm2", "--max-tokens", "48",
                            "--seed", "7", "--temperature", "0", "Tell me about foxes."],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db_path = home / "data" / "hearth.db"
    while not answer_begun(db_path):
        assert app.poll() is None, app.communicate()
        time.sleep(0.01)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db_path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    out, err = app.communicate(timeout=120)
    return app, out, err, holder, db_path


def test_an_answer_that_meets_a_locked_database_is_saved_when_the_lock_goes(home, model_file):
    app, out, err, holder, db_path = chat_while_another_program_locks_the_database(home, model_file, 4)
    released_at = float(holder.stdout.readline())
    holder.wait()
    assert app.returncode == 0, err
    assert "Traceback" not in err
    assert err.count("Another program is using Hearth's database") <= 1  # if it waited: said once, not per retry
    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT role, content, status, updated_at FROM messages ORDER BY id").fetchall()
    assert [r[:3] for r in rows] == [("user", "Tell me about foxes.", "complete"),
                                    ("assistant", out.strip(), "complete")]
    assert out.strip() and rows[1][3] >= released_at - 0.001  # written whole, once the lock went (ms clock)


def test_a_lock_that_lasts_is_one_sentence_and_the_question_is_kept(home, model_file):
    app, out, err, holder, db_path = chat_while_another_program_locks_the_database(home, model_file, 120)
    holder.kill()
    holder.wait()
    assert app.returncode == 1
    assert "Traceback" not in err
    waiting, ending = err.splitlines()  # why the answer waits, said once; then how it ended
    assert waiting == ("hearth: Another program is using Hearth's database; this answer will be saved as soon "
                       "as it is free.")
    assert ending.startswith("hearth: Another program kept Hearth's database") and "locked for 10 s" in ending
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT content FROM messages WHERE role = 'user'").fetchall() == [("Tell me about foxes.",)]


@pytest.mark.parametrize("args", [("models", "list"), ("models", "list", "--json"), ("providers", "list"),
                                  ("models", "info", "smollm2")])
def test_output_read_by_a_program_that_stops_early_ends_quietly(home, model_file, args):
    """`hearth models list | head -1`: the reader goes away; Hearth stops without a traceback."""
    hearth("models", "import", "--link", str(model_file))
    app = subprocess.Popen([sys.executable, "-m", "desktop", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    app.stdout.close()  # as `head` does once it has what it wants
    err = app.stderr.read()
    app.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert app.returncode in (0, 141)


def test_a_chat_started_while_another_program_briefly_locks_the_database_waits_for_it(home, model_file):
    """A backup tool's short lock when the chat starts: the question waits, is saved, is answered."""
    hearth("models", "import", "--link", str(model_file))
    db_path = home / "data" / "hearth.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db_path), "3"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    out = hearth("chat", "-m", "smollm2", "--max-tokens", "8", "--seed", "1", "Say hello.")
    holder.wait()
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.count("your message will be saved as soon as it is free") == 1
    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "Say hello.", "complete") and rows[1][2] == "complete" and rows[1][1] == out.stdout.strip()
