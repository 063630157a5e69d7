"""`hearth docs` as a person uses it in a terminal: a folder added and indexed, searched (JSON and
text), listed, killed in the middle and resumed, stopped with Ctrl+C, removed; and with an
embedding model installed, search by keywords and vectors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw

from tests.e2e.test_cli import hearth

TOPICS = ["lanterns", "harbours", "glaciers", "orchards", "violins", "comets", "bridges", "meadows"]


def _many_notes(folder: Path, count: int, paragraphs: int = 40) -> Path:
    """`count` text files, each with `paragraphs` paragraphs and one word of its own (noteNNNN)."""
    folder.mkdir()
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        body = "\n\n".join(f"Paragraph {p} of note{i:04} is about {topic} and the people who keep them. "
                           + "They write down what they see every day, in long careful sentences. " * 8
                           for p in range(paragraphs))
        (folder / f"note{i:04}.txt").write_text(body + "\n", encoding="utf-8")
    return folder


def _done_files(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        connection.set_busy_timeout(1000)
        try:
            return connection.execute("SELECT COUNT(*) FROM files WHERE state = 'done'").fetchone()[0]
        finally:
            connection.close()
    except apsw.Error:  # not made yet
        return 0


def _check_once_each(db: Path, files: int) -> None:
    """Every file done once, its passages stored once, the keyword index holding exactly them."""
    connection = apsw.Connection(str(db))
    try:
        states = connection.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        assert states == [("done", files)]
        passages = connection.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
        assert passages == connection.execute("SELECT SUM(passages) FROM files").fetchone()[0]
        assert connection.execute("SELECT COUNT(*) FROM (SELECT file_id, ordinal FROM passages "
                                  "GROUP BY file_id, ordinal HAVING COUNT(*) > 1)").fetchone()[0] == 0
        assert connection.execute("SELECT COUNT(*) FROM passages_fts").fetchone()[0] == passages
        assert connection.execute("SELECT COUNT(DISTINCT path) FROM files").fetchone()[0] == files
    finally:
        connection.close()


def _start_add(folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "desktop", "docs", "add", str(folder), "--collection", "notes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def _wait_for_some_done(proc: subprocess.Popen, db: Path, at_least: int, total: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = _done_files(db)
        if done >= at_least:
            return done
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("indexing made no progress")


def test_a_folder_is_indexed_searched_listed_and_removed(home, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "bikes.md").write_text("# Bicycles\n\nOil the chain every few hundred kilometres.\n")
    (folder / "bread.txt").write_text("Rye bread needs caraway seeds and a slow rise.\n")
    (folder / "photo.txt").write_bytes(bytes(range(256)) * 64)  # a binary file with a text name

    added = hearth("docs", "add", str(folder), "--collection", "home")
    assert added.returncode == 1  # one file failed: said, the others indexed
    assert "Traceback" not in added.stderr
    assert "photo.txt" in added.stderr and "no embedding model is installed" in added.stderr
    assert "Indexed 2 files" in added.stdout

    found = hearth("docs", "search", "how often to oil a bicycle chain", "--json")
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert results[0]["file"] == str(folder / "bikes.md") and results[0]["page"] is None
    assert {"file", "page", "text", "score"} <= set(results[0]) and "chain" in results[0]["text"]
    assert "keywords only" in found.stderr

    text = hearth("docs", "search", "caraway", "--collection", "home")
    assert text.stdout.startswith("1. bread.txt") and "caraway" in text.stdout
    for query in ['"', 'AND(', '*', 'NEAR(rye']:
        odd = hearth("docs", "search", query)
        assert odd.returncode == 0 and "Traceback" not in odd.stderr, odd.stderr

    listed = json.loads(hearth("docs", "list", "--json").stdout)
    assert [(c["name"], c["files"], c["failed"]) for c in listed] == [("home", 3, 1)]
    files = json.loads(hearth("docs", "list", "--collection", "home", "--json").stdout)
    failed = [f for f in files if f["state"] == "failed"]
    assert [f["name"] for f in failed] == ["photo.txt"] and "binary" in failed[0]["reason"]
    table = hearth("docs", "list", "--collection", "home").stdout
    assert "failed" in table and "photo.txt" in table

    missing = hearth("docs", "rm", "work")
    assert missing.returncode == 1 and missing.stderr.strip() == "hearth: There is no collection named “work”."
    removed = hearth("docs", "rm", "home")
    assert removed.returncode == 0 and "untouched" in removed.stdout
    assert json.loads(hearth("docs", "list", "--json").stdout) == []
    assert (folder / "bikes.md").exists()  # the files themselves stay
    assert (home / "data" / "documents.db").exists()


def test_indexing_killed_in_the_middle_resumes_and_indexes_each_file_once(home, tmp_path):
    files = 400
    folder = _many_notes(tmp_path / "notes", files)
    db = home / "data" / "documents.db"
    proc = _start_add(folder)
    try:
        done = _wait_for_some_done(proc, db, 20, files)
        proc.kill()  # kill -9: no chance to tidy up
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert done < files, "indexing ended before it could be killed: give it more files"
    assert _done_files(db) < files

    again = hearth("docs", "add", str(folder), "--collection", "notes", timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{files} already there" in again.stderr  # nothing registered twice
    _check_once_each(db, files)
    found = json.loads(hearth("docs", "search", "note0399", "--json").stdout)
    assert Path(found[0]["file"]).name == "note0399.txt"


def test_ctrl_c_stops_indexing_cleanly_and_a_later_run_continues(home, tmp_path):
    files = 400
    folder = _many_notes(tmp_path / "notes", files)
    db = home / "data" / "documents.db"
    proc = _start_add(folder)
    try:
        _wait_for_some_done(proc, db, 20, files)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Stopped. Run the same command again to continue" in err
    connection = apsw.Connection(str(db))
    try:
        states = dict(connection.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    finally:
        connection.close()
    assert "indexing" not in states and 0 < states.get("done", 0) < files

    again = hearth("docs", "add", str(folder), "--collection", "notes", timeout=600)
    assert again.returncode == 0, again.stderr
    _check_once_each(db, files)


def test_with_an_embedding_model_installed_search_is_hybrid(home, tmp_path):
    from tests.gguf_forge import forge_bert

    model = forge_bert(tmp_path / "forged-bert-embedding.gguf")
    assert hearth("models", "import", "--link", str(model)).returncode == 0
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "pets.txt").write_text("the cat sat on the mat\n\nthe dog sat on the rug\n")
    (folder / "money.txt").write_text("the tax is due\n")

    added = hearth("docs", "add", str(folder))
    assert added.returncode == 0, added.stderr
    assert "vectors from forged-bert-embedding" in added.stderr
    listed = json.loads(hearth("docs", "list", "--json").stdout)
    assert listed[0]["embed_model"] and listed[0]["dimensions"] == 32
    assert "keywords + vectors" in hearth("docs", "list").stdout

    found = hearth("docs", "search", "tax", "--json")
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert results[0]["mode"] == "hybrid" and Path(results[0]["file"]).name == "money.txt"
    assert "keywords only" not in found.stderr


def test_an_embedding_model_that_will_not_load_leaves_indexing_to_keywords_and_says_so(home, tmp_path):
    from tests.gguf_forge import forge_bert

    model = forge_bert(tmp_path / "forged-bert-embedding.gguf")
    assert hearth("models", "import", "--link", str(model)).returncode == 0
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # damaged after it was added
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "money.txt").write_text("the tax is due\n")

    added = hearth("docs", "add", str(folder))

    assert added.returncode == 0, added.stderr
    assert "Going on with keywords only" in added.stderr and "Traceback" not in added.stderr
    searched = hearth("docs", "search", "tax", "--json")
    found = json.loads(searched.stdout)
    assert Path(found[0]["file"]).name == "money.txt" and found[0]["mode"] == "keywords"
    assert "keywords only: these documents have no vectors from" in searched.stderr


def test_a_path_that_is_not_there_or_cannot_be_read_is_a_failure_not_a_quiet_success(home, tmp_path):
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04 not really a sheet")
    nothing = hearth("docs", "add", str(tmp_path / "sheet.xlsx"), str(tmp_path / "no-such-file.txt"),
                     "--collection", "typo")
    assert nothing.returncode == 1 and "Traceback" not in nothing.stderr
    assert "Nothing to index" in nothing.stderr and "no such file or folder" in nothing.stderr.lower()
    listed = json.loads(hearth("docs", "list", "--json").stdout)
    assert "typo" not in [c["name"] for c in listed]  # no empty collection was made
    (tmp_path / "real.txt").write_text("The ferry leaves at seven.\n")
    mixed = hearth("docs", "add", str(tmp_path / "real.txt"), str(tmp_path / "no-such-file.txt"),
                   "--collection", "mixed")
    assert mixed.returncode == 1  # the file that is there is indexed; the missing one still fails the command
    assert "Indexed 1 file (1 passage" in mixed.stdout
