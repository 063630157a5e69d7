"""The document index: `documents.db` in the data folder, one SQLite database holding the
collections, their files (with the per-file state that makes indexing resumable), the passages,
an FTS5 index over the passages (BM25) and sqlite-vec `vec0` tables of their vectors.

Opened with apsw (its own SQLite, with FTS5 and extension loading; Python's sqlite3 cannot load
extensions on every build) and the sqlite-vec extension. WAL mode, schema versioned with
`PRAGMA user_version` and forward-only migrations, as desktop/core/store.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from desktop.core.docs import DEFAULT_COLLECTION, HIDDEN_PREFIX, DocumentError, Draft, Passage, Results
from desktop.core.errors import HearthError

BUSY_TIMEOUT_MS = 30_000  # a second writer (the window and `hearth docs`) waits this long for the other's file
STATES = ("waiting", "indexing", "done", "failed", "skipped")
CANDIDATES = 50  # hits taken from each of BM25 and the vectors before they are fused
RRF_K = 60  # reciprocal rank fusion's constant (Cormack, Clarke and Büttcher 2009)
MAX_NAME = 100  # characters in a collection's name
MMAP_BYTES = 1 << 30  # the most of the database read through memory mapping (address space, not memory)

# Words too common to tell passages apart: Lucene's English stop words
# (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET), dropped from a query unless nothing else is left.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)

# In a large index, a query word found in more than COMMON_SHARE of the passages (and in more than
# COMMON_MIN of them) tells little apart and costs the most: every passage holding it is scored.
# Such words are left out when the query has rarer ones, as Lucene's CommonTermsQuery does with
# its cutoff frequency; when all are common, only the rarest is searched.
COMMON_SHARE = 0.05
COMMON_MIN = 5000

MIGRATIONS: list[str] = [
    """
    CREATE TABLE collections (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        embed_model TEXT,           -- the embedding model its vectors were made with; NULL: none
        dimensions INTEGER          -- the numbers in each of those vectors
    );
    CREATE TABLE files (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        mtime REAL NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'waiting'
            CHECK (state IN ('waiting', 'indexing', 'done', 'failed', 'skipped')),
        reason TEXT NOT NULL DEFAULT '',
        pages INTEGER NOT NULL DEFAULT 0,
        passages INTEGER NOT NULL DEFAULT 0,
        indexed_at REAL,
        UNIQUE (collection, path)
    );
    CREATE INDEX files_by_state ON files (state, collection);
    CREATE TABLE passages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        page INTEGER,
        heading TEXT NOT NULL DEFAULT '',
        ordinal INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX passages_by_file ON passages (file_id, ordinal);
    CREATE VIRTUAL TABLE passages_fts USING fts5 (
        text, content='passages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER passages_fts_insert AFTER INSERT ON passages BEGIN
        INSERT INTO passages_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER passages_fts_delete AFTER DELETE ON passages BEGIN
        INSERT INTO passages_fts (passages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    """,
]


class IndexUnavailable(HearthError):
    """The documents database cannot be used (locked by another program, disk full, written by a
    newer Hearth); str() says why in words."""


@dataclass(frozen=True)
class Collection:
    """A named set of files: how many files, passages and failures it has, and the embedding
    model (`embed_model`, its `dimensions`) its vectors were made with ("" / 0 when none)."""

    name: str
    created_at: float
    files: int
    passages: int
    failed: int
    waiting: int
    embed_model: str
    dimensions: int


@dataclass(frozen=True)
class FileEntry:
    """A file of a collection: `state` one of STATES, `reason` the sentence when failed or
    skipped, `pages` (0 for files without pages), `passages`, size in bytes and mtime (seconds
    since the epoch) as they were when registered or indexed."""

    id: int
    collection: str
    path: str
    size: int
    mtime: float
    state: str
    reason: str
    pages: int
    passages: int
    indexed_at: float | None

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass(frozen=True)
class Added:
    """What `add` did: `added` the files newly registered (absolute paths, waiting), `known` the
    files the collection already had, `skipped` (path, reason) for what it will not index."""

    added: tuple[str, ...]
    known: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


def query_words(text: str) -> list[str]:
    """The words of what a person typed (lower case, each once, in order), stop words left out
    unless the query has nothing else."""
    words = re.findall(r"\w+", text.lower(), flags=re.UNICODE)
    return list(dict.fromkeys([w for w in words if w not in STOP_WORDS] or words))


def fts_query(text: str | list[str]) -> str:
    """What a person typed (or its `query_words`) as an FTS5 query that cannot fail: each word
    quoted (so FTS5's own syntax, `"`, `AND`, `NEAR(`, `*`, `:`, cannot be written by accident),
    joined by OR so BM25 ranks the passages holding more of them (and rarer ones) first. "" when
    there are no words at all."""
    words = query_words(text) if isinstance(text, str) else text
    return " OR ".join(f'"{w}"' for w in words)


def _valid_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise DocumentError("A collection needs a name.")
    if len(name) > MAX_NAME or any(ord(ch) < 32 for ch in name):
        raise DocumentError(f"A collection's name must be at most {MAX_NAME} printable characters.")
    return name


def _readable_kinds() -> frozenset[str]:
    from desktop.core.docs import extract

    return frozenset(k.lower() for k in extract.KINDS)


def _vector_blob(vector: Sequence[float]) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype="<f4").tobytes()


class DocumentIndex:
    """The documents database (see the module). Safe to share between threads (one lock around
    the connection); a second process may open the same file (WAL: readers never wait)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms  # how long a write waits for another program's
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Vector searches run on a second connection in a thread of their own, beside BM25 on
        # this one (hybrid search takes the longer of the two, not their sum).
        self._reader: apsw.Connection | None = None
        self._reader_lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        try:
            self._db = self._connect()
            if self._one("PRAGMA user_version")[0] == 0:
                # A new database gives back the pages of removed collections (incremental_vacuum
                # in remove()); this must be chosen before the first table is made.
                self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._db.execute("PRAGMA journal_mode = WAL").fetchall()
            self._db.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut loses at most the last commits
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            # How many passages hold each word (for COMMON_SHARE), for this connection only.
            self._db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.passages_vocab "
                             "USING fts5vocab(main, passages_fts, row)")
        except apsw.Error as exc:
            raise IndexUnavailable(f"Hearth cannot open its documents database at {self.path} ({exc}). "
                              "If the disk is full, free some space and try again.") from exc

    def _connect(self) -> apsw.Connection:
        """A connection with sqlite-vec loaded, the busy timeout and memory-mapped reads."""
        import sqlite_vec

        connection = apsw.Connection(str(self.path))
        connection.enable_load_extension(True)
        connection.load_extension(sqlite_vec.loadable_path())
        connection.enable_load_extension(False)
        connection.set_busy_timeout(self.busy_timeout_ms)
        # Read through memory mapping: a vector search reads every vector (100,000 of 384
        # numbers: 150 MB), and copying them page by page took about half its time.
        connection.execute(f"PRAGMA mmap_size = {MMAP_BYTES}").fetchall()
        return connection

    # -- schema -------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self._one("PRAGMA user_version")[0]

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise IndexUnavailable(f"The documents database at {self.path} was written by a newer Hearth "
                              f"(schema {current}). Update Hearth to open it.")
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            with self._tx():
                self._db.execute(f"{script}; PRAGMA user_version = {version};")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
        with self._lock:
            self._db.close()

    def _one(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchone()

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._tx():
            self._db.execute(sql, tuple(params))

    @contextlib.contextmanager
    def _tx(self):
        """One write transaction under the connection's lock. Raises IndexUnavailable with a
        sentence when the disk is full or another program (a second `hearth docs`, the window)
        keeps the database busy past BUSY_TIMEOUT_MS; the transaction is then rolled back."""
        with self._lock:
            try:
                with self._db:
                    yield
            except apsw.FullError as exc:
                raise IndexUnavailable("The disk is full: Hearth could not save the document index. "
                                       "Free some space; nothing already indexed is lost.") from exc
            except apsw.BusyError as exc:
                raise IndexUnavailable(f"Another Hearth (the window, or a `hearth docs` command) is writing the "
                                       f"documents database ({self.path}); try again when it is done. Nothing "
                                       "already indexed is lost.") from exc

    # -- collections ----------------------------------------------------------------------------
    def collections(self) -> list[Collection]:
        """Every collection, by name, with its counts, a chat's own (HIDDEN_PREFIX) included:
        whoever lists them for the user leaves those out (context.is_hidden)."""
        rows = self._all(
            """SELECT c.name, c.created_at, COALESCE(c.embed_model, ''), COALESCE(c.dimensions, 0),
                      COUNT(f.id), COALESCE(SUM(f.passages), 0),
                      COALESCE(SUM(f.state = 'failed'), 0),
                      COALESCE(SUM(f.state IN ('waiting', 'indexing')), 0)
               FROM collections c LEFT JOIN files f ON f.collection = c.name
               GROUP BY c.name ORDER BY c.name""")
        return [Collection(name=r[0], created_at=r[1], embed_model=r[2], dimensions=r[3], files=r[4],
                           passages=r[5], failed=r[6], waiting=r[7]) for r in rows]

    def collection(self, name: str) -> Collection:
        """One collection; DocumentError with a sentence when there is none of that name."""
        for found in self.collections():
            if found.name == name:
                return found
        raise DocumentError(f"There is no collection named “{name}”.")

    def _ensure_collection(self, name: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO collections (name, created_at) VALUES (?, ?)",
                         (name, time.time()))

    def add(self, paths: Iterable[str | Path], collection: str = DEFAULT_COLLECTION) -> Added:
        """Register files and folders in `collection` (made if new), each file as waiting. A
        folder is walked for the suffixes extract reads (`extract.KINDS`); hidden files and
        folders are skipped, and so are symbolic links leading outside the folder. A path that
        does not exist or a file Hearth cannot read is listed in `skipped` with the reason. Files
        already in the collection are left as they are (`known`). Nothing is read here: the
        Indexer does that."""
        name = _valid_name(collection)
        kinds = _readable_kinds()
        found: list[tuple[Path, os.stat_result]] = []
        skipped: list[tuple[str, str]] = []
        for given in paths:
            root = Path(given).expanduser()
            try:
                root = root.resolve(strict=True)
            except (OSError, RuntimeError):
                skipped.append((str(given), "There is no such file or folder."))
                continue
            if root.is_dir():
                found.extend(self._walk(root, kinds, skipped))
            elif root.is_file():
                if root.suffix.lower() not in kinds:
                    skipped.append((str(root), f"Hearth cannot read {root.suffix or 'such'} files."))
                    continue
                try:
                    found.append((root, root.stat()))
                except OSError as exc:
                    skipped.append((str(root), f"It cannot be read ({exc.strerror or exc})."))
            else:
                skipped.append((str(root), "It is neither a file nor a folder."))
        added: list[str] = []
        known: list[str] = []
        if not found and not self._one("SELECT 1 FROM collections WHERE name = ?", (name,)):
            return Added(added=(), known=(), skipped=tuple(skipped))  # no empty collection made
        with self._tx():
            self._ensure_collection(name)
            for path, st in found:
                self._db.execute(
                    "INSERT OR IGNORE INTO files (collection, path, size, mtime) VALUES (?, ?, ?, ?)",
                    (name, str(path), st.st_size, st.st_mtime))
                (added if self._db.changes() else known).append(str(path))
        return Added(added=tuple(added), known=tuple(known), skipped=tuple(skipped))

    @staticmethod
    def _walk(root: Path, kinds: frozenset[str], skipped: list[tuple[str, str]]):
        for folder, dirs, names in os.walk(root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for filename in sorted(names):
                if filename.startswith("."):
                    continue
                path = Path(folder) / filename
                if Path(filename).suffix.lower() not in kinds:
                    continue
                if path.is_symlink():
                    try:
                        target = path.resolve(strict=True)
                    except (OSError, RuntimeError):
                        skipped.append((str(path), "It is a link to a file that is not there."))
                        continue
                    if not target.is_relative_to(root):
                        skipped.append((str(path), "It is a link to a file outside the folder."))
                        continue
                    path = target
                try:
                    st = path.stat()
                except OSError as exc:
                    skipped.append((str(path), f"It cannot be read ({exc.strerror or exc})."))
                    continue
                if path.is_file():
                    yield path, st

    def remove(self, collection: str) -> int:
        """Forget a collection: its files' passages and vectors go from the index (the files
        themselves are not touched). Returns how many files it had; DocumentError when there is
        no such collection."""
        found = self.collection(collection)
        with self._tx():
            self._db.execute("DELETE FROM passages WHERE file_id IN (SELECT id FROM files WHERE collection = ?)",
                             (found.name,))
            self._db.execute("DELETE FROM files WHERE collection = ?", (found.name,))
            self._db.execute("DELETE FROM collections WHERE name = ?", (found.name,))
        self.give_back_space()
        return found.files

    def give_back_space(self) -> None:
        """Return the pages that removed passages left free to the disk (the database file
        shrinks; without this it keeps its largest size). Best effort: a busy database keeps
        them for the next time."""
        with self._lock, contextlib.suppress(apsw.Error):
            self._db.execute("PRAGMA incremental_vacuum").fetchall()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def files(self, collection: str | None = None) -> list[FileEntry]:
        """The files of `collection` (all collections when None), by path."""
        sql = ("SELECT id, collection, path, size, mtime, state, reason, pages, passages, indexed_at FROM files"
               + (" WHERE collection = ?" if collection is not None else "") + " ORDER BY collection, path")
        rows = self._all(sql, (collection,) if collection is not None else ())
        return [FileEntry(*row) for row in rows]

    # -- indexing (used by the Indexer) ---------------------------------------------------------
    def pending(self, collection: str | None = None) -> list[FileEntry]:
        """Bring file states up to date and say what is left to index, in order: a file left
        'indexing' (a run killed while reading it) waits again; a done or failed file whose size
        or mtime changed waits again; a file that is gone is dropped with its passages. Returns
        the waiting files of `collection` (all when None)."""
        where = " AND collection = ?" if collection is not None else ""
        args: tuple = (collection,) if collection is not None else ()
        self._write("UPDATE files SET state = 'waiting' WHERE state = 'indexing'" + where, args)
        for entry in self.files(collection):
            if entry.state in ("waiting", "skipped"):
                continue
            try:
                st = os.stat(entry.path)
            except FileNotFoundError:
                self.drop_file(entry.id)
                continue
            except OSError:
                continue
            if st.st_size != entry.size or st.st_mtime != entry.mtime:
                self._write("UPDATE files SET state = 'waiting', size = ?, mtime = ? WHERE id = ?",
                            (st.st_size, st.st_mtime, entry.id))
        return [f for f in self.files(collection) if f.state == "waiting"]

    def drop_file(self, file_id: int) -> None:
        """Forget one file and its passages (it is gone from the disk)."""
        with self._tx():
            self._db.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
            self._db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def mark_indexing(self, file_id: int) -> None:
        self._write("UPDATE files SET state = 'indexing', reason = '' WHERE id = ?", (file_id,))

    def requeue(self, file_id: int) -> None:
        """A file whose reading was stopped waits again (its old passages, if any, stay)."""
        self._write("UPDATE files SET state = 'waiting' WHERE id = ? AND state = 'indexing'", (file_id,))

    def mark_failed(self, file_id: int, reason: str, *, state: str = "failed") -> None:
        """The file cannot be read: its passages go, `reason` says why (a sentence)."""
        with self._tx():
            self._db.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
            self._db.execute("UPDATE files SET state = ?, reason = ?, passages = 0, pages = 0, indexed_at = ? "
                             "WHERE id = ?", (state, reason, time.time(), file_id))

    def store(self, file_id: int, drafts: Sequence[Draft], *, pages: int, size: int, mtime: float,
              vectors: Sequence[Sequence[float]] | None = None, model: str = "") -> None:
        """Replace a file's passages with `drafts` (and their `vectors`, unit length, made by
        embedding model `model`) and mark it done with its size and mtime as read, in ONE
        transaction: a kill before the commit leaves the file as it was."""
        if vectors is not None and len(vectors) != len(drafts):
            raise ValueError("one vector per passage")
        with self._tx():
            if self._insert(file_id, drafts, vectors, model, replace=True):
                self._done(file_id, pages=pages, passages=len(drafts), size=size, mtime=mtime)

    def _insert(self, file_id: int, drafts: Sequence[Draft], vectors: Sequence[Sequence[float]] | None,
                model: str, *, replace: bool) -> bool:
        """Insert passages (and vectors) of a file, in the caller's transaction; its old ones go
        first when `replace`. False when the file is no longer in the index."""
        row = self._db.execute("SELECT collection FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            return False  # the collection was removed while the file was read
        if replace:
            self._db.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
        table = None
        if vectors:
            dims = len(vectors[0])
            table = self._vector_table(dims)
            self._db.execute("UPDATE collections SET embed_model = ?, dimensions = ? WHERE name = ?",
                             (model, dims, row[0]))
        for i, draft in enumerate(drafts):
            self._db.execute("INSERT INTO passages (file_id, page, heading, ordinal, text) VALUES (?, ?, ?, ?, ?)",
                             (file_id, draft.page, draft.heading, draft.ordinal, draft.text))
            if table is not None:
                passage_id = self._db.last_insert_rowid()
                self._db.execute(f"INSERT INTO {table} (rowid, collection, embedding) VALUES (?, ?, ?)",
                                 (passage_id, row[0], _vector_blob(vectors[i])))
        return True

    def _done(self, file_id: int, *, pages: int, passages: int, size: int, mtime: float) -> None:
        self._db.execute("UPDATE files SET state = 'done', reason = '', pages = ?, passages = ?, size = ?, "
                         "mtime = ?, indexed_at = ? WHERE id = ?",
                         (pages, passages, size, mtime, time.time(), file_id))

    # A file too large to hold its passages in memory is stored in parts: its old passages go
    # first (clear_passages), then each batch is committed (append) while its state stays
    # 'indexing', and finish() marks it done. A kill in between leaves it 'indexing': the next
    # run reads it again from the start (clear_passages), so nothing is kept twice.
    def clear_passages(self, file_id: int) -> None:
        """Forget a file's passages (it is about to be read again, in parts)."""
        with self._tx():
            self._db.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))

    def append(self, file_id: int, drafts: Sequence[Draft], *, vectors: Sequence[Sequence[float]] | None = None,
               model: str = "") -> bool:
        """Add one batch of a large file's passages, committed. False when the file is gone."""
        if vectors is not None and len(vectors) != len(drafts):
            raise ValueError("one vector per passage")
        with self._tx():
            return self._insert(file_id, drafts, vectors, model, replace=False)

    def finish(self, file_id: int, *, pages: int, passages: int, size: int, mtime: float) -> None:
        """A large file read to its end: done, with its counts."""
        with self._tx():
            self._done(file_id, pages=pages, passages=passages, size=size, mtime=mtime)

    def reset_vectors(self, collection: str) -> None:
        """The collection has no vectors, or another model's than the one now installed: its
        files wait to be indexed again (with vectors from the new model)."""
        with self._tx():
            self._db.execute("UPDATE files SET state = 'waiting' WHERE collection = ? AND state = 'done'",
                             (collection,))
            self._db.execute("UPDATE collections SET embed_model = NULL, dimensions = NULL WHERE name = ?",
                             (collection,))

    def _vector_table(self, dims: int) -> str:
        """The vec0 table for vectors of `dims` numbers (made on first use), each row's rowid the
        passage's id, partitioned by collection; a trigger deletes a passage's vector with it."""
        if not isinstance(dims, int) or dims < 1:
            raise ValueError("dimensions must be a whole number above 0")
        table = f"vectors_{dims}"
        self._db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0 ("
                         f"collection TEXT PARTITION KEY, embedding FLOAT[{dims}] distance_metric=cosine)")
        self._db.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_delete AFTER DELETE ON passages BEGIN "
                         f"DELETE FROM {table} WHERE rowid = old.id; END")
        return table

    # -- search ---------------------------------------------------------------------------------
    def search(self, query: str, *, collections: Sequence[str] | None = None, limit: int = 8,
               vector: Sequence[float] | None = None, model: str | None = None) -> Results:
        """The passages that best answer `query`, best first, at most `limit`.

        Keywords: FTS5's BM25 over the passages (the query made safe by `fts_query`). Hybrid,
        when `vector` (the query's unit vector, from the same embedding model as the
        collection's; `model` its id, when given, must match) is given and a collection searched
        has vectors of its size: the top CANDIDATES of BM25 and of the vectors (cosine distance,
        sqlite-vec) are fused by reciprocal rank fusion, score = sum of 1 / (RRF_K + rank) over
        the lists a passage is in (G. V. Cormack, C. L. A. Clarke, S. Büttcher, "Reciprocal rank
        fusion outperforms Condorcet and individual rank learning methods", SIGIR 2009; k = 60 as
        there). `Results.mode` says which was done and `note` why search was keywords alone when
        vectors could have helped. `collections`: names (None: all). Scores: BM25's with its sign
        turned (higher is better) for keywords, the fused score for hybrid."""
        limit = max(1, int(limit))
        names = self._names(collections)
        if not names:
            return Results(passages=(), mode="keywords", note="")
        with_vectors = [c for c in self.collections() if c.name in names and c.dimensions]
        usable = [c for c in with_vectors if vector is not None and c.dimensions == len(vector)
                  and (model is None or c.embed_model == model)]
        nearest = self._knn_beside(vector, [c.name for c in usable], CANDIDATES) if usable else None
        keyword_hits = self._bm25(query, names, max(limit, CANDIDATES) if vector is not None else limit)
        if vector is None:
            note = ("Keywords only: no embedding model was used for this search." if with_vectors else
                    "Keywords only: these documents have no vectors (no embedding model was installed "
                    "when they were indexed).")
            return Results(passages=self._passages(keyword_hits[:limit]), mode="keywords", note=note)
        if nearest is None:
            note = ("Keywords only: these documents have no vectors from the embedding model in use; "
                    "index them again (hearth docs add) to search by meaning.")
            return Results(passages=self._passages(keyword_hits[:limit]), mode="keywords", note=note)
        vector_hits = nearest.result()
        fused: dict[int, float] = {}
        for hits in (keyword_hits, vector_hits):
            for rank, (passage_id, _) in enumerate(hits, start=1):
                fused[passage_id] = fused.get(passage_id, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return Results(passages=self._passages(best), mode="hybrid", note="")

    def search_vectors(self, vector: Sequence[float], *, collections: Sequence[str] | None = None,
                       limit: int = 8) -> tuple[Passage, ...]:
        """The passages nearest to `vector` alone (cosine), best first; score = 1 - distance."""
        names = [c.name for c in self.collections() if c.name in self._names(collections)
                 and c.dimensions == len(vector)]
        return self._passages(self._knn(vector, names, limit)[:limit]) if names else ()

    def _names(self, collections: Sequence[str] | None) -> list[str]:
        known = [c[0] for c in self._all("SELECT name FROM collections ORDER BY name")]
        if collections is None:
            return [n for n in known if not n.startswith(HIDDEN_PREFIX)]
        missing = [n for n in collections if n not in known]
        if missing:
            raise DocumentError(f"There is no collection named “{missing[0]}”.")
        return list(dict.fromkeys(collections))

    def _searched_words(self, query: str) -> list[str]:
        """The query's words, less those too common to be worth their cost (COMMON_SHARE)."""
        words = query_words(query)
        if len(words) < 2:
            return words
        total = self._one("SELECT COUNT(*) FROM passages")[0]
        cutoff = max(COMMON_MIN, COMMON_SHARE * total)
        if total <= cutoff:
            return words
        counts = {w: (self._one("SELECT doc FROM temp.passages_vocab WHERE term = ?", (w,)) or (0,))[0]
                  for w in words}
        rare = [w for w in words if counts[w] <= cutoff]
        return rare or [min(words, key=lambda w: counts[w])]

    def _bm25(self, query: str, names: list[str], limit: int) -> list[tuple[int, float]]:
        match = fts_query(self._searched_words(query))
        if not match:
            return []
        if len(names) == len(self._all("SELECT name FROM collections")):  # all of them: no need to look
            return [(r[0], -r[1]) for r in self._all(
                """SELECT rowid, bm25(passages_fts) AS rank FROM passages_fts WHERE passages_fts MATCH ?
                   ORDER BY rank LIMIT ?""", (match, limit))]
        marks = ",".join("?" * len(names))
        return [(r[0], -r[1]) for r in self._all(
            f"""SELECT passages_fts.rowid, bm25(passages_fts) AS rank FROM passages_fts
                JOIN passages p ON p.id = passages_fts.rowid JOIN files f ON f.id = p.file_id
                WHERE passages_fts MATCH ? AND f.collection IN ({marks})
                ORDER BY rank LIMIT ?""", (match, *names, limit))]

    def _knn_beside(self, vector: Sequence[float], names: list[str], k: int) -> concurrent.futures.Future:
        """`_knn` on the reading connection, in its thread: its result is a Future."""
        with self._reader_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hearth-vectors")
        return self._pool.submit(self._knn, vector, names, k, reader=True)

    def _knn(self, vector: Sequence[float], names: list[str], k: int, *,
             reader: bool = False) -> list[tuple[int, float]]:
        table = f"vectors_{len(vector)}"
        marks = ",".join("?" * len(names))
        sql = f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ? AND collection IN ({marks})"
        args = (_vector_blob(vector), k, *names)
        if reader:
            with self._reader_lock:
                if self._reader is None:
                    self._reader = self._connect()
                rows = self._reader.execute(sql, args).fetchall()
        else:
            rows = self._all(sql, args)
        rows.sort(key=lambda r: r[1])  # k per collection: the nearest of them all
        return [(r[0], 1.0 - r[1]) for r in rows[:k]]

    def _passages(self, hits: Sequence[tuple[int, float]]) -> tuple[Passage, ...]:
        if not hits:
            return ()
        ids = [h[0] for h in hits]
        rows = {r[0]: r for r in self._all(
            f"""SELECT p.id, f.path, p.page, p.heading, p.text, f.collection, f.id FROM passages p
                JOIN files f ON f.id = p.file_id WHERE p.id IN ({",".join("?" * len(ids))})""", ids)}
        # A file deleted since it was indexed is no source any more: it leaves the index now,
        # not at the next indexing, so no answer cites a file that is gone.
        gone = {r[6] for r in rows.values() if not os.path.exists(r[1])}
        for file_id in gone:
            with contextlib.suppress(IndexUnavailable):
                self.drop_file(file_id)
        rows = {pid: r for pid, r in rows.items() if r[6] not in gone}
        return tuple(Passage(id=pid, path=rows[pid][1], name=os.path.basename(rows[pid][1]), page=rows[pid][2],
                             heading=rows[pid][3], text=rows[pid][4], score=score, collection=rows[pid][5])
                     for pid, score in hits if pid in rows)

    def whole_text(self, path: str | Path) -> str:
        """The indexed text of a file (its passages in order, a blank line between them).
        DocumentError when the file is not indexed (yet)."""
        key = str(Path(path).expanduser().resolve())
        row = self._one("SELECT id FROM files WHERE path = ? AND state = 'done' ORDER BY indexed_at DESC LIMIT 1",
                        (key,))
        if row is None:
            raise DocumentError(f"“{os.path.basename(key)}” is not indexed.")
        texts = self._all("SELECT text FROM passages WHERE file_id = ? ORDER BY ordinal", (row[0],))
        return "\n\n".join(t[0] for t in texts)

    def passage(self, passage_id: int) -> Passage:
        """One passage by its id (score 0); DocumentError when it is gone."""
        found = self._passages([(passage_id, 0.0)])
        if not found:
            raise DocumentError("That passage is no longer in the index.")
        return found[0]
