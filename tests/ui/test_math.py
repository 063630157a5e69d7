"""Math in an answer is typeset: each formula becomes a picture drawn in memory by Hearth's own
renderer, in the theme's text colour, on the text's baseline; one that cannot be typeset is
shown exactly as written. Drawing math reads no file, and a hostile formula cannot hold the
window."""

from __future__ import annotations

import base64
import os
import re
import sys
import time

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QGuiApplication, QImage, QTextCursor, QTextDocument
from PySide6.QtWidgets import QLabel

from desktop.ui import math_render
from desktop.ui.links import AnswerBrowser, guard_label
from desktop.ui.markdown import LiveMarkdown, to_html
from desktop.ui.theme import DARK, LIGHT
from tests.ui.conftest import formula_sources, send, window_on_standin

IMG = re.compile(r'<img src="(data:image/png;base64,[A-Za-z0-9+/=]+)"[^>]*alt="([^"]*)"')


def html_of(text: str, theme=LIGHT) -> str:
    return to_html(text, code_bg=theme.code_bg, muted=theme.muted)


def document_of(html: str) -> QTextDocument:
    document = QTextDocument()
    document.setHtml(html)
    return document


def formulas(html: str) -> list[str]:
    """The LaTeX source of each typeset formula, as Qt reads it from the pictures' alt text."""
    return formula_sources(html)


def shown(html: str) -> str:
    return document_of(html).toPlainText().replace("\u200b", "").replace("\xa0", " ").strip()


def ink(image: QImage, colour: str) -> int:
    """How many pixels of `image` are close to `colour` (the glyphs of drawn text or math)."""
    want = QColor(colour)
    count = 0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            if abs(c.red() - want.red()) + abs(c.green() - want.green()) + abs(c.blue() - want.blue()) < 60:
                count += 1
    return count


@pytest.fixture(autouse=True)
def _qt(qapp):
    """Typesetting needs Qt's application (fonts, device pixel ratio)."""


@pytest.mark.parametrize(("text", "source"), [
    ("Area \\( x^2 \\) grows.", "x^2"),
    ("\\[ \\frac{a}{b} \\]", "\\frac{a}{b}"),
    ("$$\\sum_{i=1}^n i$$", "\\sum_{i=1}^n i"),
    ("Famous: $E=mc^2$.", "E=mc^2"),
])
def test_formulas_are_typeset_as_pictures_that_keep_their_source(qtbot, text, source):
    html = html_of(text)
    (match,) = IMG.findall(html)
    assert match[1] == source.replace("&", "&amp;")
    assert formulas(html) == [source]
    assert source not in shown(html) and "\ufffc" in shown(html)  # a picture, not the raw text
    # A label draws the picture: the formula alone puts ink in the text's colour on the page
    # (whatever font the application's style sheet gave the words around it).
    picture = re.search(r"<img [^>]*>", html).group(0)
    label = QLabel()
    label.setStyleSheet(f"background: {LIGHT.base}; color: {LIGHT.text};")
    label.setText(picture)
    label.adjustSize()
    qtbot.addWidget(label)
    image = label.grab().toImage()
    drawn = image.width() * image.height() - ink(image, LIGHT.base)  # pixels that are not the page
    assert drawn > 20 and ink(image, LIGHT.text) > 0


@pytest.mark.parametrize("text", ["It costs $5 or $10.", "Between $5 and $10, $20-$30.", "US$5, AU$7"])
def test_prices_stay_text(text):
    html = html_of(text)
    assert "<img" not in html and shown(html) == text


@pytest.mark.parametrize(("text", "written"), [
    ("So \\( \\foo{x} + 1 \\) holds.", "\\( \\foo{x} + 1 \\)"),
    ("Broken $\\frac{a}{$ here.", "$\\frac{a}{$"),
    ("\\( \\unknowncmd \\alpha \\)", "\\( \\unknowncmd \\alpha \\)"),
])
def test_a_formula_that_cannot_be_typeset_is_shown_as_written_with_every_backslash(text, written):
    html = html_of(text)
    assert "<img" not in html
    assert written in shown(html)
    document = document_of(html)
    cursor = document.find(written)
    assert "DejaVu Serif" in cursor.charFormat().font().families()


def test_a_display_formula_that_cannot_be_typeset_keeps_its_lines():
    text = "Then\n\\[\n\\begin{aligned}\n  a &= \\nosuch{b} \\\\\n  c &= d\n\\end{aligned}\n\\]\nso."
    lines = [line.strip() for line in shown(html_of(text)).splitlines()]
    for line in ("\\[", "\\begin{aligned}", "a &= \\nosuch{b} \\\\", "c &= d", "\\end{aligned}", "\\]"):
        assert line in lines, (line, lines)


@pytest.mark.parametrize(("name", "latex"), [
    ("10,000 line breaks", "\\\\" * 10_000),
    ("a formula of 100,000 characters", "x+" * 50_000),
    ("500 nested groups", "{" * 500 + "x" + "}" * 500),
    ("nested fractions", "\\frac{" * 40 + "1" + "}{2}" * 40),
    ("nested roots", "\\sqrt{" * 60 + "x" + "}" * 60),
    ("a 40 x 40 matrix", "\\begin{matrix}" + "\\\\".join(["&".join(["1"] * 40)] * 40) + "\\end{matrix}"),
    ("a thousand left-right pairs", "\\left(" * 1000 + "x" + "\\right)" * 1000),
    ("towers of exponents", "x^{" * 100 + "y" + "}" * 100),
])
def test_a_hostile_formula_cannot_hold_the_window(name, latex):
    # A generous bound that only a hang would break; measured times are in tests/bench/math_times.py.
    for text in (f"$${latex}$$", f"\\( {latex} \\)"):
        started = time.perf_counter()
        html = html_of(text)
        assert time.perf_counter() - started < 2.0, name
        assert "Traceback" not in html
    started = time.perf_counter()
    assert math_render.render(latex, False, "#000000", 13.33, 3.5, 1.0) is None
    assert time.perf_counter() - started < 0.5, name


def test_the_dark_theme_draws_math_in_its_own_text_colour():
    def darkest_ink(theme) -> QColor:
        (url, _) = IMG.findall(html_of("$E=mc^2$", theme))[0]
        image = QImage.fromData(base64.b64decode(url.split(",", 1)[1]))
        solid = [image.pixelColor(x, y) for y in range(image.height()) for x in range(image.width())
                 if image.pixelColor(x, y).alpha() == 255]
        assert solid
        return solid[0]

    light, dark = darkest_ink(LIGHT), darkest_ink(DARK)
    assert light.name() == LIGHT.text and dark.name() == DARK.text


def test_an_unclosed_formula_stays_text_while_streaming_and_each_formula_is_typeset_once():
    live = LiveMarkdown(code_bg=LIGHT.code_bg, muted=LIGHT.muted)
    answer = "The energy is \\( E = m c^{2} \\) in joules."
    before = math_render.cache_info()
    for end in range(1, len(answer) + 1):
        html = live.render(answer[:end])
        if end < answer.index("\\)") + 2:
            assert "<img" not in html  # until it closes, it is text
    after = math_render.cache_info()
    assert formulas(html) == ["E = m c^{2}"]
    assert after.misses - before.misses == 1  # typeset once, then taken from the cache
    assert after.hits > before.hits


def test_a_model_cannot_put_its_own_picture_in_an_answer():
    png = math_render.render("y", False, "#000000", 13.33, 3.5, 1.0).png
    forged = "data:image/png;base64," + base64.b64encode(png[:-1] + b"\x00").decode()
    for text in (f"![x]({forged})", f'<img src="{forged}">', f"[a]({forged})"):
        html = html_of(text)
        assert "<img" not in html, text
    # The text browser loads only pictures this renderer made, from memory.
    browser = AnswerBrowser()
    html = html_of("Sum: $\\sum_i i$")
    (url, _) = IMG.findall(html)[0]
    image_kind = QTextDocument.ResourceType.ImageResource.value
    assert not browser.loadResource(image_kind, QUrl(url)).isNull()
    assert browser.loadResource(image_kind, QUrl(forged)).isNull()
    assert browser.loadResource(image_kind, QUrl("file:///etc/hostname")).isNull()
    browser.deleteLater()


class _Opens:
    """Files Python opens while `recording` (an audit hook cannot be removed: installed once)."""

    installed = False
    recording = False
    opened: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.recording and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            cls.opened.append(os.fsdecode(args[0]))


def test_drawing_math_opens_no_file(qtbot, tmp_path, monkeypatch):
    if not _Opens.installed:
        sys.addaudithook(_Opens.hook)
        _Opens.installed = True
    math_render.render("w", False, "#000000", 13.33, 3.5, 1.0)  # ziamath and its font are loaded once, at first use
    monkeypatch.chdir(tmp_path)  # where Qt would look for a relative image
    (tmp_path / "x^2").write_text("not an image")
    text = ("Fresh: \\( q^{7} + \\hat{z} \\), $\\int_0^1 t\\,dt$ and\n\n"
            "$$\\begin{pmatrix} 5 & 6 \\\\ 7 & 8 \\end{pmatrix}$$\n")
    _Opens.opened, _Opens.recording = [], True
    try:
        label, browser = QLabel(), AnswerBrowser()
        qtbot.addWidget(label)
        qtbot.addWidget(browser)
        html = html_of(text, DARK)
        label.setText(html)
        browser.setHtml(html)
        label.grab()
        browser.grab()
    finally:
        _Opens.recording = False
    assert len(formulas(html)) == 3
    assert _Opens.opened == []


def test_a_mixed_answer_looks_right_in_light_and_dark(qtbot, shots_dir):
    text = ("Einstein's \\( E = mc^2 \\) links mass and energy; \\( x^2 + y^2 = r^2 \\) is a circle, "
            "$\\frac{a}{b}$ a fraction, $y_j$ has a descender and $\\int_0^x g(t)\\,dt$ an integral. "
            "Prices like $5 or $10 stay text.\n\n"
            "The sum of the first $n$ integers:\n\n$$\\sum_{i=1}^n i = \\frac{n(n+1)}{2}$$\n\n"
            "and a matrix\n\n\\[ A = \\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix} \\]\n\n"
            "An unknown command stays as written: \\( \\foo{x} + 1 \\).")
    for theme in (LIGHT, DARK):
        label = QLabel()
        qtbot.addWidget(label)
        label.setWordWrap(True)
        label.setStyleSheet(f"background: {theme.base}; color: {theme.text}; padding: 12px; font-size: 10pt;")
        label.setText(html_of(text, theme))
        label.setFixedWidth(620)
        label.adjustSize()
        image = label.grab().toImage()
        assert ink(image, theme.text) > 500
        name = "dark" if theme.dark else "light"
        label.grab().save(str(shots_dir / f"math-{name}.png"))


def test_a_slow_formula_holds_the_window_no_longer_than_the_deadline_and_shows_once_typeset(monkeypatch):
    monkeypatch.setattr(math_render, "TYPESET_SECONDS", 0.001)  # every formula is "slow" now
    latex = "\\frac{" * 5 + "k" + "}{2}" * 5  # some 50 ms of typesetting, far past 1 ms
    started = time.perf_counter()
    assert math_render.render(latex, True, "#000000", 13.33, 3.5, 1.0) is None  # shown as written
    assert time.perf_counter() - started < 0.5
    for future in list(math_render._running.values()):
        future.exception()  # the worker finishes it in the background
    assert math_render.render(latex, True, "#000000", 13.33, 3.5, 1.0) is not None  # the next render has it


def test_copying_a_selection_gives_each_formula_as_written(qtbot):
    text = "Area \\( x^2 \\) grows, as $E=mc^2$ says.\n\n$$\\sum_{i=1}^n i$$\n\nDone."
    html = html_of(text)
    assert len(formulas(html)) == 3
    expected = "Area \\( x^2 \\) grows, as $E=mc^2$ says.\n$$\\sum_{i=1}^n i$$\nDone."
    clipboard = QGuiApplication.clipboard()

    label = QLabel()
    qtbot.addWidget(label)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    guard_label(label)
    label.setText(html)
    label.show()
    label.setSelection(0, len(shown(html)))
    qtbot.keyClick(label, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert clipboard.text().rstrip() == expected  # (Qt ends the last paragraph with a space)

    browser = AnswerBrowser()
    qtbot.addWidget(browser)
    browser.setHtml(html)
    browser.selectAll()
    clipboard.clear()
    browser.copy()
    assert clipboard.text().rstrip() == expected
    cursor = browser.textCursor()  # part of a line: the formula inside it whole, as written
    cursor.setPosition(5)
    cursor.setPosition(12, QTextCursor.MoveMode.KeepAnchor)
    browser.setTextCursor(cursor)
    browser.copy()
    assert clipboard.text() == "\\( x^2 \\) grows"


WIDE = ("A long one inline, \\( f(x) = a_0 + a_1 x + a_2 x^2 + a_3 x^3 + a_4 x^4 + a_5 x^5 \\), and on its own:\n\n"
        "$$\\sum_{k=0}^{n} \\binom{n}{k} x^k y^{n-k} = (x + y)^n = x^n + n x^{n-1} y + \\frac{n(n-1)}{2} x^{n-2} y^2 + \\cdots$$\n\n"
        "$$1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15 + 16 + 17 + 18 + 19 + 20 + 21 + 22 + 23 + 24$$\n\n"
        "That is all.")


def test_in_the_narrowest_window_no_formula_is_cut_off_or_widens_it(qtbot, make_window, standin, shots_dir):
    window = window_on_standin(make_window)
    window.resize(760, 700)  # the window's minimum width
    standin.next = ["drip:0.01"]
    standin.scripts = [[{"content": WIDE[i:i + 40]} for i in range(0, len(WIDE), 40)]]
    answer = send(qtbot, window, "Some wide maths.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    for _ in range(5):
        qtbot.wait(40)
    assert window.width() == 760
    listing = window.message_list
    viewport = listing.viewport()
    assert listing.horizontalScrollBar().maximum() == 0 or not listing.horizontalScrollBar().isVisible()
    body = answer.body
    for block in (body.blocks if hasattr(body, "blocks") else [body]):
        right = block.mapTo(viewport, block.rect().topRight()).x()
        assert right <= viewport.width(), (type(block).__name__, right, viewport.width())
    window.grab().save(str(shots_dir / "math-760px.png"))
