"""Answers as one self-contained HTML page, drawn by the same renderer as the window.

Each answer's Markdown is cut by `split_blocks` and drawn by `to_html` (prose, tables, typeset
math as `data:image/png` pictures from `math_render`, image chips) and by pygments (code), so an
exported answer shows what the chat and Compare show. The page needs nothing outside itself: one
small inline stylesheet in light colours with a `prefers-color-scheme: dark` variant, no script,
no fonts or pictures fetched, and a Content-Security-Policy that forbids loading anything but
its own `data:` pictures.

A model's text is untrusted, so the renderer's output passes a second guard here (`_Allowlist`):
only a fixed set of tags and attributes is written back, links only when http(s) or mailto,
pictures only when they are Hearth's own typeset formulas (`data:image/png;base64,`), and every
text is escaped again. Raw HTML in an answer was already escaped by the renderer; titles, model
names and the user's prompts are escaped here. `page` is the public entry (Compare's export, and
the chat's export); `answer_html` draws one answer.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

from pygments import highlight
from pygments.formatters import HtmlFormatter

from desktop.ui.markdown import (
    CODE,
    DARK_CODE_STYLE,
    HIGHLIGHT_LIMIT,
    IMAGE_HREF,
    LIGHT_CODE_STYLE,
    TABLE,
    image_address,
    is_live_link,
    lexer_for,
    split_blocks,
    to_html,
)
from desktop.ui.math_render import DATA_PREFIX
from desktop.ui.theme import DARK, LIGHT

# The renderer draws in the light theme's colours; the page's stylesheet recolours for dark.
_CODE_BG, _MUTED = LIGHT.code_bg, LIGHT.muted
_CODE_CLASS = "hl"

_VOID = {"br", "hr", "img"}
_KEPT = {"p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "a", "ul", "ol", "li", "blockquote",
         "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "img", "span",
         "sup", "sub"}
_DROPPED_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript",
                         "textarea", "title", "head"}
_ALIGN = re.compile(r"text-align\s*:\s*(left|right|center)")
_VALIGN = re.compile(r"vertical-align\s*:\s*(-?[0-9.]+px|middle|baseline|top|bottom|text-top|text-bottom)")
_PYGMENTS_CLASS = re.compile(r"^[a-z0-9]{1,3}$")


@dataclass(frozen=True)
class Entry:
    """One message on the page.

    author: who wrote it ("You", a model's name, "A"), shown above it as plain text.
    text: the message: Markdown drawn by the answer renderer, or with `plain` the user's own
    words, shown exactly as typed. note: a muted line under it (figures, "Thought for 3 s")."""

    author: str
    text: str
    plain: bool = False
    note: str = ""


@dataclass(frozen=True)
class Section:
    """A part of the page: a heading, an optional muted line under it, and its messages."""

    heading: str
    entries: Sequence[Entry] = field(default_factory=tuple)
    note: str = ""


class _Allowlist(HTMLParser):
    """Writes back only what an answer may hold (see the module's docstring); everything else
    is dropped, its text kept and escaped, or for script-like elements dropped with its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []  # the tags written, to close them (a dropped tag pushes "")
        self.skipping = 0  # inside a dropped-with-content element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self.skipping += 1
            return
        if self.skipping:
            return
        values = {k: v or "" for k, v in attrs}
        kept = self._attributes(tag, values)
        if tag == "a" and "href" not in kept:  # an image chip, or a link that is not live
            tag = "span"
            kept.setdefault("class", "chip" if image_address(values.get("href", "")) is not None else "")
            if not kept["class"]:
                del kept["class"]
        if tag == "img" and "src" not in kept:
            return  # only Hearth's own typeset formulas are pictures
        if tag not in _KEPT:
            if tag not in _VOID:
                self.stack.append("")
            return
        text = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in kept.items())
        self.out.append(f"<{tag}{text}>")
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and tag not in _DROPPED_WITH_CONTENT:
            self.handle_endtag(tag)

    @staticmethod
    def _attributes(tag: str, values: dict[str, str]) -> dict[str, str]:
        kept: dict[str, str] = {}
        style = values.get("style", "")
        if tag == "a":
            href = values.get("href", "")
            if href and image_address(href) is None and not href.startswith(IMAGE_HREF) and is_live_link(href):
                kept["href"] = href
                kept["rel"] = "noopener noreferrer nofollow"
        elif tag == "img":
            src = values.get("src", "")
            if src.startswith(DATA_PREFIX) and re.fullmatch(r"[A-Za-z0-9+/=]+", src[len(DATA_PREFIX):]):
                kept["src"] = src
                kept["class"] = "math"
                for name in ("width", "height"):
                    if re.fullmatch(r"[0-9.]{1,8}", values.get(name, "")):
                        kept[name] = values[name]
                kept["alt"] = values.get("alt", "")
                valign = _VALIGN.search(style)
                if valign:
                    kept["style"] = f"vertical-align:{valign.group(1)}"
        elif tag in ("td", "th"):
            align = _ALIGN.search(style)
            if align:
                kept["style"] = f"text-align:{align.group(1)}"
        elif tag == "p" and values.get("align") == "center":
            kept["class"] = "display"
        elif tag == "span":
            if "font-family" in style:
                kept["class"] = "tex"
            elif "color" in style:
                kept["class"] = "muted"
            elif _PYGMENTS_CLASS.match(values.get("class", "")):
                kept["class"] = values["class"]
        elif tag == "ol" and re.fullmatch(r"[0-9]{1,9}", values.get("start", "")):
            kept["start"] = values["start"]
        if "title" in values:
            kept["title"] = values["title"]
        return kept

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self.skipping = max(0, self.skipping - 1)
            return
        if self.skipping or tag in _VOID:
            return
        # Close up to the matching open element; a stray end tag closes nothing.
        written = {"a": ("a", "span")}.get(tag, (tag,))
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth] in written or (self.stack[depth] == "" and tag not in _KEPT):
                for closed in reversed(self.stack[depth:]):
                    if closed:
                        self.out.append(f"</{closed}>")
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(html.escape(data.replace("\u200b", ""), quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{t}>" for t in reversed(self.stack) if t)


def clean(rich: str) -> str:
    """`rich` (the renderer's HTML) with only the allowed tags and attributes (module docstring)."""
    parser = _Allowlist()
    parser.feed(rich)
    return parser.result()


def _code(code: str, language: str) -> str:
    lexer = lexer_for(language)
    if lexer is not None and len(code) <= HIGHLIGHT_LIMIT:
        body = highlight(code, lexer, HtmlFormatter(nowrap=True)).rstrip("\n")
    else:
        body = html.escape(code, quote=False)
    label = html.escape(language or "code", quote=False)
    return (f'<figure class="code"><figcaption>{label}</figcaption>'
            f'<pre class="{_CODE_CLASS}"><code>{clean(body)}</code></pre></figure>\n')


def answer_html(markdown: str) -> str:
    """One answer's Markdown as an HTML fragment for `page`: prose and tables by `to_html`
    (tables in a box that scrolls sideways), fenced code coloured by pygments (classes styled by
    the page's stylesheet) under its language, math as inline `data:image/png` pictures (while a
    QGuiApplication runs; else as written). Safe to put in any page: see `clean`."""
    parts = []
    for block in split_blocks(markdown):
        if block.kind == CODE:
            parts.append(_code(block.text, block.language))
            continue
        rich = clean(to_html(block.text, code_bg=_CODE_BG, muted=_MUTED))
        parts.append(f'<div class="wide">{rich}</div>\n' if block.kind == TABLE else rich)
    return "".join(parts)


def _code_css(body: str) -> str:
    """The pygments colours of the token classes used in `body`, light and dark."""
    used = set(re.findall(r'<span class="([a-z0-9]{1,3})"', body))

    def rules(style: str) -> list[str]:
        lines = HtmlFormatter(style=style).get_style_defs(f".{_CODE_CLASS}").splitlines()
        return [line for line in lines if (m := re.match(rf"\.{_CODE_CLASS} \.([a-z0-9]+) \{{", line))
                and m.group(1) in used]

    light, dark = rules(LIGHT_CODE_STYLE), rules(DARK_CODE_STYLE)
    return "\n".join(light) + "\n@media (prefers-color-scheme: dark) {\n" + "\n".join(dark) + "\n}\n"


_CSS = f"""
:root {{ color-scheme: light dark; --bg: {LIGHT.window}; --card: {LIGHT.base}; --text: {LIGHT.text};
  --muted: {LIGHT.muted}; --code: {LIGHT.code_bg}; --border: {LIGHT.border}; --link: #1a5fb4; --you: {LIGHT.user_bubble}; }}
@media (prefers-color-scheme: dark) {{
  :root {{ --bg: {DARK.window}; --card: {DARK.base}; --text: {DARK.text}; --muted: {DARK.muted};
    --code: {DARK.code_bg}; --border: {DARK.border}; --link: #8ab4f8; --you: {DARK.user_bubble}; }}
  img.math {{ filter: invert(1) hue-rotate(180deg); }}
}}
body {{ background: var(--bg); color: var(--text); margin: 0; padding: 24px;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }}
main {{ max-width: 860px; margin: 0 auto; }}
h1 {{ font-size: 1.5em; margin: 0 0 4px; }}
section {{ background: var(--card); border: 1px solid var(--border); border-radius: 12px; padding: 4px 18px 12px;
  margin: 16px 0; overflow-wrap: anywhere; }}
section > h2 {{ font-size: 1.1em; margin: 12px 0 2px; }}
article {{ margin: 12px 0; }}
article > h3 {{ font-size: 1em; margin: 0 0 4px; }}
article.you .text {{ background: var(--you); border-radius: 12px; padding: 8px 12px; white-space: pre-wrap; }}
.muted, .note, .chip {{ color: var(--muted); }}
.note, .sub {{ font-size: 0.85em; color: var(--muted); margin: 2px 0; }}
a {{ color: var(--link); }}
.chip {{ background: var(--code); border-radius: 4px; padding: 0 4px; }}
code {{ font-family: ui-monospace, "JetBrains Mono", "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; }}
:not(pre) > code {{ background: var(--code); border-radius: 4px; padding: 0 3px; }}
figure.code {{ background: var(--code); border-radius: 8px; margin: 8px 0; padding: 4px 10px 8px; }}
figure.code figcaption {{ color: var(--muted); font-size: 0.8em; }}
pre {{ margin: 0; overflow-x: auto; white-space: pre; overflow-wrap: normal; }}
.wide {{ overflow-x: auto; margin: 6px 0; }}
table {{ border-collapse: collapse; overflow-wrap: normal; }}
th, td {{ border: 1px solid var(--border); padding: 4px 8px; white-space: nowrap; }}
thead tr {{ background: var(--code); }}
p.display {{ text-align: center; }}
.tex {{ font-family: "STIX Two Text", "Latin Modern Roman", "DejaVu Serif", Georgia, serif; }}
blockquote {{ border-left: 3px solid var(--border); margin: 6px 0; padding-left: 10px; color: var(--muted); }}
"""

_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"


def page(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """A whole HTML5 document (UTF-8 text) showing `sections` under `title`.

    Every string given is untrusted: `title`, `subtitle`, headings, authors, notes and `plain`
    entries are escaped; Markdown entries go through `answer_html`. The page loads nothing
    (Content-Security-Policy `default-src 'none'`, pictures only as `data:`), runs no script,
    and follows the reader's light or dark preference (`prefers-color-scheme`)."""
    esc = html.escape
    body: list[str] = [f"<h1>{esc(title)}</h1>\n"]
    if subtitle:
        body.append(f'<p class="sub">{esc(subtitle)}</p>\n')
    for section in sections:
        body.append(f"<section>\n<h2>{esc(section.heading)}</h2>\n")
        if section.note:
            body.append(f'<p class="sub">{esc(section.note)}</p>\n')
        for entry in section.entries:
            text = (f'<div class="text">{esc(entry.text)}</div>' if entry.plain
                    else f'<div class="text answer">{answer_html(entry.text)}</div>')
            note = f'<p class="note">{esc(entry.note)}</p>' if entry.note else ""
            body.append(f'<article class="{"you" if entry.plain else "answer"}">\n<h3>{esc(entry.author)}</h3>\n'
                        f"{text}\n{note}</article>\n")
        body.append("</section>\n")
    content = "".join(body)
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="color-scheme" content="light dark">\n'
            f"<title>{esc(title)}</title>\n<style>{_CSS}{_code_css(content)}</style>\n</head>\n"
            f"<body>\n<main>\n{content}</main>\n</body>\n</html>\n")
