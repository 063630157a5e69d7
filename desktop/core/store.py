"""SQLite on the user's disk: conversations, messages (with full-text search) and installed models.

WAL mode, schema versioned with PRAGMA user_version and forward-only migrations. Every write
commits at once, so killing the app loses nothing that was written.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from desktop.core import model_kinds
from desktop.core.errors import HearthError

# One entry per schema version; a database at version N has run the first N entries.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        system_prompt TEXT NOT NULL DEFAULT '',
        sampling TEXT NOT NULL DEFAULT '{}',
        model TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete'
            CHECK (status IN ('streaming', 'complete', 'stopped', 'error')),
        error TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        provider TEXT NOT NULL DEFAULT '',
        processed_on TEXT NOT NULL DEFAULT '',
        tokens_in INTEGER,
        tokens_out INTEGER,
        ttft_ms REAL,
        tokens_per_s REAL,
        cost REAL NOT NULL DEFAULT 0,
        bytes_sent INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
    CREATE VIRTUAL TABLE messages_fts USING fts5 (
        content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('downloaded', 'imported', 'linked')),
        repo TEXT NOT NULL DEFAULT '',
        file TEXT NOT NULL DEFAULT '',
        revision TEXT NOT NULL DEFAULT '',
        sha256 TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL,
        architecture TEXT NOT NULL DEFAULT '',
        parameters INTEGER NOT NULL DEFAULT 0,
        quantization TEXT NOT NULL DEFAULT '',
        context_length INTEGER NOT NULL DEFAULT 0,
        license TEXT NOT NULL DEFAULT '',
        has_chat_template INTEGER NOT NULL DEFAULT 0,
        added_at REAL NOT NULL,
        last_used_at REAL
    );
    """,
    # 2: cloud answers (usage estimated when the API gave none, cost unknown when a model has no
    # price) and comparisons: one conversation per column, and the votes that build the leaderboard.
    """
    ALTER TABLE messages ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN cost_unknown INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE comparisons (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        blind INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE comparison_columns (
        comparison_id INTEGER NOT NULL REFERENCES comparisons(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        target TEXT NOT NULL,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        PRIMARY KEY (comparison_id, position)
    );
    CREATE INDEX columns_by_conversation ON comparison_columns (conversation_id);
    CREATE TABLE votes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        comparison_id INTEGER REFERENCES comparisons(id) ON DELETE SET NULL,
        turn INTEGER NOT NULL,
        targets TEXT NOT NULL,
        outcome TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 3: reasoning models' thinking, kept apart from the answer (never sent back to the model);
    # why an answer ended early (the length limit); the chat format chosen for each model.
    """
    ALTER TABLE messages ADD COLUMN thinking TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN thinking_ms REAL;
    ALTER TABLE messages ADD COLUMN stop_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE models ADD COLUMN chat_format TEXT NOT NULL DEFAULT 'auto';
    """,
    # 4: who is writing an answer still 'streaming' (its process id and that process's start
    # time, as a pid alone may be reused): an answer is taken for cut off only once it is gone.
    """
    ALTER TABLE messages ADD COLUMN writer_pid INTEGER;
    ALTER TABLE messages ADD COLUMN writer_started REAL;
    """,
    # 5: an answer written again (Regenerate) keeps the one it replaces until it is complete, and
    # that one after as an earlier version: not shown in the chat nor sent to the model.
    """
    ALTER TABLE messages ADD COLUMN replaces INTEGER;
    ALTER TABLE messages ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: what apps used through the local API server, one row per local day, app (address and user
    # agent), model and where it was processed; and, only when the user asks for it, each request
    # with its prompt and answer.
    """
    CREATE TABLE api_use (
        day TEXT NOT NULL,
        address TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        model TEXT NOT NULL,
        processed_on TEXT NOT NULL,
        requests INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        bytes_sent INTEGER NOT NULL DEFAULT 0,
        last_at REAL NOT NULL,
        PRIMARY KEY (day, address, user_agent, model, processed_on)
    );
    CREATE TABLE api_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        address TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        model TEXT NOT NULL,
        status INTEGER NOT NULL,
        tokens_in INTEGER,
        tokens_out INTEGER,
        duration_ms REAL NOT NULL,
        body TEXT NOT NULL
    );
    """,
    # 7: the pooling a model's GGUF declares (model_kinds.pooling_of: "mean", "cls", "last", "rank",
    # or "" for none), so an embedding model is never offered as a chat model. NULL for a model
    # installed before: Library reads its file once and fills it in.
    """
    ALTER TABLE models ADD COLUMN pooling TEXT;
    """,
    # 8 (documents in the chat, issue 18): the files and collections each conversation uses, gone
    # with it; the passages an answer was given (JSON list of {"n", "path", "name", "page",
    # "heading", "text"}, numbered as the prompt numbered them); and the cloud providers a
    # conversation may send its documents' passages to (asked once per conversation).
    """
    CREATE TABLE conversation_documents (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('file', 'collection')),
        value TEXT NOT NULL,
        added_at REAL NOT NULL,
        PRIMARY KEY (conversation_id, kind, value)
    );
    CREATE TABLE documents_consent (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        granted_at REAL NOT NULL,
        PRIMARY KEY (conversation_id, provider)
    );
    ALTER TABLE messages ADD COLUMN sources TEXT NOT NULL DEFAULT '[]';
    """,
]

ROLES = ("system", "user", "assistant")
# An answer being written is saved at least this often, even while no token arrives.
HEARTBEAT_S = 2.0
STALE_STREAM_S = 15.0
NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"  # SQLite's clock as Unix seconds (ms precision)
# How long one write waits for a lock another program holds before it fails as DatabaseBusy. Short,
# as the window's thread writes too: the chat tries such a write again later (chat.LOCK_WAIT_S).
BUSY_TIMEOUT_MS = 100
THIS_MACHINE = "this machine"


class StoreError(HearthError):
    """The database cannot be used; str() says why in words."""


class DatabaseBusy(StoreError):
    """Another program holds the database locked (a backup, a database browser, a second Hearth
    in the middle of a write): worth trying again a little later."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    system_prompt: str
    sampling: dict[str, Any]
    model: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    status: str = "complete"
    error: str = ""
    model: str = ""
    provider: str = ""
    processed_on: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    cost: float = 0.0
    bytes_sent: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    usage_estimated: bool = False
    cost_unknown: bool = False
    thinking: str = ""  # a reasoning model's thoughts before its answer (not part of `content`)
    thinking_ms: float | None = None  # how long it thought, to the first word of the answer
    stop_reason: str = ""  # "length": cut at the answer length limit
    writer_pid: int | None = None  # the process writing it, while it is 'streaming'
    writer_started: float | None = None  # when that process started (a pid may be reused)
    replaces: int | None = None  # the answer this one was written again in place of (Regenerate)
    # Kept, but neither shown in the chat nor sent to the model: an earlier version of an answer,
    # or a new version still being written, or one that failed or was stopped (the earlier stays).
    superseded: bool = False
    # The passages the answer was given from the user's documents, numbered as the prompt numbered
    # them: [{"n": 1, "path", "name", "page" (or None), "heading", "text"}, …] (docs.context).
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def left_the_machine(self) -> bool:
        return bool(self.processed_on) and self.processed_on != THIS_MACHINE


@dataclass(frozen=True)
class Comparison:
    id: int
    title: str
    blind: bool
    targets: tuple[str, ...]  # in column order
    conversations: tuple[int, ...]  # one per column
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Vote:
    id: int
    comparison_id: int | None
    turn: int  # which of the comparison's prompts (0 = the first)
    targets: tuple[str, ...]  # in column order
    outcome: str  # the winning column's letter, "tie" or "bad"
    created_at: float


@dataclass(frozen=True)
class UsageRow:
    """One provider's answers in one month."""

    month: str  # YYYY-MM
    provider: str
    processed_on: str
    answers: int
    tokens_in: int
    tokens_out: int
    bytes_sent: int
    cost: float


@dataclass(frozen=True)
class ApiUse:
    """What one app used of one model on one day through the local API server (the ledger's
    "used by apps on this computer"), or the sum of such rows. `day` is the local date
    (YYYY-MM-DD); an app is its `address` (the client's IP address) and `user_agent` (its
    User-Agent header, "" when it sent none); `processed_on` is THIS_MACHINE or the host the
    request was forwarded to. `failed`: requests answered with an HTTP status of 400 or more.
    `last_at`: the latest request, in seconds since the epoch."""

    day: str
    address: str
    user_agent: str
    model: str
    processed_on: str = THIS_MACHINE
    requests: int = 1
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    bytes_sent: int = 0
    last_at: float = 0.0

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """The row it adds to: day, address, user agent, model, where."""
        return (self.day, self.address, self.user_agent, self.model, self.processed_on)

    def plus(self, other: ApiUse) -> ApiUse:
        """Both counted together (the key is this one's)."""
        return replace(self, requests=self.requests + other.requests, failed=self.failed + other.failed,
                       tokens_in=self.tokens_in + other.tokens_in, tokens_out=self.tokens_out + other.tokens_out,
                       bytes_sent=self.bytes_sent + other.bytes_sent, last_at=max(self.last_at, other.last_at))


@dataclass(frozen=True)
class ApiUseTotals:
    """The ledger's API use summed over days from `since` (a YYYY-MM-DD local date, "" for all):
    how many distinct apps (address and user agent), requests, failed requests, tokens and bytes
    sent off the machine, and the hosts other than this machine that processed any of it."""

    since: str
    apps: int
    requests: int
    failed: int
    tokens_in: int
    tokens_out: int
    bytes_sent: int
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class ApiRequest:
    """One request kept with its prompt and answer (only while the user asks for a log with
    bodies). `at`: seconds since the epoch; `body`: what the server logged, for OpenAI routes a
    JSON object {"prompt": …, "answer": "…"}."""

    at: float
    address: str
    user_agent: str
    method: str
    path: str
    model: str
    status: int
    tokens_in: int | None
    tokens_out: int | None
    duration_ms: float
    body: str
    id: int = 0


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    path: str
    origin: str
    size: int
    repo: str = ""
    file: str = ""
    revision: str = ""
    sha256: str = ""
    architecture: str = ""
    parameters: int = 0
    quantization: str = ""
    context_length: int = 0
    license: str = ""
    has_chat_template: bool = False
    added_at: float = 0.0
    last_used_at: float | None = None
    chat_format: str = "auto"  # templates.AUTO, or a templates.FORMATS name the user chose
    pooling: str | None = None  # model_kinds.pooling_of the file; None: not read yet (installed before v7)

    @property
    def for_embeddings(self) -> bool:
        """An embedding model, never offered as a chat model (model_kinds.for_embeddings: an
        encoder-only or embedding-only GGUF architecture, or pooling declared in the file)."""
        return model_kinds.for_embeddings(self.architecture, self.pooling)


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int
    role: str
    snippet: str


MESSAGE_META = {f.name for f in fields(Message)} - {
    "id", "conversation_id", "role", "content", "created_at", "updated_at", "writer_pid", "writer_started"}
# Two readings of one process's start time agree to the clock tick; another process that got the
# same pid later started at least this much later.
SAME_START_S = 0.05


def _started(pid: int) -> float | None:
    """When process `pid` started, or None when there is no such process (or only its corpse)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def writer_alive(pid: int, started: float) -> bool:
    """The process that began writing an answer is still running (not another one with its pid)."""
    now_started = _started(pid)
    return now_started is not None and abs(now_started - started) < SAME_START_S
OUTCOMES = ("A", "B", "C", "D", "tie", "bad")


def _fts_query(text: str) -> str:
    """Turn what a person typed into an FTS5 query: every word must appear, as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words)


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._start: float | None = None  # when this process started, read once
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"Hearth cannot open its database at {self.path} ({exc}). "
                "If the disk is full, free some space and start Hearth again."
            ) from exc

    # -- schema -------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"The database at {self.path} was written by a newer Hearth (schema {current}). "
                "Update Hearth to open it."
            )
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            with self._lock:
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params))
            except sqlite3.OperationalError as exc:
                if "full" in str(exc).lower():
                    raise StoreError("The disk is full: Hearth could not save. Free some space; "
                                     "nothing already saved is lost.") from exc
                if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                    raise DatabaseBusy(f"Another program is holding Hearth's database ({self.path}) locked, "
                                       "so Hearth could not save. Close it and try again.") from exc
                raise

    # -- conversations --------------------------------------------------------------------------
    @staticmethod
    def _conversation(row: sqlite3.Row) -> Conversation:
        return Conversation(
            id=row["id"], title=row["title"], system_prompt=row["system_prompt"],
            sampling=json.loads(row["sampling"] or "{}"), model=row["model"],
            created_at=row["created_at"], updated_at=row["updated_at"],
        )

    def create_conversation(self, title: str = "New chat", system_prompt: str = "",
                            sampling: dict[str, Any] | None = None, model: str = "") -> Conversation:
        now = time.time()
        cur = self._write(
            "INSERT INTO conversations (title, system_prompt, sampling, model, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (title, system_prompt, json.dumps(sampling or {}), model, now, now),
        )
        return self.conversation(cur.lastrowid)

    def conversation(self, conversation_id: int) -> Conversation:
        row = self._db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise KeyError(conversation_id)
        return self._conversation(row)

    def conversations(self) -> list[Conversation]:
        """The chats, newest first; the columns of comparisons are listed with their comparison."""
        rows = self._db.execute(
            "SELECT * FROM conversations WHERE id NOT IN (SELECT conversation_id FROM comparison_columns)"
            " ORDER BY updated_at DESC, id DESC")
        return [self._conversation(r) for r in rows]

    def update_conversation(self, conversation_id: int, *, title: str | None = None,
                            system_prompt: str | None = None, sampling: dict[str, Any] | None = None,
                            model: str | None = None) -> Conversation:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title.strip() or "New chat"
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if sampling is not None:
            changes["sampling"] = json.dumps(sampling)
        if model is not None:
            changes["model"] = model
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            self._write(f"UPDATE conversations SET {sets} WHERE id = ?", (*changes.values(), conversation_id))
        return self.conversation(conversation_id)

    def delete_conversation(self, conversation_id: int) -> None:
        self._write("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def _touch(self, conversation_id: int, now: float) -> None:
        self._write("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))

    # -- messages -------------------------------------------------------------------------------
    @staticmethod
    def _message(row: sqlite3.Row) -> Message:
        data = {k: row[k] for k in row.keys()}
        data["usage_estimated"] = bool(data["usage_estimated"])
        data["cost_unknown"] = bool(data["cost_unknown"])
        data["superseded"] = bool(data["superseded"])
        data["sources"] = json.loads(data.get("sources") or "[]")
        return Message(**data)

    def add_message(self, conversation_id: int, role: str, content: str, **meta: Any) -> Message:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        unknown = set(meta) - MESSAGE_META
        if unknown:
            raise TypeError(f"unknown message fields: {sorted(unknown)}")
        if "sources" in meta:  # documents: a JSON list in its column
            meta["sources"] = json.dumps(meta["sources"])
        now = time.time()
        if meta.get("status") == "streaming":  # who writes it: while they live, nobody sweeps it
            meta.update(writer_pid=os.getpid(), writer_started=self._own_start())
        cols = ["conversation_id", "role", "content", "created_at", "updated_at", *meta]
        values = [conversation_id, role, content, now, now, *meta.values()]
        with self._lock:
            cur = self._write(
                f"INSERT INTO messages ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values)
            self._touch(conversation_id, now)
        return self.message(cur.lastrowid)

    def update_message(self, message_id: int, *, content: str | None = None, **meta: Any) -> None:
        unknown = set(meta) - MESSAGE_META
        if unknown:
            raise TypeError(f"unknown message fields: {sorted(unknown)}")
        changes = dict(meta)
        if "sources" in changes:  # documents: a JSON list in its column
            changes["sources"] = json.dumps(changes["sources"])
        if content is not None:
            changes["content"] = content
        # The time it is written (SQLite's clock, in Unix seconds), not the time it was asked for:
        # a write that waited for another program's lock is stamped when the lock let it in.
        sets = ", ".join([*(f"{k} = ?" for k in changes), f"updated_at = {NOW_SQL}"])
        self._write(f"UPDATE messages SET {sets} WHERE id = ?", (*changes.values(), message_id))

    def message(self, message_id: int) -> Message:
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(message_id)
        return self._message(row)

    def messages(self, conversation_id: int, *, before: int | None = None, last: int | None = None,
                 since: int | None = None) -> list[Message]:
        """A conversation's messages, oldest first: all of them, or only those with an id below
        `before` and/or from `since` on, and of those only the `last` N. A long chat opens on its
        newest page without reading the rest. Only the versions shown: no superseded answer."""
        where, params = "conversation_id = ? AND NOT superseded", [conversation_id]
        if before is not None:
            where, params = where + " AND id < ?", [*params, before]
        if since is not None:
            where, params = where + " AND id >= ?", [*params, since]
        if last is None:
            rows = self._db.execute(f"SELECT * FROM messages WHERE {where} ORDER BY id", params)
            return [self._message(r) for r in rows]
        rows = self._db.execute(f"SELECT * FROM messages WHERE {where} ORDER BY id DESC LIMIT ?", [*params, last])
        return [self._message(r) for r in reversed(rows.fetchall())]

    def count_messages(self, conversation_id: int, *, before: int | None = None) -> int:
        sql, params = "SELECT COUNT(*) FROM messages WHERE conversation_id = ? AND NOT superseded", [conversation_id]
        if before is not None:
            sql, params = sql + " AND id < ?", [*params, before]
        return self._db.execute(sql, params).fetchone()[0]

    def last_counted_answer(self, conversation_id: int) -> Message | None:
        """The newest answer with token counts: how much of the context the chat fills."""
        row = self._db.execute("SELECT * FROM messages WHERE conversation_id = ? AND role = 'assistant'"
                               " AND NOT superseded AND tokens_in IS NOT NULL ORDER BY id DESC LIMIT 1",
                               (conversation_id,)).fetchone()
        return self._message(row) if row else None

    def delete_message(self, message_id: int) -> None:
        self._write("DELETE FROM messages WHERE id = ?", (message_id,))

    # -- documents in a conversation (issue 18) ----------------------------------------------------
    def add_conversation_documents(self, conversation_id: int, kind: str, values: Iterable[str]) -> None:
        """Note files (`kind` "file", absolute paths) or collections ("collection", names) the
        conversation uses; one already there stays as it was."""
        if kind not in ("file", "collection"):
            raise ValueError(f"unknown kind of document {kind!r}")
        now = time.time()
        with self._lock:
            for value in values:
                self._write("INSERT OR IGNORE INTO conversation_documents (conversation_id, kind, value, added_at)"
                            " VALUES (?, ?, ?, ?)", (conversation_id, kind, value, now))

    def remove_conversation_documents(self, conversation_id: int, kind: str, values: Iterable[str] | None = None) -> None:
        """Stop using these files or collections in the conversation (None: all of that kind)."""
        with self._lock:
            if values is None:
                self._write("DELETE FROM conversation_documents WHERE conversation_id = ? AND kind = ?",
                            (conversation_id, kind))
                return
            for value in values:
                self._write("DELETE FROM conversation_documents WHERE conversation_id = ? AND kind = ? AND value = ?",
                            (conversation_id, kind, value))

    def conversation_documents(self, conversation_id: int) -> list[tuple[str, str]]:
        """The conversation's documents as (kind, value), in the order they were added."""
        rows = self._db.execute("SELECT kind, value FROM conversation_documents WHERE conversation_id = ?"
                                " ORDER BY added_at, rowid", (conversation_id,))
        return [(r["kind"], r["value"]) for r in rows]

    def grant_documents_consent(self, conversation_id: int, provider: str) -> None:
        """The user allowed this conversation to send its documents' passages to `provider`."""
        self._write("INSERT OR REPLACE INTO documents_consent (conversation_id, provider, granted_at)"
                    " VALUES (?, ?, ?)", (conversation_id, provider, time.time()))

    def documents_consent(self, conversation_id: int) -> set[str]:
        """The providers this conversation may send its documents' passages to."""
        rows = self._db.execute("SELECT provider FROM documents_consent WHERE conversation_id = ?", (conversation_id,))
        return {r["provider"] for r in rows}

    def make_current(self, message_id: int) -> None:
        """Show and send this answer in place of the one it was written to replace, which is kept
        as an earlier version. In one transaction: whatever happens, exactly one of them is current."""
        with self._lock:
            self._write("BEGIN IMMEDIATE")
            try:
                self._write("UPDATE messages SET superseded = 1"
                            " WHERE id = (SELECT replaces FROM messages WHERE id = ?)", (message_id,))
                self._write("UPDATE messages SET superseded = 0 WHERE id = ?", (message_id,))
                self._write("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def with_versions(self, conversation_id: int) -> set[int]:
        """The ids of a conversation's answers that were written more than once."""
        rows = self._db.execute("SELECT id, replaces FROM messages WHERE conversation_id = ?"
                                " AND replaces IS NOT NULL", (conversation_id,))
        return {i for r in rows for i in (r["id"], r["replaces"])}

    def choose_version(self, message_id: int) -> Message:
        """Show and send this version of an answer; its other versions are kept."""
        family = [v.id for v in self.versions(message_id)]
        self._write(f"UPDATE messages SET superseded = (id != ?) WHERE id IN ({', '.join('?' * len(family))})",
                    (message_id, *family))
        return self.message(message_id)

    def versions(self, message_id: int) -> list[Message]:
        """Every version of an answer written again, oldest first: the one it replaced, that one's
        own earlier versions, and those written in its place (the one shown among them)."""
        rows = self._db.execute(
            """
            WITH RECURSIVE back(id) AS (
                SELECT ? UNION SELECT m.replaces FROM messages m JOIN back ON m.id = back.id
                WHERE m.replaces IS NOT NULL),
            root(id) AS (SELECT MIN(id) FROM back),
            family(id) AS (
                SELECT id FROM root UNION SELECT m.id FROM messages m JOIN family f ON m.replaces = f.id)
            SELECT * FROM messages WHERE id IN (SELECT id FROM family) ORDER BY id
            """, (message_id,))
        return [self._message(r) for r in rows]

    def _own_start(self) -> float | None:
        if self._start is None:
            self._start = _started(os.getpid())
        return self._start

    def close_interrupted_answers(self, quiet_for: float = STALE_STREAM_S) -> int:
        """Mark stopped the answers still 'streaming' whose writer is gone: the Hearth process
        that began them has ended (killed, or crashed). One whose writer still runs is left alone,
        however long it has been quiet (paused, or reading a long prompt): another Hearth may be
        writing it right now. An answer from before writers were recorded is judged by its
        `quiet_for` seconds of silence (a live writer saves at least every few seconds)."""
        rows = self._db.execute("SELECT id, writer_pid, writer_started, updated_at FROM messages"
                                " WHERE status = 'streaming'").fetchall()
        quiet_since = time.time() - quiet_for
        gone = [r["id"] for r in rows
                if (not writer_alive(r["writer_pid"], r["writer_started"])
                    if r["writer_pid"] and r["writer_started"] is not None
                    else r["updated_at"] < quiet_since)]
        with self._lock:
            for message_id in gone:
                self._write("UPDATE messages SET status = 'stopped', error = ? WHERE id = ? AND status = 'streaming'",
                            ("Hearth closed before this answer was finished.", message_id))
        return len(gone)

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        query = _fts_query(text)
        if not query:
            return []
        rows = self._db.execute(
            """
            SELECT m.id AS message_id, m.conversation_id, m.role, c.title,
                   snippet(messages_fts, 0, '[', ']', '…', 12) AS snippet
            FROM messages_fts
            JOIN messages m ON m.id = messages_fts.rowid
            JOIN conversations c ON c.id = m.conversation_id
            WHERE messages_fts MATCH ? AND NOT m.superseded
            ORDER BY rank LIMIT ?
            """,
            (query, limit),
        )
        return [SearchHit(r["conversation_id"], r["title"], r["message_id"], r["role"], r["snippet"])
                for r in rows]

    # -- comparisons and votes ------------------------------------------------------------------
    def create_comparison(self, title: str, targets: list[str], conversations: list[int],
                          blind: bool) -> Comparison:
        now = time.time()
        with self._lock:
            cur = self._write("INSERT INTO comparisons (title, blind, created_at, updated_at) VALUES (?, ?, ?, ?)",
                              (title, int(blind), now, now))
            for position, (target, conversation_id) in enumerate(zip(targets, conversations, strict=True)):
                self._write("INSERT INTO comparison_columns (comparison_id, position, target, conversation_id)"
                            " VALUES (?, ?, ?, ?)", (cur.lastrowid, position, target, conversation_id))
        return self.comparison(cur.lastrowid)

    def comparison(self, comparison_id: int) -> Comparison:
        row = self._db.execute("SELECT * FROM comparisons WHERE id = ?", (comparison_id,)).fetchone()
        if row is None:
            raise KeyError(comparison_id)
        columns = self._db.execute("SELECT target, conversation_id FROM comparison_columns"
                                   " WHERE comparison_id = ? ORDER BY position", (comparison_id,)).fetchall()
        return Comparison(row["id"], row["title"], bool(row["blind"]), tuple(c["target"] for c in columns),
                          tuple(c["conversation_id"] for c in columns), row["created_at"], row["updated_at"])

    def comparisons(self) -> list[Comparison]:
        rows = self._db.execute("SELECT id FROM comparisons ORDER BY updated_at DESC, id DESC").fetchall()
        return [self.comparison(r["id"]) for r in rows]

    def rename_comparison(self, comparison_id: int, title: str) -> Comparison:
        title = title.strip() or "New comparison"
        with self._lock:
            self._write("UPDATE comparisons SET title = ? WHERE id = ?", (title, comparison_id))
            for conversation_id in self.comparison(comparison_id).conversations:
                self._write("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
        return self.comparison(comparison_id)

    def comparison_figures(self) -> dict[str, tuple[int, float | None, float | None, float | None]]:
        """Per compared target: answers given, average cost (where known), tokens/s and time to
        first words in ms."""
        rows = self._db.execute(
            """
            SELECT cc.target, COUNT(*) AS answers,
                   AVG(CASE WHEN m.cost_unknown THEN NULL ELSE m.cost END) AS cost,
                   AVG(m.tokens_per_s) AS speed, AVG(m.ttft_ms) AS ttft
            FROM comparison_columns cc JOIN messages m ON m.conversation_id = cc.conversation_id
            WHERE m.role = 'assistant' AND m.status = 'complete' GROUP BY cc.target
            """)
        return {r["target"]: (r["answers"], r["cost"], r["speed"], r["ttft"]) for r in rows}

    def touch_comparison(self, comparison_id: int) -> None:
        self._write("UPDATE comparisons SET updated_at = ? WHERE id = ?", (time.time(), comparison_id))

    def delete_comparison(self, comparison_id: int) -> None:
        """The comparison and its columns' conversations; its votes stay in the leaderboard."""
        with self._lock:
            ids = self.comparison(comparison_id).conversations
            self._write("DELETE FROM comparisons WHERE id = ?", (comparison_id,))
            for conversation_id in ids:
                self._write("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def add_vote(self, comparison_id: int | None, turn: int, targets: list[str], outcome: str) -> Vote:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        cur = self._write("INSERT INTO votes (comparison_id, turn, targets, outcome, created_at) VALUES (?, ?, ?, ?, ?)",
                          (comparison_id, turn, json.dumps(targets), outcome, time.time()))
        return self.votes(vote_id=cur.lastrowid)[0]

    def votes(self, comparison_id: int | None = None, vote_id: int | None = None) -> list[Vote]:
        sql, params = "SELECT * FROM votes", ()
        if vote_id is not None:
            sql, params = sql + " WHERE id = ?", (vote_id,)
        elif comparison_id is not None:
            sql, params = sql + " WHERE comparison_id = ?", (comparison_id,)
        rows = self._db.execute(sql + " ORDER BY id", params)
        return [Vote(r["id"], r["comparison_id"], r["turn"], tuple(json.loads(r["targets"])), r["outcome"],
                     r["created_at"]) for r in rows]

    # -- where the words went -------------------------------------------------------------------
    def usage_by_month(self) -> list[UsageRow]:
        """Answers per provider and month: tokens, bytes sent off the machine, cost."""
        rows = self._db.execute(
            """
            SELECT strftime('%Y-%m', created_at, 'unixepoch', 'localtime') AS month, provider, processed_on,
                   COUNT(*) AS answers, COALESCE(SUM(tokens_in), 0) AS tokens_in,
                   COALESCE(SUM(tokens_out), 0) AS tokens_out, SUM(bytes_sent) AS bytes_sent, SUM(cost) AS cost
            FROM messages WHERE role = 'assistant' AND provider != ''
            GROUP BY month, provider, processed_on ORDER BY month DESC, provider
            """)
        return [UsageRow(**{k: r[k] for k in r.keys()}) for r in rows]

    def conversations_that_left(self) -> list[tuple[Conversation, str, int, float]]:
        """Every conversation any of whose words were processed off this machine: where, how many
        bytes went, and what its answers cost."""
        rows = self._db.execute(
            """
            SELECT c.*, GROUP_CONCAT(DISTINCT m.processed_on) AS hosts, SUM(m.bytes_sent) AS sent,
                   SUM(m.cost) AS spent
            FROM conversations c JOIN messages m ON m.conversation_id = c.id
            WHERE m.processed_on NOT IN ('', ?) GROUP BY c.id ORDER BY c.updated_at DESC
            """, (THIS_MACHINE,))
        return [(self._conversation(r), r["hosts"], r["sent"], r["spent"]) for r in rows]

    # -- used by apps on this computer (the local API server) ----------------------------------
    def add_api_use(self, uses: Iterable[ApiUse], requests: Iterable[ApiRequest] = ()) -> None:
        """Count `uses` into their day's rows (adding to a row with the same key) and keep
        `requests` (with bodies), all in one transaction: all of it is saved, or none. Raises
        DatabaseBusy while another program holds the database locked, StoreError when the disk
        is full. Safe from any thread (the connection is shared under the store's lock)."""
        with self._lock:
            self._write("BEGIN IMMEDIATE")
            try:
                for u in uses:
                    self._write(
                        "INSERT INTO api_use (day, address, user_agent, model, processed_on, requests, failed,"
                        " tokens_in, tokens_out, bytes_sent, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (day, address, user_agent, model, processed_on) DO UPDATE SET"
                        " requests = requests + excluded.requests, failed = failed + excluded.failed,"
                        " tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out,"
                        " bytes_sent = bytes_sent + excluded.bytes_sent, last_at = MAX(last_at, excluded.last_at)",
                        (u.day, u.address, u.user_agent, u.model, u.processed_on, u.requests, u.failed,
                         u.tokens_in, u.tokens_out, u.bytes_sent, u.last_at))
                for r in requests:
                    self._write(
                        "INSERT INTO api_requests (at, address, user_agent, method, path, model, status, tokens_in,"
                        " tokens_out, duration_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (r.at, r.address, r.user_agent, r.method, r.path, r.model, r.status, r.tokens_in,
                         r.tokens_out, r.duration_ms, r.body))
                self._write("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def api_use(self, limit: int = 200, since: str = "") -> list[ApiUse]:
        """The per-day rows, newest day first (then the most recently used), at most `limit`,
        from the local date `since` (YYYY-MM-DD) on when given."""
        rows = self._db.execute("SELECT * FROM api_use WHERE day >= ? ORDER BY day DESC, last_at DESC LIMIT ?",
                                (since, limit))
        return [ApiUse(**{k: r[k] for k in r.keys()}) for r in rows]

    def api_use_totals(self, since: str = "") -> ApiUseTotals:
        """Everything apps used from the local date `since` (YYYY-MM-DD; "" for all time)."""
        r = self._db.execute(
            "SELECT COUNT(DISTINCT address || ' ' || user_agent) AS apps, COALESCE(SUM(requests), 0) AS requests,"
            " COALESCE(SUM(failed), 0) AS failed, COALESCE(SUM(tokens_in), 0) AS tokens_in,"
            " COALESCE(SUM(tokens_out), 0) AS tokens_out, COALESCE(SUM(bytes_sent), 0) AS bytes_sent"
            " FROM api_use WHERE day >= ?", (since,)).fetchone()
        hosts = self._db.execute("SELECT DISTINCT processed_on FROM api_use WHERE day >= ? AND processed_on != ?"
                                 " ORDER BY processed_on", (since, THIS_MACHINE))
        return ApiUseTotals(since=since, hosts=tuple(h[0] for h in hosts), **{k: r[k] for k in r.keys()})

    def api_requests(self, limit: int = 200) -> list[ApiRequest]:
        """The requests kept with their prompts and answers, newest first."""
        rows = self._db.execute("SELECT * FROM api_requests ORDER BY at DESC, id DESC LIMIT ?", (limit,))
        return [ApiRequest(**{k: r[k] for k in r.keys()}) for r in rows]

    def count_api_requests(self) -> int:
        """How many requests are kept with their prompts and answers."""
        return self._db.execute("SELECT COUNT(*) FROM api_requests").fetchone()[0]

    def clear_api_requests(self) -> int:
        """Delete every request kept with its prompt and answer (the per-day figures stay); how
        many were deleted. Their text is overwritten in the file too (SQLite's secure_delete,
        then a checkpoint that empties the write-ahead log when no other reader holds it), not
        only unlinked. Raises DatabaseBusy while another program holds the database."""
        with self._lock:
            self._db.execute("PRAGMA secure_delete = ON")
            try:
                deleted = self._write("DELETE FROM api_requests").rowcount
            finally:
                self._db.execute("PRAGMA secure_delete = OFF")
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:  # another program reads: the log is emptied at a later checkpoint
                pass
        return deleted

    # -- models ---------------------------------------------------------------------------------
    @staticmethod
    def _model(row: sqlite3.Row) -> ModelRecord:
        data = {k: row[k] for k in row.keys()}
        data["has_chat_template"] = bool(data["has_chat_template"])
        return ModelRecord(**data)

    def add_model(self, record: ModelRecord) -> ModelRecord:
        data = {f.name: getattr(record, f.name) for f in fields(ModelRecord)}
        data["added_at"] = data["added_at"] or time.time()
        self._write(
            f"INSERT INTO models ({', '.join(data)}) VALUES ({', '.join('?' * len(data))})",
            list(data.values()),
        )
        return self.model(record.id)

    def model(self, model_id: str) -> ModelRecord:
        row = self._db.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise KeyError(model_id)
        return self._model(row)

    def models(self) -> list[ModelRecord]:
        rows = self._db.execute("SELECT * FROM models ORDER BY COALESCE(last_used_at, added_at) DESC")
        return [self._model(r) for r in rows]

    def set_chat_format(self, model_id: str, chat_format: str) -> ModelRecord:
        """The prompt format for a model: templates.AUTO or a templates.FORMATS name."""
        self._write("UPDATE models SET chat_format = ? WHERE id = ?", (chat_format, model_id))
        return self.model(model_id)

    def set_model_pooling(self, model_id: str, pooling: str) -> None:
        """Record the pooling a model's file declares ("" for none), read after it was installed."""
        self._write("UPDATE models SET pooling = ? WHERE id = ?", (pooling, model_id))

    def touch_model(self, model_id: str) -> None:
        self._write("UPDATE models SET last_used_at = ? WHERE id = ?", (time.time(), model_id))

    def set_model_path(self, model_id: str, path: str, origin: str) -> ModelRecord:
        """Where a model's file is now (after the user located a moved file), and its origin."""
        self._write("UPDATE models SET path = ?, origin = ? WHERE id = ?", (path, origin, model_id))
        return self.model(model_id)

    def remove_model(self, model_id: str) -> None:
        self._write("DELETE FROM models WHERE id = ?", (model_id,))
