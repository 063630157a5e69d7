"""Chat with your documents, on this computer (issue 18): files read into passages, an index
that finds them (BM25 and vectors in one SQLite database), and answers that cite them.

The contract the chat, the window, the command line and the tests rely on (each module owns one
part; names below are what other modules import):

extract (reading files)
    `sections(path, *, password=None) -> Iterator[Section]`: the text of a PDF (a Section per
    page, `page` from 1), DOCX (per heading, `heading` kept), TXT/Markdown/HTML/CSV/source code
    (any text encoding, streamed in pieces, never read whole) in reading order. Raises
    `DocumentError` with a sentence before or while reading: locked (encrypted) PDF, a scan with
    no text layer, a binary file, a damaged DOCX/zip, an unreadable file. `KINDS`: the file
    suffixes it reads.

chunk (passages)
    `passages(sections, *, target_chars=CHUNK_CHARS) -> Iterator[Draft]`: about a paragraph each
    (never across a page), with the page or heading of where it starts.

index (the database: `documents.db` in the data folder, opened with apsw so sqlite-vec can load)
    `DocumentIndex(path)`; `collections()`, `add(paths, collection)`, `remove(collection)`,
    `files(collection)`, `search(query, *, collections=None, limit=8, vector=None) -> Results`,
    `whole_text(path)`. Per-file state (waiting, indexing, done, failed with its reason, skipped)
    is what makes indexing resumable after a kill.

indexer (background work)
    `Indexer(index, embedder=None)`; `await run(collection=None, progress=callback)` indexes
    what is waiting or changed (size or mtime), one file at a time, each file's passages
    committed with its state, so a kill loses at most the file being read.

embedder (vectors)
    `Embedder(services, model)` on an installed embedding model, in an engine child in
    llama.cpp's embedding mode (engine.Engine(embedding=True), its /hearth/v1/embeddings route);
    `await embed(texts) -> list[list[float]]` (unit vectors), `model_id`, `dimensions`;
    `find_embedder(services) -> Embedder | None` (None: search is BM25 alone and says so).

context (into the chat)
    `plan(...)`: whole documents when they fit the context with room for the answer, else
    retrieved passages; the prompt block with numbered sources; the Sources of an answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop.core.errors import HearthError

DEFAULT_COLLECTION = "default"
CHUNK_CHARS = 1200  # about a paragraph or two: what a passage aims at, in characters
# A collection whose name starts with this is a chat's own (its attached files that do not fit
# whole, ".chat-<id>"): searched only when named, never listed with the user's collections.
HIDDEN_PREFIX = "."


class DocumentError(HearthError):
    """A file cannot be read; the message is a sentence for the user ("The PDF is locked with a
    password", "No text found; it may be a scanned image"…). Other files go on."""


@dataclass(frozen=True)
class Section:
    """A piece of a document in reading order: its text, the page it is on (PDF, from 1; None
    for files without pages) and the heading it is under ("" when none)."""

    text: str
    page: int | None = None
    heading: str = ""


@dataclass(frozen=True)
class Draft:
    """A passage before it is indexed: its text, the page (or None) and heading where it starts,
    and its place in the file (0, 1, 2…)."""

    text: str
    page: int | None
    heading: str
    ordinal: int


@dataclass(frozen=True)
class Passage:
    """A passage found by a search: `id` (its row in the index), the file's `path` and `name`,
    its `page` (or None) and `heading`, `text`, `score` (higher is better; the fused rank score
    for hybrid search, BM25's for keywords alone), and the `collection` it is in."""

    id: int
    path: str
    name: str
    page: int | None
    heading: str
    text: str
    score: float
    collection: str

    def where(self) -> str:
        """"report.pdf, page 3" / "notes.md, Setup" / "notes.txt": how a source is named."""
        if self.page is not None:
            return f"{self.name}, page {self.page}"
        return f"{self.name}, {self.heading}" if self.heading else self.name


@dataclass(frozen=True)
class Results:
    """What a search found, best first, and how: `mode` is "hybrid" (keywords and vectors, fused
    by rank) or "keywords" (BM25 alone: no embedding model, or the collection has no vectors);
    `note` is the sentence to show when search was less than it could be ("" otherwise)."""

    passages: tuple[Passage, ...]
    mode: str
    note: str = ""
