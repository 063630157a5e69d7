"""A 100,000-character paste on one line in the real window's composer: it stays editable, every
character typed after it lands, and the message sent (and saved) is exactly what the user wrote.
How long each step holds the window is measured by tests/bench/smooth.py (paste rows), not here."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextOption

from tests.ui.conftest import window_on_standin

PASTED = "x" * 100_000  # one word with no space: a minified file, a base64 blob


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_a_100k_character_paste_and_the_keys_typed_after_it_are_sent_exactly(qtbot, make_window, standin, services,
                                                                               qapp, shots_dir, dark):
    window = window_on_standin(make_window, dark)
    qtbot.waitUntil(window.hidden_parts_built)  # built just after the first drawing: not the paste's time
    box = window.composer.input
    box.setFocus()
    QGuiApplication.clipboard().setText(PASTED)
    held = []
    started = time.perf_counter()
    qtbot.keyClick(box, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)  # Ctrl+V, as the user pastes
    qapp.processEvents()
    held.append(time.perf_counter() - started)
    typed = "and then"
    for key in typed:
        started = time.perf_counter()
        qtbot.keyClick(box, key)
        qapp.processEvents()
        held.append(time.perf_counter() - started)
    for _ in range(20 - len(typed)):
        started = time.perf_counter()
        qtbot.keyClick(box, Qt.Key.Key_Exclam)
        qapp.processEvents()
        held.append(time.perf_counter() - started)
    expected = PASTED + typed + "!" * (20 - len(typed))
    assert box.toPlainText() == expected
    assert box.wordWrapMode() == QTextOption.WrapMode.WrapAnywhere  # the long run breaks anywhere
    assert box.height() < window.height() / 3  # grows a few lines, then scrolls
    print("holds, ms:", [round(h * 1000) for h in held])  # the figure is the bench's
    window.grab().save(str(shots_dir / f"long-paste-{'dark' if dark else 'light'}.png"))

    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.answering, timeout=15_000)
    assert box.toPlainText() == ""
    assert box.wordWrapMode() == QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere  # ordinary lines again
    assert standin.seen[-1].body["messages"][-1]["content"] == expected  # what the model was sent
    [question] = [m for m in services.store.messages(window.current_id) if m.role == "user"]
    assert question.content == expected  # what was saved


def test_ordinary_prose_still_wraps_at_word_ends(qtbot, window):
    box = window.composer.input
    box.setFocus()
    QGuiApplication.clipboard().setText("A long paragraph of ordinary words. " * 3_000)
    qtbot.keyClick(box, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert box.wordWrapMode() == QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere
