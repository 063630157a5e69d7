"""Markdown from a model, as the limited HTML that Qt's rich-text widgets draw.

A model's text is untrusted input, like a web page from a stranger, so the HTML made here can
never make Qt read a file, fetch from the network or start a program:

- raw HTML in the text is escaped and shown as written, never interpreted;
- Markdown images become a chip that says an image was referenced, with its address on hover;
  no `<img>` is ever written, so nothing is loaded;
- only http(s) and mailto links are links (`is_live_link`); any other target (a local path,
  `file:`, a relative link, `javascript:`, `data:`…) is shown as plain text beside the link text.

And it shows the text as written: entities follow CommonMark (`&lt;` is "<", an unknown `&foo;`
stays as typed), and math in `\\( \\)`, `\\[ \\]`, `$$ $$` and `$ $` is typeset (`math_render`:
pictures made in memory by this renderer, the only images an answer ever shows); a formula
that cannot be typeset keeps every backslash and line break, in a math style. Fenced code
blocks become shaded, monospaced boxes coloured by pygments, in a light or a dark style chosen
from the code background.

Nor can the text's characters or shape deceive or hide (`drawn_text`, `cap_nesting`): the
bidirectional embeddings and overrides (U+202A–U+202E) that reorder what is shown ("abc",
RLO, "evil.exe", PDF, ".txt" reads "abcexe.live.txt") are taken out, piles of combining marks
are cut to MAX_MARKS per letter, and quotes and lists nested deeper than MAX_NESTING are drawn
at the deepest level, every item kept in order. Formulas are drawn in the theme's text colour only
(`math_render.plain_ink`).

`split_blocks` cuts an answer into prose, fenced code and tables, so the chat can draw each in
a widget of its own (`answer_view.py`): code and tables scroll sideways there.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote, urlsplit

import mistune
from mistune.util import striptags
from mistune.util import unescape as unescape_entities
from pygments.lexers import get_lexer_by_name
from pygments.styles import get_style_by_name
from pygments.token import _TokenType
from pygments.util import ClassNotFound

from desktop.ui.math_render import html_img, text_colour

MONO = "'JetBrains Mono', 'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace"
# Text serifs, not the math fonts: those carry huge line heights that would open gaps in a line.
MATH = "'Cambria', 'STIX Two Text', 'Latin Modern Roman', 'DejaVu Serif', 'Georgia', 'Times New Roman', serif"
LIVE_SCHEMES = ("http", "https", "mailto")
IMAGE_HREF = "hearth-image:"  # the href of an image chip: never opened, it only carries the address
_LONG_RUN = re.compile(r"(\S{24})(?=\S)")
_INVISIBLE = str.maketrans({"\u200b": None, "\u2029": "\n", "\u2028": "\n", "\u00a0": " "})


# -- characters that deceive -------------------------------------------------------------------
# Unicode's bidirectional algorithm (UAX #9, 2.2) lets embeddings and overrides reorder the text
# around them: "abc<RLO>evil.exe<PDF>.txt" shows as "abcexe.live.txt" (the "Trojan Source"
# attack, Boucher and Anderson 2021, CVE-2021-42574). They are removed from whatever an answer
# draws. The isolates (U+2066–U+2069) and the marks LRM, RLM, ALM (U+200E, U+200F, U+061C) stay:
# right-to-left text needs them, and they cannot make left-to-right letters run backwards.
EMBEDDINGS = re.compile("[\u202a-\u202e]")  # LRE, RLE, PDF, LRO, RLO
# Combining marks on one letter: Vietnamese stacks 2 (ệ = e + U+0323 + U+0302), Devanagari and
# Tibetan 3 (क़िं, སྒྲུ), pointed Hebrew 3–4 (שִׁ֖ + meteg); "Zalgo" text stacks a hundred, drawn
# over the lines above and below. Past MAX_MARKS the rest of a pile is dropped (zero-width
# joiners and spaces between marks do not start a new pile: marks after them stack the same).
MAX_MARKS = 4
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_MARKS = ("Mn", "Me")


@lru_cache(maxsize=1)
def _maybe_piles() -> re.Pattern[str]:
    """Runs of more than MAX_MARKS characters that may be a pile: non-spacing and enclosing
    marks of the Basic Multilingual Plane (Unicode categories Mn, Me, from Python's own tables),
    zero-width characters and any character beyond U+FFFF (checked one by one in `_cut_pile`:
    a class of the few marks up there would make the search 25 times slower). Built on first
    use (~5 ms, once)."""
    marks = [i for i in range(0x300, 0x10000) if unicodedata.category(chr(i)) in _MARKS]
    ranges, start = [], marks[0]
    for previous, here in zip(marks, marks[1:] + [-1], strict=True):
        if here != previous + 1:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(previous))}" if previous > start
                          else re.escape(chr(start)))
            start = here
    return re.compile(f"[{''.join(ranges)}{_ZERO_WIDTH}\U00010000-\U0010ffff]{{{MAX_MARKS + 1},}}")


def _cut_pile(run: re.Match[str]) -> str:
    """A run found by `_maybe_piles` with at most MAX_MARKS marks after each base character."""
    kept, out = 0, []
    for char in run.group():
        if unicodedata.category(char) in _MARKS:
            if kept < MAX_MARKS:
                out.append(char)
            kept += 1
        elif char in _ZERO_WIDTH:
            if kept < MAX_MARKS:
                out.append(char)
        else:  # a letter or emoji beyond U+FFFF: a new base
            out.append(char)
            kept = 0
    return "".join(out)


def drawn_text(text: str) -> str:
    """A model's text as Hearth draws it (and as its drawing is copied): without the bidi
    embeddings and overrides U+202A–U+202E, and with at most MAX_MARKS combining marks on any
    one character. Everything else, right-to-left text and its isolates and marks included, is
    left as it is. Costs under a millisecond per 100,000 characters of ordinary text (nothing
    for ASCII), ~8 ms for 100,000 characters made of piles."""
    if text.isascii():
        return text
    if EMBEDDINGS.search(text):
        text = EMBEDDINGS.sub("", text)
    return _maybe_piles().sub(_cut_pile, text)


# -- nesting ------------------------------------------------------------------------------------
# Qt's rich text indents each list level by 40 px and each quote by 40 px on both sides: a
# 12-deep list leaves a word no room in an 800 px window, and 30 quotes leave none at all. Past
# MAX_NESTING levels (a quote counting as two, for its two margins) a quote or list is drawn at
# the deepest level: a quote's text joins the quote around it; a list's items follow the item
# they belong to, each on a line of its own with its own bullet or number. A narrow column (a
# Compare column) draws fewer levels (`nesting_for_width`).
MAX_NESTING = 6
INDENT_PX = 40  # QTextDocument's indentWidth, and a blockquote's margin on each side
NESTED_TEXT_PX = 200  # the width kept for the text of the deepest item
_NESTING = re.compile(r"<(/?)(blockquote|ul|ol|li)\b([^>]*)>\n?")  # with the line break after it
_START = re.compile(r'start="(\d+)"')
_CONTAINER = re.compile(r"<(/?)(blockquote|ul|ol)\b")


def _deepest(rich: str) -> int:
    """The most levels of quotes and lists (a quote counting two) anything in `rich` is in."""
    depth = deepest = 0
    for closing, name in _CONTAINER.findall(rich):
        depth += (-1 if closing else 1) * (2 if name == "blockquote" else 1)
        deepest = max(deepest, depth)
    return deepest


def nesting_for_width(width: int) -> int:
    """How many levels of quotes and lists (a quote counting two) a column `width` px wide
    draws: as many as leave NESTED_TEXT_PX px for the text, from 2 (one quote, or a list in a
    list: a quote is never drawn as the answer's own words) to MAX_NESTING."""
    return max(2, min(MAX_NESTING, (width - NESTED_TEXT_PX) // INDENT_PX))


def cap_nesting(rich: str, levels: int = MAX_NESTING) -> str:
    """`rich` (HTML made by `to_html`'s renderer) with quotes and lists nested past `levels`
    levels (a quote counting two) flattened into the deepest one allowed, their content kept,
    in order. HTML the renderer made only: a model's own tags are escaped before this runs.
    Capping again with fewer levels gives what capping once with those would, in order."""
    if rich.count("<blockquote>") * 2 + rich.count("<ul>") + rich.count("<ol") <= levels or _deepest(rich) <= levels:
        return rich  # not too deep (the usual case)
    out: list[str] = []
    depth = 0
    stack: list[list] = []  # [tag, levels it costs, drawn, items so far, first number]
    at = 0
    for tag in _NESTING.finditer(rich):
        out.append(rich[at:tag.start()])
        at = tag.end()
        closing, name = tag.group(1) == "/", tag.group(2)
        if name == "li":
            holder = stack[-1] if stack else None
            if holder is None or holder[2]:
                out.append(tag.group())
            elif not closing:
                holder[3] += 1
                marker = f"{holder[4] + holder[3] - 1}." if holder[0] == "ol" else "\u2022"
                out[-1] = out[-1].rstrip()  # the line break of the source: a space before <br>
                out.append(f"<br>{marker}&nbsp;")
            continue
        if closing:
            if stack and stack[-1][0] == name:
                _, cost, drawn, *_ = stack.pop()
                if drawn:
                    depth -= cost
                    out.append(tag.group())
            continue
        cost = 2 if name == "blockquote" else 1
        drawn = depth + cost <= levels and (not stack or stack[-1][2])
        start = _START.search(tag.group(3)) if name == "ol" else None
        stack.append([name, cost, drawn, 0, int(start.group(1)) if start else 1])
        if drawn:
            depth += cost
            out.append(tag.group())
    out.append(rich[at:])
    return "".join(out)


def breakable(text: str) -> str:
    """Let very long words and URLs wrap: Qt only breaks lines at spaces, so a zero-width space
    goes into every run of 24 characters without one. For drawing only: copies take the raw
    text, or go through `plain_copy`."""
    return _LONG_RUN.sub("\\1\u200b", text)


def plain_copy(text: str) -> str:
    """Text selected in a drawn answer as the reader means it: without the zero-width spaces
    of `breakable`, with Qt's paragraph and line separators (U+2029, U+2028) as newlines and
    no-break spaces as spaces."""
    return text.translate(_INVISIBLE)


def is_live_link(url: str) -> bool:
    """Whether an answer's link may become a clickable link: http(s) to a host, or mailto to an
    address. Everything else (paths, `file:`, relative links, other schemes) is shown as text."""
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return bool(parts.hostname)
    return scheme == "mailto" and "@" in parts.path


def image_address(href: str) -> str | None:
    """The address an image chip stands for, from the chip's href; None for any other href."""
    return unquote(href[len(IMAGE_HREF):]) if href.startswith(IMAGE_HREF) else None


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _lines(text: str) -> str:
    """Escaped text whose line breaks, and the indentation of each line after one, survive
    rich text (which folds both into single spaces)."""
    first, *rest = breakable(text).split("\n")
    out = [html.escape(first, quote=False)]
    for line in rest:
        stripped = line.lstrip(" ")
        out.append("&nbsp;" * (len(line) - len(stripped)) + html.escape(stripped, quote=False))
    return "<br>".join(out)


# -- math -------------------------------------------------------------------------------------
# A plugin rather than a pass over the text, so code spans and code blocks keep their `$` and
# `\(` (Markdown reads `\(` as an escaped bracket: the rule must run before `escape`).
# `$…$` follows Pandoc's rule, so prices stay text: the opening `$` has a non-space after it,
# the closing one a non-space before it and no digit after it ("$5 or $10" is not math).
# A backslash inside is read with the character after it (`\\[4pt]` is no opener), and a formula
# ends at the next opener, so an unclosed one costs one scan to there, not to the end.
_INLINE_MATH = (
    r"\\\((?P<im_paren>(?:[^\\]|\\[^()]){1,4000}?)\\\)"
    r"|\\\[(?P<im_bracket>(?:[^\\]|\\[^\[\]]){1,4000}?)\\\]"
    r"|\$\$(?P<im_dollars>(?:[^$]|\$(?!\$)){1,4000}?)\$\$"
    r"|\$(?![\s$])(?P<im_dollar>(?:[^$\\\n]|\\.){1,2000}?)(?<!\s)\$(?!\d)"
)
# A display formula starts a line and ends one; a blank line inside ends it (as in LaTeX).
_DISPLAY_MATH = (
    r"^ {0,3}\$\$(?P<dm_dollars>(?:[^$\n]|\$(?!\$)|\n(?![ \t]*(?:\n|$)))*?)\$\$[ \t]*(?:\n|$)"
    r"|^ {0,3}\\\[(?P<dm_bracket>(?:[^\\\n]|\\[^\[\]]|\n(?![ \t]*(?:\n|$)))*?)\\\][ \t]*(?:\n|$)"
)
_DELIMITERS = {"im_paren": ("\\(", "\\)"), "im_bracket": ("\\[", "\\]"), "im_dollars": ("$$", "$$"),
               "im_dollar": ("$", "$"), "dm_dollars": ("$$", "$$"), "dm_bracket": ("\\[", "\\]")}


def _math_token(m: re.Match[str], kind: str) -> dict:
    name = next(name for name in _DELIMITERS if name.startswith(kind) and m.group(name) is not None)
    opener, closer = _DELIMITERS[name]
    return {"type": f"{kind}_math", "raw": m.group(name), "attrs": {"opener": opener, "closer": closer}}


def _parse_inline_math(inline, m: re.Match[str], state) -> int:
    state.append_token(_math_token(m, "im"))
    return m.end()


def _parse_display_math(block, m: re.Match[str], state) -> int:
    state.append_token(_math_token(m, "dm"))
    return m.end()


def _math_plugin(md: mistune.Markdown) -> None:
    md.inline.register("im_math", _INLINE_MATH, _parse_inline_math, before="escape", start_chars=("\\", "$"))
    md.block.register("dm_math", _DISPLAY_MATH, _parse_display_math, before="list")
    for rules in (md.block.block_quote_rules, md.block.list_rules):
        md.block.insert_rule(rules, "dm_math", before="list")


# -- code colours -----------------------------------------------------------------------------
# pygments' own styles, one for each theme; only their text colours and weights are used (the
# block keeps the theme's code background). Chosen for contrast on #f2f1f4 and #2c2b33.
LIGHT_CODE_STYLE = "default"
DARK_CODE_STYLE = "github-dark"
HIGHLIGHT_LIMIT = 20_000  # characters of code coloured inside rich text; longer stays plain


def is_dark(colour: str) -> bool:
    """Whether a "#rrggbb" (or "#rgb") background is dark (relative luminance under 0.4);
    False for anything else."""
    digits = colour.lstrip("#")
    digits = "".join(c * 2 for c in digits) if len(digits) == 3 else digits
    try:
        r, g, b = (int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))
    except ValueError:
        return False
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4


def code_style_name(code_bg: str) -> str:
    """The pygments style whose colours read well on the code background `code_bg`."""
    return DARK_CODE_STYLE if is_dark(code_bg) else LIGHT_CODE_STYLE


def code_language(info: str | None) -> str:
    """The language word of a fence's info string ("python {.numberLines}" -> "python")."""
    return (info or "").split()[0] if info and info.strip() else ""


@lru_cache(maxsize=64)
def lexer_for(language: str):
    """A pygments lexer for a fence's language name or alias, or None when pygments has none
    (the code is then shown plain; the language is never guessed from the code)."""
    if not language or len(language) > 40:
        return None
    try:
        return get_lexer_by_name(language.lower(), stripnl=False, ensurenl=False, stripall=False)
    except ClassNotFound:
        return None


@lru_cache(maxsize=2048)
def token_style(style_name: str, token: _TokenType) -> tuple[str, bool, bool]:
    """(colour "#rrggbb" or "", bold, italic) of a pygments token type in a style."""
    found = get_style_by_name(style_name).style_for_token(token)
    return (f"#{found['color']}" if found.get("color") else "", bool(found.get("bold")), bool(found.get("italic")))


def highlighted_html(code: str, language: str, code_bg: str, *, wrap: bool = False) -> str | None:
    """`code` as escaped rich text with a coloured span per token (with `breakable`'s places to
    wrap when `wrap`); None when the language is unknown or the code is longer than
    HIGHLIGHT_LIMIT characters."""
    lexer = lexer_for(language)
    if lexer is None or len(code) > HIGHLIGHT_LIMIT:
        return None
    style = code_style_name(code_bg)
    out = []
    for token, value in lexer.get_tokens(code):
        colour, bold, italic = token_style(style, token)
        text = html.escape(breakable(value) if wrap else value, quote=False)
        if colour or bold or italic:
            css = (f"color:{colour};" if colour else "") + ("font-weight:600;" if bold else "") + (
                "font-style:italic;" if italic else "")
            text = f'<span style="{css}">{text}</span>'
        out.append(text)
    return "".join(out)


class _QtRenderer(mistune.HTMLRenderer):
    def __init__(self, code_bg: str, muted: str) -> None:
        super().__init__(escape=True)
        self.code_bg = code_bg
        self.muted = muted

    def text(self, text: str) -> str:
        # Entities and numeric references become their characters (CommonMark 6.2, with its
        # table of names; one without its `;` or unknown stays as written), then are escaped
        # once for the rich text, so `&lt;` reads "<" and never "&lt;".
        # Cleaned after, so an entity (`&#x202E;`) cannot bring back what `drawn_text` takes out.
        return html.escape(breakable(drawn_text(unescape_entities(text))), quote=False)

    def block_code(self, code: str, info: str | None = None) -> str:
        """A shaded box with the language above the code, coloured when pygments knows the
        language, wrapped with places to break long runs (this rich text is for views that
        cannot scroll sideways; answer_view.CodeBlock shows code blocks whole, scrolling)."""
        lang = code_language(info)
        label = (f'<div style="color:{self.muted}; font-size:8pt; margin-bottom:4px;">'
                 f"{html.escape(lang)}</div>") if lang else ""
        code = code.rstrip("\n")
        body = highlighted_html(code, lang, self.code_bg, wrap=True) or html.escape(breakable(code))
        return (f'<table width="100%" cellspacing="0" cellpadding="10" style="margin: 6px 0;" '
                f'bgcolor="{self.code_bg}"><tr><td>{label}'
                f'<pre style="font-family:{MONO}; white-space: pre-wrap; margin:0;">{body}</pre>'
                "</td></tr></table>")

    def codespan(self, text: str) -> str:
        return (f'<code style="font-family:{MONO}; background-color:{self.code_bg};">'
                f"&nbsp;{html.escape(breakable(text))}&nbsp;</code>")

    def link(self, text: str, url: str, title: str | None = None) -> str:
        """A live link shows its full target on hover (the title, and the window's tooltip);
        any other is its text followed by its target, as plain text. The model's own title is
        left out: the reader should see where a link goes, not what the model says about it."""
        # An image chip inside a link (a "badge") must not be an anchor inside an anchor.
        text = re.sub(r'<a href="hearth-image:[^"]*"', "<span", text).replace("</a>", "</span>")
        url = drawn_text(url)  # entities in the target are decoded by now; %-escapes below
        if is_live_link(url):
            return f'<a href="{_attr(url)}" title="{_attr(url)}">{text}</a>'
        target = drawn_text(unquote(url))
        shown = html.unescape(striptags(text)).replace("\u200b", "")
        if not target or shown.strip() == target:
            return text
        return f'{text}<span style="color:{self.muted};"> ({html.escape(breakable(target), quote=False)})</span>'

    def image(self, text: str, url: str, title: str | None = None) -> str:
        """A chip in place of the picture, which is never loaded: a local path could be a device
        that never ends (/dev/zero) or a private file, and a web address tells a server that the
        answer was read. Its address shows on hover."""
        alt = striptags(text).strip() or "image"
        address = drawn_text(unquote(url))
        tip = f"Image not loaded: {address}" if address else "Image not loaded"
        return (f'<a href="{IMAGE_HREF}{quote(address, safe="")}" title="{_attr(tip)}" '
                f'style="text-decoration:none; color:{self.muted}; background-color:{self.code_bg};">'
                f"&nbsp;Image:&nbsp;{alt}&nbsp;</a>")

    def im_math(self, text: str, opener: str, closer: str) -> str:
        """A formula in the text: typeset (an image made by `math_render`, on the text's
        baseline), or where it cannot be, as written with its delimiters in a math style."""
        typeset = html_img(text, display=False, colour=text_colour(self.muted), written=f"{opener}{text}{closer}")
        if typeset is not None:
            return typeset
        return (f'<span style="font-family:{MATH};"><span style="color:{self.muted};">{html.escape(opener)}</span>'
                f"{_lines(text)}<span style=\"color:{self.muted};\">{html.escape(closer)}</span></span>")

    def dm_math(self, text: str, opener: str, closer: str) -> str:
        """A display formula on its own, centred: typeset, or its lines as written."""
        typeset = html_img(text, display=True, colour=text_colour(self.muted), written=f"{opener}{text}{closer}")
        if typeset is not None:
            return f'<p align="center" style="margin: 8px 0;">{typeset}</p>\n'
        return (f'<table align="center" cellspacing="0" cellpadding="2" style="margin: 6px 0;"><tr>'
                f'<td style="font-family:{MATH};"><span style="color:{self.muted};">{html.escape(opener)}</span>'
                f'{_lines(text)}<span style="color:{self.muted};">{html.escape(closer)}</span></td></tr></table>\n')


# Quotes and lists mistune reads as such (its default, 20, leaves the items of a deeper list run
# together as one paragraph); deeper ones are text. Drawn at most MAX_NESTING deep all the same.
PARSED_NESTING = 64


@lru_cache(maxsize=8)
def _parser(code_bg: str, muted: str) -> mistune.Markdown:
    md = mistune.create_markdown(renderer=_QtRenderer(code_bg, muted),
                                 plugins=["strikethrough", "table", "url", _math_plugin])
    md.block.max_nested_level = PARSED_NESTING
    return md


def to_html(text: str, *, code_bg: str = "#f2f1f4", muted: str = "#6e6e76") -> str:
    """The rich text for a model's Markdown `text`, in the colours given (the theme's): its
    characters as `drawn_text` leaves them, its quotes and lists at most MAX_NESTING deep."""
    rich = cap_nesting(str(_parser(code_bg, muted)(drawn_text(text))))
    if "<table>\n<thead>" in rich:  # a Markdown table: padded cells under a shaded heading row
        rich = rich.replace("<table>\n<thead>\n<tr>", f'<table cellspacing="0" cellpadding="5" style="margin: 6px 0;">'
                            f'\n<thead>\n<tr bgcolor="{code_bg}">')
    return rich


_FENCE = re.compile(r" {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"(\d{1,9}[.)]|[-*+])(?:[ \t]|$)")  # "-" alone is an empty item
_MATH_OPEN = re.compile(r" {0,3}(\$\$|\\\[)")


class LiveMarkdown:
    """Renders an answer that grows, re-parsing only its end.

    The text is cut into pieces that render the same apart as together: at a line that starts
    a new block after a blank line, and between the items of a tight list (whose pieces are
    joined back into one list); never inside a code block or a display formula. Finished pieces keep their HTML, so each new word costs the
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
    math_closer = ""  # while a display formula may be open: the delimiter that would end it
    kind = ""  # the list marker ("." / ")" numbered, "-" / "*" / "+") of a piece that is a tight list so far
    previous_blank = False
    at = 0
    for line in text.splitlines(keepends=True):
        blank = not line.strip()
        item = None if fenced or math_closer else _LIST_ITEM.match(line)
        item_kind = item.group(1)[-1] if item else ""  # "." or ")" after a number, or the bullet
        cut = continues = False
        if at > start and not fenced and not math_closer:
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
        if math_closer:
            if blank or math_closer in line:  # a blank line ends a formula too, as in to_html
                math_closer = ""
        elif _FENCE.match(line):
            fenced = not fenced
            kind = ""
        elif not fenced and (opened := _MATH_OPEN.match(line)):
            closer = "$$" if opened.group(1) == "$$" else "\\]"
            math_closer = "" if closer in line[opened.end():] else closer
            kind = ""
        previous_blank = blank
        at += len(line)
    if at > start:
        pieces.append((text[start:at], joins))
    return pieces


# -- blocks -----------------------------------------------------------------------------------
PROSE, CODE, TABLE = "prose", "code", "table"
_FENCE_OPEN = re.compile(r"( {0,3})(`{3,}|~{3,})([^\n]*)$")
_TABLE_DELIMITER = re.compile(r" {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")


@dataclass(frozen=True)
class Block:
    """One part of an answer: `kind` PROSE or TABLE with its Markdown `text`, or CODE with the
    code itself as `text` (fences taken off), its `language` ("" when none) and whether its
    closing fence has arrived (`closed`: False while a block streams in, or when never closed)."""

    kind: str
    text: str
    language: str = ""
    closed: bool = True


def _cells(line: str) -> int:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return len(re.split(r"(?<!\\)\|", inner))


def split_blocks(text: str) -> list[Block]:
    """Cut a model's Markdown into prose, fenced code blocks and tables, in order, following
    CommonMark's fences (three or more backticks or tildes, up to three spaces in, closed by a
    fence of the same character at least as long; an unclosed one runs to the end) and GFM's
    tables (a row with pipes, then a delimiter row of as many cells; rows up to a blank line).
    Fences and tables nested in lists or quotes stay in their prose. The text is cut as drawn
    (`drawn_text`: code is copied without bidi overrides either); joining the prose and the
    tables' texts with the code blocks' fences gives back that text."""
    lines = drawn_text(text).splitlines(keepends=True)
    blocks: list[Block] = []
    prose: list[str] = []

    def flush() -> None:
        if prose and "".join(prose).strip():
            blocks.append(Block(PROSE, "".join(prose)))
        prose.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.rstrip("\n").rstrip("\r")
        fence = _FENCE_OPEN.match(stripped)
        if fence and not (fence.group(2)[0] == "`" and "`" in fence.group(3)):
            indent, marks = len(fence.group(1)), fence.group(2)
            closer = re.compile(rf" {{0,3}}{re.escape(marks[0])}{{{len(marks)},}}[ \t]*$")
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not closer.match(lines[j].rstrip("\n").rstrip("\r")):
                body.append(re.sub(rf"^ {{0,{indent}}}", "", lines[j]) if indent else lines[j])
                j += 1
            flush()
            code = "".join(body)
            closed = j < len(lines)
            blocks.append(Block(CODE, code[:-1] if code.endswith("\n") else code,
                                code_language(fence.group(3)), closed))
            i = j + 1
            continue
        if ("|" in stripped and i + 1 < len(lines) and not line.startswith("    ")
                and _TABLE_DELIMITER.match(lines[i + 1].rstrip("\n").rstrip("\r"))
                and _cells(stripped) == _cells(lines[i + 1])):
            j = i + 2
            while j < len(lines) and lines[j].strip() and not _FENCE_OPEN.match(lines[j].rstrip("\n")):
                j += 1
            flush()
            blocks.append(Block(TABLE, "".join(lines[i:j])))
            i = j
            continue
        prose.append(line)
        i += 1
    flush()
    return blocks
