"""The database: versioned schema, nothing lost on writes, full-text search across chats."""

import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from desktop.core.store import MIGRATIONS, Store, StoreError


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "hearth.db")
    yield s
    s.close()


def test_a_new_database_is_at_the_latest_schema_in_wal_mode(store, tmp_path):
    assert store.schema_version == len(MIGRATIONS)
    raw = sqlite3.connect(tmp_path / "hearth.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_from_a_newer_hearth_is_refused_with_a_sentence(tmp_path):
    path = tmp_path / "newer.db"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer Hearth"):
        Store(path)


def test_reopening_keeps_everything_and_migrates_nothing_twice(tmp_path):
    first = Store(tmp_path / "hearth.db")
    c = first.create_conversation(title="Kept")
    first.add_message(c.id, "user", "hello there")
    first.close()
    again = Store(tmp_path / "hearth.db")
    assert [m.content for m in again.messages(c.id)] == ["hello there"]
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_a_message_written_is_on_disk_for_another_connection_at_once(store, tmp_path):
    c = store.create_conversation()
    store.add_message(c.id, "user", "saved before it is sent")
    other = sqlite3.connect(tmp_path / "hearth.db")
    assert other.execute("SELECT content FROM messages").fetchall() == [("saved before it is sent",)]


def test_search_finds_words_in_every_conversation_by_prefix(store):
    a = store.create_conversation(title="Trip")
    b = store.create_conversation(title="Cooking")
    store.add_message(a.id, "user", "Plan a weekend in Lisbon with trams")
    store.add_message(b.id, "assistant", "Simmer the tomatoes for twenty minutes")
    store.add_message(b.id, "user", "Can I use canned tomatoes instead?")
    hits = store.search("tomato")
    assert {h.conversation_id for h in hits} == {b.id}
    assert len(hits) == 2
    assert all("[tomatoes]" in h.snippet for h in hits)
    assert [h.conversation_title for h in store.search("lisbon TRAM")] == ["Trip"]
    assert store.search("  ") == []
    assert store.search('"unbalanced AND (') == []


def test_search_follows_edits_and_deletions(store):
    c = store.create_conversation()
    m = store.add_message(c.id, "assistant", "", status="streaming")
    store.update_message(m.id, content="the answer arrives while streaming")
    assert len(store.search("streaming")) == 1
    store.delete_conversation(c.id)
    assert store.search("streaming") == []
    assert store.messages(c.id) == []


def test_only_answers_whose_writer_is_gone_are_marked_interrupted(store):
    c = store.create_conversation()
    ours = store.add_message(c.id, "assistant", "being written", status="streaming")
    reused = store.add_message(c.id, "assistant", "half an ans", status="streaming")
    legacy = store.add_message(c.id, "assistant", "from an older Hearth", status="streaming")
    assert store.message(ours.id).writer_pid == os.getpid()
    # Quiet for a minute, but written by this very process: still alive.
    store._write("UPDATE messages SET updated_at = updated_at - 60")
    # Another process that got the same pid later is not the writer.
    store._write("UPDATE messages SET writer_started = writer_started - 3600 WHERE id = ?", (reused.id,))
    # An answer from before writers were recorded goes by its quiet time.
    store._write("UPDATE messages SET writer_pid = NULL, writer_started = NULL WHERE id = ?", (legacy.id,))
    assert store.close_interrupted_answers() == 2
    assert store.message(ours.id).status == "streaming"
    for cut in (reused, legacy):
        assert store.message(cut.id).status == "stopped"
        assert "closed before" in store.message(cut.id).error
    assert store.message(reused.id).content == "half an ans"


WRITER = """
import sys, time
from desktop.core.store import Store
store = Store(sys.argv[1])
c = store.create_conversation()
m = store.add_message(c.id, "assistant", "being written", status="streaming")
print(m.id, flush=True)
while True:
    time.sleep(0.2)
"""
SWEEPER = "import sys; from desktop.core.store import Store; Store(sys.argv[1]).close_interrupted_answers()"


def test_a_paused_hearth_keeps_its_answer_and_a_killed_one_loses_it_to_the_sweep(tmp_path):
    """kill -STOP a Hearth that is writing an answer, let a minute pass, open the data with
    another Hearth: the answer is still being written. Kill the writer: now it was cut off."""
    path = tmp_path / "hearth.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        message_id = int(writer.stdout.readline())
        writer.send_signal(signal.SIGSTOP)
        raw = sqlite3.connect(path)
        with raw:
            raw.execute("UPDATE messages SET updated_at = updated_at - 60")  # a minute of silence
        subprocess.run([sys.executable, "-c", SWEEPER, str(path)], check=True, timeout=60)
        assert raw.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone() == ("streaming",)
    finally:
        writer.kill()
        writer.wait()
    subprocess.run([sys.executable, "-c", SWEEPER, str(path)], check=True, timeout=60)
    status, error, content = raw.execute("SELECT status, error, content FROM messages WHERE id = ?",
                                         (message_id,)).fetchone()
    assert status == "stopped" and "closed before" in error and content == "being written"


def test_conversations_come_newest_first_and_rename_trims(store):
    old = store.create_conversation(title="Old")
    new = store.create_conversation(title="New")
    store.add_message(old.id, "user", "bump")
    assert [c.title for c in store.conversations()] == ["Old", "New"]
    assert store.update_conversation(new.id, title="   ").title == "New chat"
    assert store.update_conversation(new.id, title=" Named ").title == "Named"


def test_a_long_chat_is_read_a_page_at_a_time(tmp_path):
    from desktop.core.store import Store

    store = Store(tmp_path / "h.db")
    chat = store.create_conversation(title="long")
    ids = [store.add_message(chat.id, "user" if i % 2 == 0 else "assistant", f"m{i}").id for i in range(50)]
    newest = store.messages(chat.id, last=20)
    assert [m.content for m in newest] == [f"m{i}" for i in range(30, 50)]  # oldest first
    page = store.messages(chat.id, before=newest[0].id, last=20)
    assert [m.content for m in page] == [f"m{i}" for i in range(10, 30)]
    assert store.count_messages(chat.id, before=page[0].id) == 10 and store.count_messages(chat.id) == 50
    assert [m.content for m in store.messages(chat.id, since=ids[45])] == [f"m{i}" for i in range(45, 50)]
    assert store.last_counted_answer(chat.id) is None
    store.update_message(ids[41], tokens_in=120, tokens_out=30)
    store.update_message(ids[3], tokens_in=10, tokens_out=5)
    assert store.last_counted_answer(chat.id).id == ids[41]


def test_a_database_from_before_thinking_was_kept_apart_is_upgraded_with_nothing_lost(tmp_path):
    import sqlite3

    from desktop.core.store import MIGRATIONS, Store

    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:2], start=1):  # a database written by schema 2
        raw.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
    raw.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('Old chat', 1, 1)")
    raw.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at)"
                " VALUES (1, 'assistant', 'An old answer.', 1, 1)")
    raw.execute("INSERT INTO models (id, name, path, origin, size, added_at) VALUES ('m', 'M', '/m.gguf', 'imported', 1, 1)")
    raw.commit()
    raw.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    old = store.messages(1)[0]
    assert old.content == "An old answer." and old.thinking == "" and old.thinking_ms is None
    assert old.stop_reason == ""
    assert store.model("m").chat_format == "auto"
    store.update_message(old.id, thinking="Let me see.", thinking_ms=1200.0, stop_reason="length")
    again = store.message(old.id)
    assert (again.thinking, again.thinking_ms, again.stop_reason) == ("Let me see.", 1200.0, "length")
    assert [hit.message_id for hit in store.search("see")] == []  # thinking is not searched as the answer
    store.close()


def test_a_schema_3_database_is_upgraded_with_nothing_lost(tmp_path):
    path = tmp_path / "v3.db"
    raw = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:3], start=1):
        raw.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
    raw.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('Old chat', 1, 1)")
    for role, content, status in (("user", "Name a bird.", "complete"), ("assistant", "A robin.", "complete"),
                                  ("user", "Another?", "complete"), ("assistant", "A wr", "streaming")):
        raw.execute("INSERT INTO messages (conversation_id, role, content, status, thinking, created_at, updated_at)"
                    " VALUES (1, ?, ?, ?, 'hm', 1, 1)", (role, content, status))
    raw.commit()
    raw.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    kept = [(m.role, m.content, m.status, m.thinking) for m in store.messages(1)]
    assert kept == [("user", "Name a bird.", "complete", "hm"), ("assistant", "A robin.", "complete", "hm"),
                    ("user", "Another?", "complete", "hm"), ("assistant", "A wr", "streaming", "hm")]
    assert not any(m.superseded or m.replaces for m in store.messages(1))  # one version of each answer
    assert store.close_interrupted_answers() == 1  # cut off long ago, by a Hearth that recorded no writer
    assert store.messages(1)[-1].status == "stopped" and store.messages(1)[-1].content == "A wr"
    assert [h.message_id for h in store.search("robin")] == [2]
    store.close()
