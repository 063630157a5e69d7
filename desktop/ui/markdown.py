"""Markdown from a model, as the limited HTML that Qt's rich-text labels draw.

Raw HTML in the model's text is escaped, never interpreted. Fenced code blocks become shaded,
monospaced boxes that wrap instead of widening the window.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

import mistune

MONO = "'JetBrains Mono', 'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace"
_LONG_RUN = re.compile(r"(\S{24})(?=\S)")


def breakable(text: str) -> str:
    """Let very long words and URLs wrap: Qt only breaks lines at spaces, so a zero-width space
    goes into every run of 24 characters without one. For drawing only; copies take the raw text."""
    return _LONG_RUN.sub("\\1\u200b", text)


class _QtRenderer(mistune.HTMLRenderer):
    def __init__(self, code_bg: str, muted: str) -> None:
        super().__init__(escape=True)
        self.code_bg = code_bg
        self.muted = muted

    def text(self, text: str) -> str:
        return html.escape(breakable(text), quote=False)

    def block_code(self, code: str, info: str | None = None) -> str:
        lang = (info or "").split()[0] if info else ""
        label = (f'<div style="color:{self.muted}; font-size:8pt; margin-bottom:4px;">'
                 f"{html.escape(lang)}</div>") if lang else ""
        body = html.escape(breakable(code.rstrip("\n")))
        return (f'<table width="100%" cellspacing="0" cellpadding="10" style="margin: 6px 0;" '
                f'bgcolor="{self.code_bg}"><tr><td>{label}'
                f'<pre style="font-family:{MONO}; white-space: pre-wrap; margin:0;">{body}</pre>'
                "</td></tr></table>")

    def codespan(self, text: str) -> str:
        return (f'<code style="font-family:{MONO}; background-color:{self.code_bg};">'
                f"&nbsp;{html.escape(breakable(text))}&nbsp;</code>")


@lru_cache(maxsize=4)
def _parser(code_bg: str, muted: str) -> mistune.Markdown:
    return mistune.create_markdown(renderer=_QtRenderer(code_bg, muted),
                                   plugins=["strikethrough", "table", "url"])


def to_html(text: str, *, code_bg: str = "#f2f1f4", muted: str = "#6e6e76") -> str:
    return str(_parser(code_bg, muted)(text))


_FENCE = re.compile(r" {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"(\d{1,9}[.)]|[-*+])[ \t]")


class LiveMarkdown:
    """Renders an answer that grows, re-parsing only its end.

    The text is cut into pieces that render the same apart as together: at a line that starts
    a new block after a blank line, and between the items of a tight list (whose pieces are
    joined back into one list). Finished pieces keep their HTML, so each new word costs the
    parse of the last piece instead of the whole answer (a 190-item list: 5 ms → 0.3 ms).
    A finished message is rendered whole with `to_html`, which has the last word on edge
    cases (a loose list, a reference link defined further down)."""

    def __init__(self, *, code_bg: str, muted: str) -> None:
        self.code_bg, self.muted = code_bg, muted
        self._cache: dict[str, str] = {}

    def render(self, text: str) -> str:
        out: list[str] = []
        cache: dict[str, str] = {}
        for piece, joins_list in _pieces(text):
            html = self._cache.get(piece)
            if html is None:
                html = to_html(piece, code_bg=self.code_bg, muted=self.muted)
            cache[piece] = html
            if joins_list and out:
                kind = html[:3]  # "<ol" or "<ul": the previous piece ends with the same list
                closing = f"</{kind[1:]}>\n"
                if kind in ("<ol", "<ul") and out[-1].endswith(closing):
                    out[-1] = out[-1][: -len(closing)]
                    html = html.split("\n", 1)[1]
            out.append(html)
        self._cache = cache  # only the pieces of this text: memory stays the size of one answer
        return "".join(out)


def _pieces(text: str) -> list[tuple[str, bool]]:
    """(piece, whether it continues the list the previous piece ended with)."""
    pieces: list[tuple[str, bool]] = []
    start, joins = 0, False
    fenced = False
    kind = ""  # the list marker ("." / ")" numbered, "-" / "*" / "+") of a piece that is a tight list so far
    previous_blank = False
    at = 0
    for line in text.splitlines(keepends=True):
        blank = not line.strip()
        item = None if fenced else _LIST_ITEM.match(line)
        item_kind = item.group(1)[-1] if item else ""  # "." or ")" after a number, or the bullet
        cut = continues = False
        if at > start and not fenced:
            if previous_blank and not line[:1].isspace() and not blank and not item:
                cut = True
            elif item and kind and item_kind == kind and not previous_blank:
                cut = continues = True
        if cut:
            pieces.append((text[start:at], joins))
            start, joins = at, continues
            kind = item_kind if item else ""
        elif at == start:
            kind = item_kind
        elif item_kind != kind and not line[:1].isspace() and not (line[:1].isalnum() and not item):
            kind = ""  # another list, a heading, a quote...: the list may have ended, parse whole
        if blank:
            kind = ""  # a blank line inside: a loose list, parsed whole
        if _FENCE.match(line):
            fenced = not fenced
            kind = ""
        previous_blank = blank
        at += len(line)
    if at > start:
        pieces.append((text[start:at], joins))
    return pieces
