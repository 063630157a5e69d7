"""An answer cannot hide or disguise its words by its shape: in the real window, formulas are
drawn in the theme's text colour whatever colour they ask for, quotes and lists nested 30 or 40
deep keep every item inside the column at the window's smallest sizes, bidi overrides cannot
make "evil.exe" read as "exe.live", and piles of combining marks stay on their own line."""

from __future__ import annotations

import base64
import re
import statistics
import time

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QContextMenuEvent, QGuiApplication, QImage, QTextDocument
from PySide6.QtWidgets import QApplication, QLabel, QMenu

from desktop.ui.cloud_page import ColumnView
from desktop.ui.markdown import (
    MAX_MARKS,
    MAX_NESTING,
    LiveMarkdown,
    cap_nesting,
    drawn_text,
    nesting_for_width,
    split_blocks,
    to_html,
)
from desktop.ui.theme import DARK, LIGHT
from tests.ui.conftest import send, window_on_standin

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*alt="([^"]*)"')

LIST40 = "Outline:\n\n" + "\n".join("  " * i + f"- level{i} item with words" for i in range(40)) + "\n\nAfter the list."
QUOTE30 = "Quote 30:\n\n" + ">" * 30 + " thirty deep quote text that is long enough to wrap a little bit\n\nAfter the quote."
LIST12 = "\n".join("  " * i + f"- level{i} item with a few words of text here" for i in range(12))
NUMBERED = "\n".join("   " * i + f"1. step{i} of the plan" for i in range(8)) + "".join(
    f"\n{'   ' * 8}{n}. last{n} of the plan" for n in (1, 2, 3))
DEEP = f"{LIST40}\n\n{QUOTE30}\n\n{LIST12}\n\n{NUMBERED}\n\nThe end."


def lines_past(label: QLabel) -> list[tuple[str, float]]:
    """Each line of a label's text whose right edge lies past the label's width, as Qt lays the
    label's rich text out at that width: (the line's text, its right edge in px)."""
    width = label.contentsRect().width()
    document = QTextDocument()
    document.setDefaultFont(label.font())
    document.setDocumentMargin(0)
    document.setHtml(label.text())
    document.setTextWidth(width)
    layout = document.documentLayout()
    past = []
    block = document.begin()
    while block.isValid():
        box = layout.blockBoundingRect(block)
        lines = block.layout()
        for i in range(lines.lineCount()):
            line = lines.lineAt(i)
            right = box.x() + line.x() + line.naturalTextWidth()
            text = block.text()[line.textStart():line.textStart() + line.textLength()]
            if text.strip() and right > width + 1:
                past.append((text, right))
        block = block.next()
    return past


def shown(label: QLabel) -> str:
    document = QTextDocument()
    document.setHtml(label.text())
    return document.toPlainText().replace("\u200b", "").replace("\xa0", " ")


@pytest.mark.parametrize(("width", "dark"), [(800, False), (800, True), (1100, False)],
                         ids=["800-light", "800-dark", "1100-light"])
def test_deep_lists_and_quotes_keep_every_item_inside_the_column(qtbot, make_window, standin, shots_dir,
                                                                  width, dark):
    window = window_on_standin(make_window, dark)
    window.resize(width, 720)
    standin.next = ["drip:0.005"]
    standin.scripts = [[{"content": DEEP[i:i + 60]} for i in range(0, len(DEEP), 60)]]
    answer = send(qtbot, window, "A deep outline, please.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    qtbot.wait(100)
    name = f"deep-nesting-{width}-{'dark' if dark else 'light'}"
    bar = window.message_list.verticalScrollBar()
    for page in range(3):
        bar.setValue(bar.maximum() * page // 2)
        qtbot.wait(50)
        window.grab().save(str(shots_dir / f"{name}-p{page}.png"))
    viewport = window.message_list.viewport()
    labels = answer.body.labels()
    seen = "\n".join(shown(label) for label in labels)
    for i in range(40):  # every item, in order
        assert f"level{i} item with words" in seen, i
    assert [int(n) for n in re.findall(r"level(\d+) item with words", seen)] == list(range(40))
    assert "thirty deep quote text that is long enough to wrap a little bit" in seen
    assert [int(n) for n in re.findall(r"step(\d+) ", seen)] == list(range(8))
    # Items drawn past the deepest level: each on a line of its own, numbered items keep their numbers.
    assert "\n1. step6 of the plan\n1. step7 of the plan\n1. last1 of the plan\n2. last2 of the plan\n" in seen
    assert "\n\u2022 level6 item with words\n\u2022 level7 item with words\n" in seen
    assert "\n\u2022 level38 item with words\n\u2022 level39 item with words" in seen
    for label in labels:
        right = label.mapTo(viewport, label.rect().topRight()).x()
        assert right <= viewport.width(), right
        assert lines_past(label) == []  # no word cut at the column's edge ("words" drawn "word")


def test_a_quote_3000_deep_is_one_short_block_not_a_screenful_of_margins(qtbot, make_window, standin,
                                                                         shots_dir):
    window = window_on_standin(make_window)
    window.resize(800, 720)
    text = "Nesting bomb:\n\n" + ">" * 3000 + " deep quote\n\nAfter."
    standin.scripts = [[{"content": text}]]
    answer = send(qtbot, window, "A bomb.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    qtbot.wait(100)
    seen = "\n".join(shown(label) for label in answer.body.labels())
    window.grab().save(str(shots_dir / "deep-nesting-bomb-800.png"))
    assert "deep quote" in seen and "After." in seen
    # Three quotes drawn; the ">" past mistune's PARSED_NESTING levels are text, wrapped at 24
    # characters (~120 short lines): about 2,000 px, where 3,000 quotes drawn took ~80,000.
    assert answer.body.height() < 2500, answer.body.height()
    for label in answer.body.labels():
        assert lines_past(label) == []


def test_ordinary_nesting_is_drawn_as_before():
    ordinary = ("- one\n  - two\n    - three\n      - four\n\n> quoted\n> > quoted twice\n\n"
                "1. first\n   1. second\n      - third\n")
    rich = str(to_html(ordinary))
    assert cap_nesting(rich) == rich
    assert rich.count("<ul>") == 5 and rich.count("<blockquote>") == 2 and rich.count("<ol>") == 2


def test_lists_in_quotes_count_both_and_flatten_in_order():
    text = "> > > - a\n>   >   >   - b\n" + "".join("> > > " + "  " * (i + 1) + f"- c{i}\n" for i in range(3))
    rich = to_html(text)
    assert rich.count("<blockquote>") == 3  # 6 levels: a quote counts two (its two margins)
    assert "<ul>" not in rich
    document = QTextDocument()
    document.setHtml(rich)
    assert re.findall(r"c\d", document.toPlainText()) == ["c0", "c1", "c2"]


RLO, PDF, LRI, PDI, RLM = "\u202e", "\u202c", "\u2066", "\u2069", "\u200f"
BIDI = (f"Download abc{RLO}evil.exe{PDF}.txt now; or abc&#x202E;exe.txt&#x202C; by entity.\n\n"
        f"Inline `run {RLO}gpj.exe` code and a [link {RLO}txt.exe](https://example.com/{RLO}a) "
        f"and [a file](/tmp/{RLO}fdp.exe) and $x_{{{RLO}ab}}$.\n\n"
        f"| file | note |\n|---|---|\n| abc{RLO}fdp.exe | x |\n\n"
        f"```python\naccess = 'user{RLO} {LRI}# admin{PDI}'\n```\n\n"
        f"Hebrew שָׁלוֹם and Arabic مرحبا بالعالم, an isolate {LRI}abc{PDI} and a mark {RLM}.")


def test_bidi_overrides_are_taken_out_of_everything_drawn_and_copied(qtbot, make_window, standin, shots_dir):
    window = window_on_standin(make_window)
    window.resize(800, 720)
    standin.next = ["drip:0.01"]
    standin.scripts = [[{"content": BIDI[i:i + 7]} for i in range(0, len(BIDI), 7)]]
    answer = send(qtbot, window, "Files?")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    body = answer.body
    drawn = body.text()
    for control in "\u202a\u202b\u202c\u202d\u202e":
        assert control not in drawn and control.encode("utf-8").hex() not in drawn
    for html_escape in ("&#x202e;", "&#8238;", "%E2%80%AE", "%e2%80%ae"):
        assert html_escape not in drawn.lower()
    seen = "\n".join(shown(label) for label in body.labels())
    assert "abcevil.exe.txt" in seen and "abcexe.txt by entity" in seen
    assert "run gpj.exe" in seen and "link txt.exe" in seen and "(/tmp/fdp.exe)" in seen
    # Right-to-left text, the isolates and the marks are kept.
    assert "שָׁלוֹם" in seen and "مرحبا بالعالم" in seen and f"{LRI}abc{PDI}" in seen and RLM in seen
    [table] = body.table_blocks()
    assert "abcfdp.exe" in table.toPlainText()
    [code] = body.code_blocks()
    assert code.view.toPlainText() == f"access = 'user {LRI}# admin{PDI}'"
    code.copy_code()  # copied as drawn
    assert QGuiApplication.clipboard().text() == f"access = 'user {LRI}# admin{PDI}'"
    label = body.labels()[0]
    at = QPoint(5, 5)  # Select all, from the label's menu, then Ctrl+C
    QApplication.sendEvent(label, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, at, label.mapToGlobal(at)))
    menu = [m for m in label.findChildren(QMenu, "AnswerMenu") if m.isVisible()][-1]
    menu.actions()[1].trigger()
    menu.close()
    label.setFocus()
    qtbot.keyClick(label, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert "abcevil.exe.txt" in QGuiApplication.clipboard().text()
    assert RLO not in QGuiApplication.clipboard().text()
    window.grab().save(str(shots_dir / "bidi-800.png"))


def test_drawn_text_keeps_real_scripts_and_cuts_piles_of_marks():
    for real in ("Nguye\u0323\u0302n Nguyễn", "हिन्दी क़िं", "བསྒྲུབས", "בְּרֵאשִׁ֖ית", "กุ้ง", "مُحَمَّدٌ",
                 "1\ufe0f\u20e3", "👩🏽‍💻", "Ａ", "plain ascii", f"isolate {LRI}x{PDI}"):
        assert drawn_text(real) == real, real
    zalgo = "Z" + "\u0336\u0321" * 50 + "a" + "\u0301\u200d" * 30 + "l"
    cut = drawn_text(zalgo)
    assert cut.startswith("Z\u0336\u0321\u0336\u0321a\u0301\u200d\u0301\u200d\u0301\u200d\u0301")
    assert cut.endswith("l") and len(cut) < 30
    assert drawn_text("x" + "\u0301" * (MAX_MARKS + 1)) == "x" + "\u0301" * MAX_MARKS
    # The entity route is cut too.
    assert to_html("a" + "&#x301;" * 60 + "b").count("\u0301") == MAX_MARKS
    assert split_blocks("```\nx" + "\u0300" * 40 + "\n```")[0].text == "x" + "\u0300" * MAX_MARKS


def inked_pixel(colour: QColor, background: QColor) -> bool:
    return (abs(colour.red() - background.red()) + abs(colour.green() - background.green())
            + abs(colour.blue() - background.blue())) > 90


def test_zalgo_stays_on_its_own_line(qtbot, make_window, standin, shots_dir):
    window = window_on_standin(make_window)
    window.resize(800, 720)
    # Marks that differ stack (the font places each on the one before: mark-to-mark); a hundred
    # of one mark are drawn on top of each other.
    zalgo = "Z" + "".join(chr(c) for c in range(0x300, 0x370)) + "\u0310" * 100 + "algo"
    standin.scripts = [[{"content": f"Line above.\n\n{zalgo} world\n\nLine below."}]]
    answer = send(qtbot, window, "Zalgo?")
    qtbot.waitUntil(lambda: not window.answering, timeout=30_000)
    qtbot.wait(50)
    [label] = answer.body.labels()
    window.grab().save(str(shots_dir / "zalgo-800.png"))
    image = label.grab().toImage()
    background = QColor(window.theme.window)
    inked = [y for y in range(image.height()) if any(inked_pixel(image.pixelColor(x, y), background) for x in range(14))]
    # Down the column of the first letter: the "L" above, the "Z" with its marks, the "L"
    # below (~30 rows of ink). A hundred marks on the Z fill ~80 rows, over both lines.
    line = label.fontMetrics().lineSpacing()
    assert len(inked) < 4 * line, (len(inked), line)
    assert f"Z{chr(0x300)}{chr(0x301)}{chr(0x302)}{chr(0x303)}algo world" in shown(label)


def picture_colours(rich: str) -> set[str]:
    """The colours of every solid pixel of every typeset formula in `rich`."""
    colours = set()
    for data, _ in IMG.findall(rich):
        image = QImage.fromData(base64.b64decode(data))
        for y in range(image.height()):
            for x in range(image.width()):
                c = image.pixelColor(x, y)
                if c.alpha() == 255:
                    colours.add(c.name())
    return colours


@pytest.mark.parametrize("theme", [LIGHT, DARK], ids=["light", "dark"])
@pytest.mark.parametrize("latex", [
    "\\textcolor{white}{hidden}", "\\color{red}{RED} x", "\\colorbox{red}{boxed}", "\\fcolorbox{red}{blue}{framed}",
    "\\style{color:red; background:white}{styled}", "\\color{#f7f7f8} same as the page",
    "a + \\textcolor{white}{\\frac{b}{c}}",
])
def test_a_formula_is_drawn_in_the_themes_text_colour_only(qapp, latex, theme):
    for rich in (to_html(f"Before \\({latex}\\) after.", code_bg=theme.code_bg, muted=theme.muted),
                 LiveMarkdown(code_bg=theme.code_bg, muted=theme.muted).render(f"Streaming \\({latex}\\)")):
        deadline = time.monotonic() + 5
        while not IMG.search(rich) and time.monotonic() < deadline:  # the worker's first formula
            time.sleep(0.05)
            rich = to_html(f"Before \\({latex}\\) after.", code_bg=theme.code_bg, muted=theme.muted)
        [(_, source)] = IMG.findall(rich)
        assert source.replace("&#x27;", "'") == latex.replace("&", "&amp;")
        assert picture_colours(rich) == {theme.text}, latex


def test_size_and_space_commands_cannot_shrink_or_push_a_formula_out_of_sight(qapp):
    from desktop.ui import math_render

    em, half_x = math_render.text_metrics()

    def picture(latex: str):
        deadline = time.monotonic() + 5
        while True:
            image = math_render.render(latex, False, LIGHT.text, round(em, 2), half_x, 1.0)
            if image is not None or time.monotonic() > deadline:
                return image
            time.sleep(0.05)

    plain = picture("hidden")
    assert plain is not None
    for latex in ("\\tiny hidden", "\\Huge hidden"):
        image = picture(latex)
        assert image is not None and abs(image.height - plain.height) < 2, latex  # at the text's size
    small = picture("\\scriptscriptstyle hidden")  # TeX's smallest style: half the text, no smaller
    assert small is not None and small.height >= 0.6 * plain.height
    tower = picture("x^{x^{x^{x^{x^{x}}}}}")
    assert tower is not None and tower.height < 3 * plain.height
    for latex in ("a\\hspace{-10em}hidden", "a\\kern-30em hidden", "\\raise{9em}{hidden}",
                  "\\mspace{-200mu}hidden"):
        image = picture(latex)
        assert image is not None and image.width >= plain.width and image.height < 2 * plain.height, latex
    assert picture("a\\!b") is not None and picture("\\phantom{x}y") is not None  # TeX's own spacing stays


def test_cleaning_costs_about_a_millisecond_for_100_000_characters():
    words = "Plain words, some café and naïve, a list item, `code`, Ελληνικά, हिन्दी and 🙂. "
    text = (words * (100_000 // len(words) + 1))[:100_000]
    drawn_text("é\u0301")  # the table of marks, built once
    times = []
    for _ in range(5):
        start = time.perf_counter()
        drawn_text(text)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.01, times


@pytest.mark.parametrize("width", [260, 420, 700])
def test_a_narrow_compare_column_draws_fewer_levels_and_keeps_every_item(qtbot, make_window, standin, services,
                                                                         shots_dir, width):
    window = window_on_standin(make_window)
    standin.scripts = [[{"content": DEEP}]]
    send(qtbot, window, "A deep outline, please.")
    qtbot.waitUntil(lambda: not window.answering, timeout=30_000)
    column = ColumnView(window.theme)
    qtbot.addWidget(column)
    column.resize(width, 900)
    column.show()
    column.show_turns("A", services.store.messages(window.current_id))
    qtbot.wait(50)
    answer = column.answers()[-1]
    assert answer._nesting == nesting_for_width(answer.width()) <= MAX_NESTING
    seen = "\n".join(shown(label) for label in answer.labels())
    assert [int(n) for n in re.findall(r"level(\d+) item with words", seen)] == list(range(40))
    assert [int(n) for n in re.findall(r"last(\d+) of", seen)] == [1, 2, 3]
    for label in answer.labels():
        assert label.width() <= answer.width()
        assert lines_past(label) == []
    column.grab().save(str(shots_dir / f"deep-nesting-compare-{width}.png"))
    if width == 260:  # made wider, it draws more levels again
        column.resize(900, 900)
        qtbot.waitUntil(lambda: answer._nesting == MAX_NESTING, timeout=2000)
        assert all(lines_past(label) == [] for label in answer.labels())
