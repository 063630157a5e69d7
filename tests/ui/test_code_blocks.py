"""Code blocks and wide tables in answers, in the real window against a scripted stand-in server:
code is coloured in the theme's style, has its language and a copy button that copies it exactly,
long code lines and wide tables scroll sideways inside their own block, and a narrow window cuts
nothing of any message out of reach."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QWheelEvent
from PySide6.QtWidgets import QApplication

from desktop.ui.answer_view import CodeBlock, LongProse, TableBlock
from desktop.ui.markdown import CODE, PROSE, TABLE, split_blocks
from tests.ui.conftest import send, window_on_standin

CODE_TEXT = (
    "def greet(name: str) -> str:\n"
    "    # say hello\n"
    "    return f\"Hello, {name}!\" + \"" + "a long string that runs on " * 8 + "\"\n"
    "\n"
    "\tprint(greet('world'))  # a tab before"
)
WIDE_TABLE = ("| " + " | ".join(f"Column {c}" for c in range(30)) + " |\n|" + "---|" * 30 + "\n"
              + "\n".join("| " + " | ".join(f"r{r} c{c}" for c in range(30)) + " |" for r in range(4)) + "\n")
ANSWER = f"Here is a function:\n\n```python\n{CODE_TEXT}\n```\n\nAnd a wide table:\n\n{WIDE_TABLE}\nThat is all."


def _script(standin, text: str, size: int = 11) -> None:
    standin.next = ["drip:0.01"]
    standin.scripts = [[{"content": text[i:i + size]} for i in range(0, len(text), size)]]


def _settle(qtbot) -> None:
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(20)


def test_an_answer_splits_into_prose_code_and_tables_that_join_back():
    blocks = split_blocks(ANSWER)
    assert [b.kind for b in blocks] == [PROSE, CODE, PROSE, TABLE, PROSE]
    assert blocks[1].text == CODE_TEXT and blocks[1].language == "python" and blocks[1].closed
    assert blocks[3].text == WIDE_TABLE
    streaming = split_blocks("Look:\n\n~~~js\nlet a = 1\n```\nstill code")
    assert streaming[-1] == streaming[-1].__class__(CODE, "let a = 1\n```\nstill code", "js", closed=False)
    assert [b.kind for b in split_blocks("- item\n\n    ```\n    indented\n    ```\n")] == [PROSE]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_code_is_coloured_labelled_and_copied_exactly_and_a_wide_table_scrolls(
        qtbot, make_window, standin, shots_dir, dark):
    window = window_on_standin(make_window, dark)
    window.resize(1100, 800)
    _script(standin, ANSWER)
    answer = send(qtbot, window, "Show me code and a table.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    assert answer.text == ANSWER
    _settle(qtbot)
    width_before = window.width()
    [block] = answer.body.code_blocks()
    assert isinstance(block, CodeBlock)
    assert block.language_label.text() == "python"
    assert block.view.toPlainText() == CODE_TEXT

    # Highlighting: keywords, comments and strings are drawn in different colours.
    qtbot.waitUntil(lambda: block._lexing is None, timeout=5_000)
    colours = {}
    first = block.view.document().firstBlock()
    for line in (first, first.next()):
        for form in line.layout().formats():
            text = line.text()[form.start:form.start + form.length]
            colours[text.strip()] = form.format.foreground().color().name()
    assert colours["def"] != colours["# say hello"]
    assert len(set(colours.values())) >= 2

    # The copy button: the exact code, no invisible characters, and it says so.
    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(block.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == CODE_TEXT
    assert "\u200b" not in QGuiApplication.clipboard().text()
    assert block.copy_button.text() == "Copied"

    # The long code line scrolls sideways inside its block; the message column stays put.
    bar = block.view.horizontalScrollBar()
    assert bar.maximum() > 0 and block.view.isVisible()
    bar.setValue(bar.maximum())
    assert block.width() <= window.message_list.column.width()

    # The wide table scrolls sideways to its last column; the window does not grow.
    [table] = answer.body.table_blocks()
    assert isinstance(table, TableBlock)
    tbar = table.horizontalScrollBar()
    assert tbar.isVisible() and tbar.maximum() > 0
    assert table.width() <= window.message_list.column.width()
    tbar.setValue(tbar.maximum())
    _settle(qtbot)
    seen_right = table.document().toPlainText()
    assert "Column 29" in seen_right and "r3 c29" in seen_right
    assert window.width() == width_before
    window.grab().save(str(shots_dir / f"answer-code-table-{'dark' if dark else 'light'}.png"))


def test_at_800_px_nothing_of_any_message_is_cut_off(qtbot, make_window, standin, shots_dir):
    window = window_on_standin(make_window)
    window.resize(1200, 800)
    _script(standin, ANSWER, size=400)
    answer = send(qtbot, window, "Show me code and a table.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    window.resize(800, 700)
    _settle(qtbot)
    assert window.width() == 800
    listing = window.message_list
    viewport = listing.viewport()
    assert listing.horizontalScrollBar().maximum() == 0 or not listing.horizontalScrollBar().isVisible()
    for message in listing.widgets():
        for block in (message.body.blocks if hasattr(message.body, "blocks") else [message.body]):
            right = block.mapTo(viewport, block.rect().topRight()).x()
            assert right <= viewport.width(), (type(block).__name__, right, viewport.width())
    [code] = answer.body.code_blocks()
    [table] = answer.body.table_blocks()
    for view in (code.view, table):  # what does not fit is reachable by its own scroll bar
        assert view.horizontalScrollBar().maximum() > 0
    window.grab().save(str(shots_dir / "answer-code-table-800px.png"))


def test_a_code_block_streams_in_and_ends_coloured(qtbot, make_window, standin):
    window = window_on_standin(make_window)
    text = "Counting:\n\n```python\n" + "".join(f"x{i} = {i}  # n\n" for i in range(40)) + "```\n\nDone."
    _script(standin, text, size=7)
    answer = send(qtbot, window, "Count.")
    seen_growing = []
    qtbot.waitUntil(lambda: (seen_growing.append(len(answer.body.code_blocks()) and
                                                  answer.body.code_blocks()[0].view.toPlainText().count("\n"))
                             or not window.answering), timeout=60_000)
    assert any(isinstance(n, int) and 0 < n < 39 for n in seen_growing)  # seen part-written
    _settle(qtbot)
    [block] = answer.body.code_blocks()
    assert block.code == "".join(f"x{i} = {i}  # n\n" for i in range(40)).rstrip("\n")
    assert block.view.toPlainText() == block.code
    assert "Done." in answer.body.text()
    # Coloured to its last line once it has all come in (the comment in a colour of its own).
    qtbot.waitUntil(lambda: block._lexing is None and not block._again_timer.isActive(), timeout=5_000)
    last = block.view.document().lastBlock()
    assert any(last.text()[f.start:f.start + f.length] == "# n" for f in last.layout().formats())


def test_a_very_long_answer_is_drawn_by_a_view_that_lays_it_out_once(qtbot, make_window, standin):
    window = window_on_standin(make_window)
    text = ("word " * 21_000)[:100_000]
    standin.scripts = [[{"content": text}]]
    answer = send(qtbot, window, "Go on.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    _settle(qtbot)
    [view] = answer.body.blocks
    assert isinstance(view, LongProse)
    assert view.width() <= window.message_list.column.width()
    assert view.height() > 2000  # as tall as its text: the chat scrolls it, not a box of its own



def test_turning_the_wheel_over_code_or_a_table_scrolls_the_chat(qtbot, make_window, standin):
    window = window_on_standin(make_window)
    window.resize(1000, 600)
    long_code = "```python\n" + "".join(f"line_{i} = {i}  # " + "x" * 150 + "\n" for i in range(60)) + "```\n"
    standin.scripts = [[{"content": long_code + "\n" + WIDE_TABLE + "\n" + "More words. " * 200}]]
    answer = send(qtbot, window, "Lots, please.")
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    _settle(qtbot)
    listing = window.message_list
    [block] = answer.body.code_blocks()
    [table] = answer.body.table_blocks()
    for view in (block.view, table):
        listing.ensureWidgetVisible(view, 0, 0)
        _settle(qtbot)
        bar = listing.verticalScrollBar()
        before, sideways = bar.value(), view.horizontalScrollBar().value()
        viewport = view.viewport()
        at = QPointF(viewport.rect().center())
        QApplication.sendEvent(viewport, QWheelEvent(
            at, QPointF(viewport.mapToGlobal(at.toPoint())), QPoint(), QPoint(0, -240), Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False))
        assert bar.value() > before, type(view).__name__  # the chat moved on
        assert view.horizontalScrollBar().value() == sideways and view.verticalScrollBar().value() == 0
        QApplication.sendEvent(viewport, QWheelEvent(
            at, QPointF(viewport.mapToGlobal(at.toPoint())), QPoint(), QPoint(-240, 0), Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False))
        assert view.horizontalScrollBar().value() > sideways  # a sideways turn scrolls the block
