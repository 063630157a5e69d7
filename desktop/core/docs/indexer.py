"""Indexing in the background: the files of a collection that wait (new, changed, or cut off by a
kill) are read one at a time in a worker thread, split into passages, given vectors when an
embedding model is there, and committed with their state in one transaction each.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from desktop.core.docs import DocumentError, Draft
from desktop.core.docs.index import DocumentIndex, FileEntry


@dataclass(frozen=True)
class Progress:
    """Where a run stands: `files_done` of `files_total` (failed ones count as done), `pages` and
    `passages` read so far in this run, `failed` files, `seconds_left` estimated from the rate
    so far (None until one file is done), `current` the path being read ("" between files)."""

    files_done: int
    files_total: int
    pages: int
    passages: int
    failed: int
    seconds_left: float | None
    current: str


@dataclass(frozen=True)
class RunResult:
    """What a finished run did: files indexed, failed, passages and pages stored, seconds."""

    indexed: int
    failed: int
    passages: int
    pages: int
    seconds: float


STREAM_BYTES = 32 * 2**20  # a file larger than this is stored in parts, never held whole
BATCH_PASSAGES = 256  # passages per part


class FileReader:
    """A file's passages as they are read (extract.sections -> chunk.passages), and the pages
    seen so far. Raises DocumentError with the reason it cannot be read."""

    def __init__(self, path: str) -> None:
        from desktop.core.docs import chunk, extract

        self.pages: set[int] = set()

        def noted(sections):
            for section in sections:
                if section.page is not None:
                    self.pages.add(section.page)
                yield section

        self.drafts = chunk.passages(noted(extract.sections(path)))

    def batch(self, size: int) -> list[Draft]:
        """The next `size` passages ([] at the end), read in the calling thread."""
        return list(itertools.islice(self.drafts, size))


def read_file(path: str) -> tuple[list[Draft], int]:
    """A file's passages and its number of pages (0 for a file without pages), read whole (in
    the calling thread): for files up to STREAM_BYTES. Raises DocumentError."""
    reader = FileReader(path)
    drafts = list(reader.drafts)
    return drafts, len(reader.pages)


class Indexer:
    """Indexes the waiting files of an index (see the module). `embedder`: an Embedder, or None
    for keywords alone."""

    def __init__(self, index: DocumentIndex, embedder=None, *, stream_bytes: int = STREAM_BYTES) -> None:
        """`stream_bytes`: files larger than this are read and stored in parts (see index.append)."""
        self.index = index
        self.embedder = embedder
        self.stream_bytes = stream_bytes

    async def run(self, collection: str | None = None,
                  progress: Callable[[Progress], None] | None = None) -> RunResult:
        """Index what waits in `collection` (all when None): new files, files changed since
        (size or mtime), files a killed run left half done; files gone from the disk are dropped.
        Each file's passages (and vectors) are committed with its state 'done' at once, so a
        kill or a cancel loses at most the file being read, which waits again for the next run.
        A file that cannot be read is marked failed with its reason and the others go on.
        Raises EmbedderError when the embedding model stops working (what is done stays)."""
        started = time.monotonic()
        if self.embedder is not None:
            self._renew_stale_vectors(collection)
        waiting = await asyncio.to_thread(self.index.pending, collection)
        total = len(waiting)
        done = failed = passages = pages = 0
        spent_on_files = 0.0

        def report(current: str) -> None:
            if progress is None:
                return
            left = None
            if done:
                left = spent_on_files / done * (total - done)
            progress(Progress(files_done=done, files_total=total, pages=pages, passages=passages, failed=failed,
                              seconds_left=left, current=current))

        for entry in waiting:
            report(entry.path)
            file_started = time.monotonic()
            stored = await self._index_one(entry)
            spent_on_files += time.monotonic() - file_started
            done += 1
            if stored is None:
                failed += 1
            else:
                passages += stored[0]
                pages += stored[1]
        report("")
        return RunResult(indexed=done - failed, failed=failed, passages=passages, pages=pages,
                         seconds=time.monotonic() - started)

    def _renew_stale_vectors(self, collection: str | None) -> None:
        """A collection indexed without vectors, or with another model's (vectors of two models
        cannot be compared), is indexed again with the embedder's, so search by meaning works
        once an embedding model is installed."""
        for found in self.index.collections():
            if collection is not None and found.name != collection:
                continue
            if found.passages and found.embed_model != self.embedder.model_id:
                self.index.reset_vectors(found.name)

    async def _index_one(self, entry: FileEntry) -> tuple[int, int] | None:
        """Index one file; (passages, pages), or None when it failed. On cancel the file stays
        'indexing' in the database only until the next run's `pending` sets it waiting; here it
        is set waiting at once when possible."""
        # On this thread, not a worker's: a Stop arriving meanwhile must not find the file not
        # yet marked, then see a worker mark it 'indexing' after its requeue (left so for good).
        self.index.mark_indexing(entry.id)
        try:
            try:
                size, mtime = await asyncio.to_thread(_stat, entry.path)
                if size > self.stream_bytes:
                    return await self._index_in_parts(entry, size, mtime)
                drafts, page_count = await asyncio.to_thread(read_file, entry.path)
            except DocumentError as exc:
                await asyncio.to_thread(self.index.mark_failed, entry.id, str(exc))
                return None
            except OSError as exc:
                await asyncio.to_thread(self.index.mark_failed, entry.id,
                                        f"It cannot be read ({exc.strerror or exc}).")
                return None
            vectors = None
            if self.embedder is not None and drafts:
                vectors = await self.embedder.embed([d.text for d in drafts])
            await asyncio.to_thread(self.index.store, entry.id, drafts, pages=page_count, size=size, mtime=mtime,
                                    vectors=vectors, model=self.embedder.model_id if vectors else "")
            return len(drafts), page_count
        except BaseException:
            # Cancelled (a Stop) or the embedder failed: the file waits for the next run.
            try:
                self.index.requeue(entry.id)
            except Exception:  # noqa: BLE001 - the next run's pending() does it anyway
                pass
            raise

    async def _index_in_parts(self, entry: FileEntry, size: int, mtime: float) -> tuple[int, int]:
        """A large file, read and stored BATCH_PASSAGES at a time: memory holds one batch, never
        the file (a 2 GB log). Raises DocumentError (the caller marks the file failed); a stop or
        a kill leaves it 'indexing', read again from the start next time."""
        reader = await asyncio.to_thread(FileReader, entry.path)
        await asyncio.to_thread(self.index.clear_passages, entry.id)
        count = 0
        while batch := await asyncio.to_thread(reader.batch, BATCH_PASSAGES):
            vectors = await self.embedder.embed([d.text for d in batch]) if self.embedder is not None else None
            stored = await asyncio.to_thread(self.index.append, entry.id, batch, vectors=vectors,
                                             model=self.embedder.model_id if vectors else "")
            if not stored:
                return count, len(reader.pages)  # the collection was removed meanwhile
            count += len(batch)
        await asyncio.to_thread(self.index.finish, entry.id, pages=len(reader.pages), passages=count,
                                size=size, mtime=mtime)
        return count, len(reader.pages)


def _stat(path: str) -> tuple[int, float]:
    st = os.stat(path)
    return st.st_size, st.st_mtime
