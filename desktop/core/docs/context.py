"""Documents into the chat (issue 18): for a question in a conversation with files or collections,
either the whole files (when they fit the context with room for the answer) or the passages a
search finds, as one system block of numbered sources; the Sources saved with the answer; and
which of them the answer cites.

The chat (desktop/core/chat.py) calls `plan` with its own token counter and budget, so documents
are fitted with the same numbers that fit the conversation into the model's context.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop.core.docs import CHUNK_CHARS, HIDDEN_PREFIX, DocumentError, Passage
from desktop.core.errors import HearthError

INSTRUCTION = ("Answer from the numbered sources below when they hold the answer, and cite them like [1]. "
               "If they do not, say that the documents do not say.")
NOTHING_FOUND_PROMPT = "No passage in the user's documents matches this question."
NOTHING_FOUND_NOTICE = "Nothing in your documents matched; the answer does not come from them."
NOTHING_FITS_NOTICE = ("The passages found do not fit in this model's context with your message, so the answer does "
                       "not come from your documents. Raise the context length in Settings, or shorten the message.")
# Passages asked of the index; those that fit the budget go in, best first. Each is a prompt the
# model must read before its first word (8 of them took SmolLM2 ~35 s more on two busy cores than
# one did): five, as recall@5 is what the retrieval benchmark measures.
SEARCH_LIMIT = 5
PASSAGE_SHARE = 0.75  # of the room left after the system prompt and the question: the rest keeps recent turns
CHARS_PER_TOKEN_FLOOR = 2  # no tokenizer makes tokens shorter than this on prose: a cheap "too big" test
SOURCE_TEXT_CHARS = CHUNK_CHARS  # how much of a whole file an answer's Sources keep (for the hover)

# A conversation's own files that do not fit whole are indexed into a collection of their own,
# hidden from `hearth docs list` and the Documents page (its name starts with HIDDEN_PREFIX).


def chat_collection(conversation_id: int) -> str:
    """The hidden collection of a conversation's attached files: ".chat-<id>"."""
    return f"{HIDDEN_PREFIX}chat-{conversation_id}"


def is_hidden(collection: str) -> bool:
    """A conversation's own collection, not one the user made: never listed."""
    return collection.startswith(HIDDEN_PREFIX)


def conversation_of(collection: str) -> int | None:
    """The conversation whose own collection this is (".chat-12": 12), else None."""
    match = re.fullmatch(re.escape(HIDDEN_PREFIX) + r"chat-(\d+)", collection)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class ConversationDocuments:
    """What a conversation uses: attached `files` (absolute paths) and `collections` (names), in
    the order they were added."""

    files: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.files or self.collections)


@dataclass(frozen=True)
class Source:
    """One numbered source given to the model: `n` (from 1, as in the prompt), the file's `path`
    and `name`, its `page` (PDF, or None) and `heading` ("" when none), the `text` given (for a
    whole file: the first SOURCE_TEXT_CHARS of it, `whole` True)."""

    n: int
    path: str
    name: str
    page: int | None
    heading: str
    text: str
    whole: bool = False

    def where(self) -> str:
        """"report.pdf, page 3" / "notes.md, Setup" / "notes.txt": how the source is named."""
        if self.page is not None:
            return f"{self.name}, page {self.page}"
        return f"{self.name}, {self.heading}" if self.heading else self.name

    def as_dict(self) -> dict[str, Any]:
        """The shape saved in Message.sources."""
        data = {"n": self.n, "path": self.path, "name": self.name, "page": self.page,
                "heading": self.heading, "text": self.text}
        if self.whole:
            data["whole"] = True
        return data


def where(source: dict[str, Any]) -> str:
    """How a saved source (Message.sources item) is named: "report.pdf, page 3"."""
    return Source(n=source.get("n", 0), path=source.get("path", ""), name=source.get("name", ""),
                  page=source.get("page"), heading=source.get("heading", ""), text="").where()


@dataclass
class Plan:
    """What goes into the prompt for one question: `block` (the system block of numbered sources,
    or the nothing-found sentence; "" without documents), the `sources` it numbers, the `notices`
    to show the user once, `whole` True when the files went in whole, and `tokens` the block's
    size as counted."""

    block: str = ""
    sources: list[Source] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    whole: bool = False
    tokens: int = 0


def source_text(n: int, heading_line: str, text: str) -> str:
    return f"[{n}] {heading_line}:\n{text.strip()}"


def block_of(sources: Sequence[Source], whole_texts: dict[int, str] | None = None) -> str:
    """The system block: the instruction, then each source as "[1] report.pdf, page 3:\\n<text>";
    a whole file is "[1] report.txt (the whole document):\\n<its text>". With no sources, the
    instruction and the nothing-found sentence."""
    if not sources:
        return f"{INSTRUCTION}\n\n{NOTHING_FOUND_PROMPT}"
    parts = [INSTRUCTION]
    for s in sources:
        if s.whole:
            parts.append(source_text(s.n, f"{s.name} (the whole document)", (whole_texts or {}).get(s.n, s.text)))
        else:
            parts.append(source_text(s.n, s.where(), s.text))
    return "\n\n".join(parts)


_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def cited(answer_text: str, sources: Sequence[dict[str, Any]] | Sequence[Source]) -> list[int]:
    """The source numbers an answer cites ("[1]", "[2, 3]"), in order of first citation, only
    those among `sources` (a number the model made up is left out)."""
    known = {s.n if isinstance(s, Source) else s.get("n") for s in sources}
    found: list[int] = []
    for match in _CITATION.finditer(answer_text or ""):
        for number in match.group(1).split(","):
            n = int(number)
            if n in known and n not in found:
                found.append(n)
    return found


def read_whole(path: str, max_chars: int) -> str | None:
    """A file's text as extract reads it (its pieces keep their own line breaks, so they are
    joined as they are; a PDF's pages start with "(page N)"), or None as soon as it passes
    `max_chars` (it will not fit: never read further). Raises DocumentError (from extract) when
    the file cannot be read."""
    from desktop.core.docs import extract

    parts: list[str] = []
    size = 0
    page: int | None = None
    for section in extract.sections(path):
        text = section.text
        if section.page is not None and section.page != page:
            page = section.page
            text = f"{chr(10) * 2 if parts else ''}(page {page})\n{text.strip()}"
        size += len(text)
        if size > max_chars:
            return None
        parts.append(text)
    return "".join(parts).strip()


def _name(path: str) -> str:
    return os.path.basename(path)


async def plan(question: str, documents: ConversationDocuments, *, room: int,
               count: Callable[[str], Awaitable[int]], index_of: Callable[[], Any] | None = None,
               embedder: Any = None, conversation_id: int = 0) -> Plan:
    """The documents' part of the prompt for `question`.

    `room`: tokens the block may take (the context less the answer's room, the system prompt and
    the question, as the chat counts them); `count(text)`: tokens of a text as the chat counts
    them (the model's tokenizer; an estimate for a cloud model). Attached files all go in whole
    when they fit in `room`; else they are indexed into the conversation's hidden collection
    (`chat_collection`) and searched with the collections. Passages go in best first while they
    fit PASSAGE_SHARE of `room`. `index_of()` opens the DocumentIndex (needed only to search);
    `embedder` (an Embedder or None) makes the query's vector for hybrid search.

    A file that can no longer be read is left out with a notice; a collection that is gone
    raises DocumentError from the index."""
    result = Plan()
    found = False
    whole_texts: dict[int, str] = {}
    to_search: list[str] = list(documents.collections)
    if documents.files:
        readable: list[tuple[str, str]] = []
        too_big = False
        budget_chars = max(0, room) * 8  # a generous ceiling: no tokenizer packs 8 chars a token on average
        for path in documents.files:
            try:
                text = read_whole(path, budget_chars)
            except DocumentError as exc:
                result.notices.append(f"“{_name(path)}” is left out: {exc}")
                continue
            if text is None:
                too_big = True
                break
            budget_chars -= len(text)
            readable.append((path, text))
        counts = [] if too_big else [await count(text) for _, text in readable]
        if readable and not too_big and sum(counts) <= room:
            for (path, text), tokens in zip(readable, counts, strict=True):
                n = len(result.sources) + 1
                result.sources.append(Source(n=n, path=path, name=_name(path), page=None, heading="",
                                             text=text[:SOURCE_TEXT_CHARS], whole=True))
                whole_texts[n] = text
                result.notices.append(f"“{_name(path)}” goes in whole ({tokens:,} tokens).")
            room -= sum(counts)
            result.whole = True
        elif readable or too_big:
            to_search.insert(0, await _index_files(index_of, embedder, conversation_id, documents.files))
    if to_search:
        index = index_of() if index_of is not None else None
        if index is None:
            raise DocumentError("The documents index cannot be opened, so your documents cannot be searched.")
        vector = None
        if embedder is not None:  # a query may take a prefix of its own (nomic's "search_query: ")
            query = getattr(embedder, "embed_query", None)
            try:
                vector = await query(question) if query is not None else (await embedder.embed([question]))[0]
            except HearthError as exc:  # the embedding model failed: keywords still find passages
                result.notices.append(f"Keywords only: the embedding model could not run ({exc}).")
                embedder = None
        results = index.search(question, collections=to_search, limit=SEARCH_LIMIT, vector=vector,
                               **({"model": embedder.model_id} if embedder is not None else {}))
        if results.note:
            result.notices.append(results.note)
        share = int(room * PASSAGE_SHARE) if not result.whole else room
        used = 0
        found = bool(results.passages)
        for passage in results.passages:
            n = len(result.sources) + 1
            source = _from_passage(passage, n)
            tokens = await count(source_text(n, source.where(), source.text))
            if used + tokens > share:
                continue  # a shorter one further down may still fit
            used += tokens
            result.sources.append(source)
    if not result.sources:
        result.notices.append(NOTHING_FITS_NOTICE if to_search and found else NOTHING_FOUND_NOTICE)
    result.block = block_of(result.sources, whole_texts)
    result.tokens = await count(result.block)
    return result


def _from_passage(passage: Passage, n: int) -> Source:
    return Source(n=n, path=passage.path, name=passage.name, page=passage.page, heading=passage.heading,
                  text=passage.text)


async def _index_files(index_of: Callable[[], Any] | None, embedder: Any, conversation_id: int,
                       files: Sequence[str]) -> str:
    """Index a conversation's files into its hidden collection (what is new or changed only) and
    return the collection's name."""
    from desktop.core.docs.indexer import Indexer

    index = index_of() if index_of is not None else None
    if index is None:
        raise DocumentError("The documents index cannot be opened, so your files cannot be searched.")
    name = chat_collection(conversation_id)
    attached = {str(Path(f)) for f in files}
    for entry in index.files(name):  # a file detached since: its passages are no longer searched
        if entry.path not in attached:
            index.drop_file(entry.id)
    index.add([Path(f) for f in files], name)
    await Indexer(index, embedder).run(collection=name)
    return name
