"""Text from outside Hearth (a model's name, a hub file name, a model's answer) made safe to show:
on one line in a table or a sentence, or in a terminal."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # every control character but tab and newline


def shown(text: str) -> str:
    """Text from outside (a model's name) as one line a table can hold: every character that is not
    printable (newline, tab, ANSI escape, right-to-left override) is written as its escape, `\\n`."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def printable(text: str) -> str:
    """A model's words as a terminal may show them: lines and tabs kept, but no escape sequences
    (which could clear the screen, retitle the window or hide text) and no other control characters."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))
