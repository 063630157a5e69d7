"""Cutting a document's Sections into passages of about a paragraph (Drafts) for the index: at
paragraph ends, small paragraphs merged, long ones cut at sentence ends, never across a page."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from desktop.core.docs import CHUNK_CHARS, Draft, Section

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v\xa0]*\n\s*")
_INNER_SPACE = re.compile(r"(?<=\S)[ \t\f\v\xa0\u2000-\u200a\u202f\u205f\u3000]+")
# The end of a sentence: . ! ? … (and the CJK full stops, which need no space after them), then
# closing quotes or brackets, then white space (or, after a CJK stop, anything).
_SENTENCE_END = re.compile(r"(?:[.!?…][\"'”’»)\]]*(?=\s)|[。！？][」』）]*)\s*")


def passages(sections: Iterable[Section], *, target_chars: int = CHUNK_CHARS) -> Iterator[Draft]:
    """Drafts of about `target_chars` characters from `sections` (in reading order), numbered
    from 0 in `ordinal`, each with the page and heading of the Section it starts in.

    Paragraphs (separated by a blank line) are merged while the passage stays within
    `target_chars`; a passage never spans two pages or two headings (a change of either starts a
    new one). A paragraph longer than twice `target_chars` is cut into pieces of at most
    `target_chars`: at the last sentence end that leaves at least a third of the target, else at a
    line break, else at a space, else (a run without spaces: a hash, a base64 blob) exactly at the
    target. Consecutive Sections with the same page and heading (a text file read in pieces) are
    one run: their boundary is a paragraph break.

    The text of a passage is the document's own, with white space normalised: line ends
    stripped, runs of spaces and tabs inside a line made one space (leading indentation kept),
    paragraphs in one passage separated by one blank line. So a sentence of a passage can be
    found in the document as the user sees it.
    """
    if target_chars < 1:
        raise ValueError("target_chars must be at least 1")
    ordinal = 0
    key: tuple[int | None, str] | None = None
    parts: list[str] = []
    size = 0
    for section in sections:
        if (section.page, section.heading) != key:
            if parts:
                yield Draft("\n\n".join(parts), key[0], key[1], ordinal)
                ordinal += 1
                parts, size = [], 0
            key = (section.page, section.heading)
        for paragraph in _paragraphs(section.text):
            pieces = [paragraph] if len(paragraph) <= 2 * target_chars else _cut(paragraph, target_chars)
            for piece in pieces:
                if parts and size + 2 + len(piece) > target_chars:
                    yield Draft("\n\n".join(parts), key[0], key[1], ordinal)
                    ordinal += 1
                    parts, size = [], 0
                parts.append(piece)
                size += len(piece) + (2 if size else 0)
    if parts:
        yield Draft("\n\n".join(parts), key[0], key[1], ordinal)


def _paragraphs(text: str) -> Iterator[str]:
    """The paragraphs of a Section's text, white space normalised, empty ones left out."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for block in _PARAGRAPH_BREAK.split(text):
        lines = [_INNER_SPACE.sub(" ", line).rstrip() for line in block.split("\n")]
        paragraph = "\n".join(line for line in lines if line.strip())
        if paragraph:
            yield paragraph


def _cut(paragraph: str, target: int) -> list[str]:
    """A long paragraph cut into pieces of at most `target` characters, preferring sentence ends,
    then line breaks, then spaces; a run without any of them is cut at `target` exactly."""
    ends = [m.end() for m in _SENTENCE_END.finditer(paragraph)]
    pieces = []
    start, i = 0, 0
    n = len(paragraph)
    while n - start > target:
        limit = start + target
        floor = start + max(1, target // 3)
        while i < len(ends) and ends[i] <= start:
            i += 1
        cut = -1
        j = i
        while j < len(ends) and ends[j] <= limit:
            j += 1
        if j > i and ends[j - 1] >= floor:
            cut = ends[j - 1]
        if cut < 0:
            line = paragraph.rfind("\n", floor, limit)
            if line >= 0:
                cut = line + 1
        if cut < 0:
            space = paragraph.rfind(" ", floor, limit)
            if space >= 0:
                cut = space + 1
        if cut < 0:
            cut = limit
        piece = paragraph[start:cut].strip()
        if piece:
            pieces.append(piece)
        start = cut
    rest = paragraph[start:].strip()
    if rest:
        pieces.append(rest)
    return pieces
