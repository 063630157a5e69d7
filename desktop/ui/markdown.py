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
