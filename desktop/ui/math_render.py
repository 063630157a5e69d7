"""LaTeX formulas of an answer, typeset as images for Qt's rich text.

ziamath turns the LaTeX into MathML (latex2mathml) and then into SVG with the STIX Two Math
font, all in memory; QtSvg paints that SVG into a PNG at the screen's device pixel ratio, in the
theme's text colour only, whatever colour, background or size the formula asks for
(`plain_ink`: `\\textcolor{white}{…}` cannot hide words on a light page). The PNG goes into the answer's HTML as a `data:` URL, which Qt's
QTextDocument decodes in memory (qtextdocument.cpp, `loadResource`: "handle data: URLs"), so
drawing a formula reads no file and fetches nothing. Only this module writes such images: the
renderer escapes every `<img>` and Markdown image a model writes.

A formula that cannot be typeset (an unknown command, a parse error, too long, too deep, too
wide, or not within TYPESET_SECONDS: ziamath runs in a worker thread) gives None, and the
caller shows it as written. Results, failures included, are cached, so an answer that
re-renders 30 times a second while it streams typesets each formula once. Each picture carries
its formula as written (alt text and title), which is what a copy of the selection gives.
"""

from __future__ import annotations

import base64
import binascii
import html
import math
import re
import time
import warnings
import xml.etree.ElementTree as ET
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import lru_cache

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
from PySide6.QtGui import (
    QFont,
    QFontMetrics,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QPainter,
    QPalette,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtSvg import QSvgRenderer

from desktop.ui.theme import DARK, LIGHT

# A formula holds the GUI thread at most TYPESET_SECONDS; the bounds below keep what the worker
# goes on doing after that short (ziamath is pure Python and cannot be stopped), measured with
# tests/bench/math_times.py. A formula beyond them is shown as written.
TYPESET_SECONDS = 0.12  # the longest one formula may hold the GUI thread
MAX_LATEX = 1000  # characters
MAX_DEPTH = 6  # nested groups (braces, \left…\right, environments): each level doubles the time
MAX_ROWS = 60  # line breaks (`\\`) and column separators (`&`) together
MAX_COMMANDS = 250  # backslash commands
# Widest picture (logical px) that fits the chat's column at the window's smallest size; a
# wider formula is drawn smaller, down to MIN_SHRINK, else shown as written (text wraps).
MAX_INLINE_WIDTH = 400
MAX_DISPLAY_WIDTH = 400
MIN_SHRINK = 0.7
MAX_HEIGHT = 600  # px (logical)
MIN_GLYPH = 0.5  # the smallest a script may be drawn, as a fraction of the text's size
MAX_BACKSPACE = 0.5  # em: the most a space may move back (TeX's \\negthickspace is 0.28 em)
MAX_SHIFT = 2.0  # em: the most a part of a formula may be raised, lowered or moved back

TEXT_POINTS = 10.0  # the answer's text size (the stylesheet's `QWidget { font-size: 10pt; }`)
MATH_SCALE = 1.15  # STIX Two's x-height is smaller than the UI sans fonts': this makes them match

DATA_PREFIX = "data:image/png;base64,"
_UNKNOWN_COMMAND = re.compile(r">[^<]*\\")  # latex2mathml leaves an unknown `\foo` as text
_ISSUED_LIMIT = 1024
_INTEGRALS = set("\u222b\u222c\u222d\u222e\u222f\u2230\u2231\u2232\u2233\u2a0c")


@dataclass(frozen=True)
class MathImage:
    """One typeset formula.

    png: the picture, `scale` device pixels per logical pixel, padded so that for inline math
    `depth` px of it lie below the text's baseline (see `html_img`).
    width, height: its size in logical px. depth: logical px below the baseline.
    valign: the CSS vertical-align Qt should give it.
    seconds: how long typesetting took (for the benchmark)."""

    png: bytes
    width: float
    height: float
    depth: float
    valign: str
    seconds: float
    image: QImage = field(compare=False, repr=False)  # the decoded picture, for AnswerBrowser

    @property
    def data_url(self) -> str:
        return DATA_PREFIX + base64.b64encode(self.png).decode("ascii")


def too_complex(latex: str) -> bool:
    """Whether a formula is beyond the bounds that keep typesetting it short (length, nesting,
    rows and columns, commands): such a formula is shown as written."""
    if len(latex) > MAX_LATEX or latex.count("\\\\") + latex.count("&") > MAX_ROWS:
        return True
    if latex.count("\\") > MAX_COMMANDS:
        return True
    depth = deepest = 0
    for token in re.finditer(r"\\left\b|\\right\b|\\begin\b|\\end\b|\\[{}]|[{}]", latex):
        word = token.group()
        if word in ("{", "\\left", "\\begin"):
            depth += 1
            deepest = max(deepest, depth)
        elif word in ("}", "\\right", "\\end"):
            depth -= 1
    return deepest > MAX_DEPTH


def text_colour(muted: str) -> str:
    """The text colour of the theme whose muted colour is `muted` (the renderer is made per
    theme with that colour), else the application palette's text colour."""
    for theme in (LIGHT, DARK):
        if theme.muted.lower() == muted.lower():
            return theme.text
    return QGuiApplication.palette().color(QPalette.ColorRole.Text).name()


def text_metrics() -> tuple[float, float]:
    """(em size, half the x-height) in logical px of the text an answer is drawn in: the
    application's font at TEXT_POINTS, as Qt measures it to place an inline image. Needs a
    QGuiApplication."""
    font = QFont(QGuiApplication.font())
    font.setPointSizeF(TEXT_POINTS)
    metrics = QFontMetricsF(font)
    # Qt measures with the integer QFontMetrics: the same x-height here.
    return font.pointSizeF() * metrics.fontDpi() / 72.0, QFontMetrics(font).xHeight() / 2.0


def device_scale() -> float:
    """Device pixels per logical pixel on the sharpest screen (1.0 without a GUI)."""
    app = QGuiApplication.instance()
    return max(1.0, float(app.devicePixelRatio())) if app is not None else 1.0


def _ziamath():
    with warnings.catch_warnings():  # its font is found with pkg_resources' deprecated path()
        warnings.simplefilter("ignore", DeprecationWarning)
        import ziamath  # loads its font on first use: ~150 ms, once

    # SVG 1.1 paths: QtSvg draws nothing of SVG 2's <symbol> + <use href> glyphs.
    ziamath.config.svg2 = False
    # Scripts of scripts shrink no further than half the text, as in TeX's scriptscript style
    # (ziamath's own floor is 30%: a five-deep power tower would be specks).
    ziamath.config.minsizefraction = MIN_GLYPH
    return ziamath


# MathML attributes through which a formula could choose its own colours or size, with the
# LaTeX that makes them (latex2mathml 3.81: \color, \textcolor -> mstyle mathcolor; \colorbox,
# \fcolorbox -> mpadded mathbackground, border-color; \style{css} -> style; \tiny…\Huge ->
# mathsize). ziamath 0.13 honours mathcolor, mathbackground, mathsize and the color and
# background of a style (styles.parse_style). They are all taken off before typesetting, so a
# formula is drawn in the theme's text colour only, at the text's size, with what they held.
# (\pagecolor and \mathcolor are not commands latex2mathml knows: shown as written, or typeset
# without colour.)
_OWN_LOOK = ("mathcolor", "mathbackground", "color", "background", "style", "border-color", "mathsize",
             "fontsize", "fontfamily", "fontweight", "fontstyle")
_LENGTH = re.compile(r"\s*([-+]?\d*\.?\d+)\s*(em|ex|mu|pt|px)?\s*$")
_EMS = {"em": 1.0, "ex": 0.43, "mu": 1 / 18, "pt": 0.1, "px": 0.075, None: 0.075}


def _ems(length: str) -> float | None:
    """A MathML length in em (roughly, for bounds: 1pt = 0.1em at the answer's 10pt); None
    when it is not a plain length (a percentage, "1width", a named space)."""
    found = _LENGTH.match(length or "")
    return float(found.group(1)) * _EMS[found.group(2)] if found else None


def plain_ink(element: ET.Element, colour: str) -> None:
    """Make a formula's MathML (from `tex2mml`) draw in `colour` only: every colour, background,
    CSS style and size attribute is removed (their content stays, drawn like the rest), and
    spaces and shifts are bounded so that nothing is pushed onto its neighbours or out of the
    picture: a space narrower than -MAX_BACKSPACE em (TeX's own negative spaces are at most
    -0.28 em) and a padding, raise or lower beyond MAX_SHIFT em are dropped. `\\phantom` is left alone:
    it is blank space the size of what it holds by design, and what it holds is in the source
    the picture carries (hover, copy). Changes `element` in place; the root gets
    `mathcolor=colour`."""
    for node in element.iter():
        for name in _OWN_LOOK:
            node.attrib.pop(name, None)
        tag = node.tag.rsplit("}", 1)[-1]
        if tag == "mstyle":  # what is left of its style (display, script level) holds on an mrow
            node.tag = node.tag[: -len(tag)] + "mrow"  # (ziamath 0.13 cannot read an mstyle left bare)
        if tag == "mspace":
            width = _ems(node.get("width", "0"))
            if width is None or width < -MAX_BACKSPACE:
                node.attrib.pop("width", None)
        for name in ("voffset", "lspace", "height", "depth", "width") if tag == "mpadded" else ():
            shift = _ems(node.get(name, "0"))
            if shift is not None and abs(shift) > MAX_SHIFT:
                node.attrib.pop(name, None)
    element.attrib["mathcolor"] = colour


def _svg(latex: str, display: bool, colour: str, size: float) -> tuple[str, float, float, float] | None:
    """(svg, width, ascent, depth) of the formula in px at `size`, or None if it cannot be
    typeset. ziamath's SVG has its baseline at y=0 and a 1 px margin on every side."""
    ziamath = _ziamath()
    from ziamath.tex import tex2mml

    mathml = tex2mml(latex, inline=not display)
    if _UNKNOWN_COMMAND.search(mathml) or "<merror" in mathml:
        return None
    element = ET.fromstring(mathml)
    plain_ink(element, colour)
    if not display:  # ziamath reads the style from the first row, not from <math display>
        for row in element:
            row.attrib["displaystyle"] = "false"
        for node in element.iter():  # and stretches an integral to its limits, in the text too
            if node.tag.endswith("}mo") and (node.text or "").strip() in _INTEGRALS:
                node.attrib["stretchy"] = "false"
    for node in element.iter():  # rows and columns of matrices and aligned lines as TeX spaces them
        if node.tag.endswith("}mtable"):
            if node.get("rowspacing", "3pt") == "3pt":
                node.attrib["rowspacing"] = "0.5em"
            node.attrib.setdefault("columnspacing", "0.8em")
    typeset = ziamath.Math(element, size=size, margin=1.0)
    svg = typeset.svg()
    box = typeset.node.bbox
    return svg, box.xmax - box.xmin + 2.0, box.ymax + 1.0, -box.ymin + 1.0


def render(latex: str, display: bool, colour: str, em: float, half_x: float, scale: float) -> MathImage | None:
    """Typeset `latex` (the formula without its delimiters) as a PNG.

    display: a formula on its own line (display style) rather than in the text.
    colour: the text colour, "#rrggbb". em, half_x: the surrounding text's size and half its
    x-height in logical px (`text_metrics`). scale: device pixels per logical pixel (`device_scale`).
    Returns None when it cannot be typeset (unsupported command, parse error, beyond the
    bounds of `too_complex`, wider than the column can take even shrunk to MIN_SHRINK) or not
    within TYPESET_SECONDS: the caller shows it as written. Never raises. Cached, failures
    included (least recently used beyond 1024), except a formula still being typeset: that
    one is tried again at the next render (a streaming answer re-renders 30 times a second)."""
    if not latex.strip() or too_complex(latex):
        return None
    try:
        return _typeset(latex, display, colour, em, half_x, scale)
    except Exception:  # noqa: BLE001 (_NotYet, or anything Qt raised: shown as written)
        return None


class _NotYet(Exception):
    """The formula is still being typeset in the worker (or waits for it): not cached."""


_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hearth-math")
_running: dict[tuple, Future] = {}


def warm_up() -> None:
    """Import ziamath (and read its font) in the worker thread now, so the first formula a
    reader meets does not wait ~250 ms for it on the GUI thread. Call once the window is drawn."""
    _worker.submit(_ziamath)


def _svg_in_time(latex: str, display: bool, colour: str, size: float) -> tuple[str, float, float, float] | None:
    """`_svg`, run in the worker thread and waited for at most TYPESET_SECONDS, so a slow
    formula never holds the GUI thread longer (ziamath is pure Python and cannot be stopped:
    the bounds of `too_complex` keep what it goes on doing short). While the worker is busy
    with a slow formula, others are not queued behind it: they raise _NotYet at once."""
    _ziamath()  # the first import (~150 ms, once a run) here, not against the deadline
    key = (latex, display, colour, size)
    future = _running.get(key)
    if future is None:
        if any(not running.done() for running in _running.values()):
            raise _NotYet
        future = _running[key] = _worker.submit(_svg, latex, display, colour, size)
    try:
        return future.result(timeout=TYPESET_SECONDS)
    except FutureTimeout:
        raise _NotYet from None
    finally:  # forget finished work: this one, and any that finished late and was not asked again
        for done in [k for k, f in _running.items() if f.done()]:
            del _running[done]


@lru_cache(maxsize=1024)
def _typeset(latex: str, display: bool, colour: str, em: float, half_x: float, scale: float) -> MathImage | None:
    start = time.perf_counter()
    try:
        made = _svg_in_time(latex, display, colour, em * MATH_SCALE)
    except _NotYet:
        raise
    except Exception:  # noqa: BLE001 (a formula ziamath or latex2mathml cannot read: shown as written)
        return None
    if made is None:
        return None
    return _picture(made, display, half_x, scale, start)


def cache_info():
    """Hits and misses of the formula cache (functools' CacheInfo)."""
    return _typeset.cache_info()


def cache_clear() -> None:
    """Forget every typeset formula (for measurements)."""
    _typeset.cache_clear()


def _picture(made: tuple[str, float, float, float], display: bool, half_x: float, scale: float,
             start: float) -> MathImage | None:
    """The SVG painted at the device pixel ratio, padded for the baseline (see MathImage)."""
    svg, width, ascent, depth = made
    widest = MAX_DISPLAY_WIDTH if display else MAX_INLINE_WIDTH
    shrink = min(1.0, widest / width) if width > 0 else 0.0
    if shrink < MIN_SHRINK or (ascent + depth) * shrink > MAX_HEIGHT or width <= 2.0:
        return None
    width, ascent, depth = width * shrink, ascent * shrink, depth * shrink
    # Qt places an inline image with vertical-align: middle so that (height + x/2) / 2 of it
    # lies above the text's baseline, x being the font's x-height (QTextDocumentLayout::
    # resizeInlineObject); the other alignments put its bottom on the baseline. Pad the
    # picture so that its own baseline lands on the text's.
    top = bottom = 0.0
    if not display:
        if ascent - depth >= half_x:
            bottom = ascent - depth - half_x
        else:
            top = half_x - (ascent - depth)
    height = ascent + depth + top + bottom
    pixels_w, pixels_h = math.ceil(width * scale), math.ceil(height * scale)
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    if not renderer.isValid():
        return None
    image = QImage(pixels_w, pixels_h, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, top * scale, width * scale, (ascent + depth) * scale))
    finally:
        painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    png = bytes(buffer.data().data())
    return MathImage(png, pixels_w / scale, pixels_h / scale, depth + bottom, "middle",
                     time.perf_counter() - start, image)


_issued: OrderedDict[bytes, QImage] = OrderedDict()


def _issue(png: bytes, image: QImage) -> None:
    _issued[png] = image
    _issued.move_to_end(png)
    while len(_issued) > _ISSUED_LIMIT:
        _issued.popitem(last=False)


def issued_image(url: str) -> QImage | None:
    """The picture behind a `data:` URL that this module made, for a view that loads resources
    itself (AnswerBrowser); None for any other URL, so a view loads nothing else."""
    if not url.startswith(DATA_PREFIX):
        return None
    try:
        png = base64.b64decode(url[len(DATA_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return None
    return _issued.get(png)


def html_img(latex: str, *, display: bool, colour: str, written: str = "") -> str | None:
    """The `<img>` that draws `latex` in an answer's rich text, or None when it cannot be typeset
    (see `render`) or no QGuiApplication runs. Its alt text is the LaTeX; its title (shown on
    hover, and what a copy of the selection carries: `selection_as_written`) is `written`, the
    formula as the model wrote it with its delimiters (the LaTeX alone if empty)."""
    if QGuiApplication.instance() is None:
        return None
    em, half_x = text_metrics()
    image = render(latex, display, colour, round(em, 2), half_x, device_scale())
    if image is None:
        return None
    _issue(image.png, image.image)
    source = html.escape(latex.strip(), quote=True)
    title = html.escape(written or latex.strip(), quote=True)
    return (f'<img src="{image.data_url}" width="{image.width:g}" height="{image.height:g}" '
            f'style="vertical-align: {image.valign};" alt="{source}" title="{title}">')


def selection_as_written(document: QTextDocument, start: int, end: int) -> str:
    """The plain text of `document` between positions `start` and `end` (a selection), with
    each typeset formula as the model wrote it (its picture's title) instead of the object
    character Qt puts there, and paragraph breaks as newlines."""
    out: list[str] = []
    block = document.findBlock(start)
    while block.isValid() and block.position() < end:
        if out:
            out.append("\n")
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            first = fragment.position()
            lo, hi = max(first, start), min(first + fragment.length(), end)
            if lo < hi:
                piece = fragment.text()[lo - first:hi - first]
                fmt = fragment.charFormat()
                title = fmt.stringProperty(QTextFormat.Property.ImageTitle) if fmt.isImageFormat() else ""
                out.append(piece.replace("\ufffc", title) if title else piece)
            it += 1
        block = block.next()
    return "".join(out)
