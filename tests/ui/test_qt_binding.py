"""Guards against a Qt binding that corrupts Python's reference counts.

PySide6 6.12.0 on Python 3.11 drops a reference to None on every call of a method that returns
nothing (widget.setVisible, label.setText...), so after enough calls Python aborts with
"deallocating None": the app dies in the middle of a chat. Python 3.12+ hides this (None is
immortal there); Hearth supports 3.11, so the pinned binding must be clean.
"""

import sys

import pytest
from PySide6.QtWidgets import QLabel


@pytest.mark.parametrize("name, call", [
    ("setVisible", lambda label: label.setVisible(True)),
    ("setText", lambda label: label.setText("x")),
    ("isVisible", lambda label: label.isVisible()),
    ("wordWrap", lambda label: label.wordWrap()),
])
def test_qt_calls_leave_none_true_and_false_alone(qapp, name, call):
    label = QLabel()
    before = [sys.getrefcount(obj) for obj in (None, True, False)]
    for _ in range(5000):
        call(label)
    after = [sys.getrefcount(obj) for obj in (None, True, False)]
    losses = [b - a for a, b in zip(after, before, strict=True)]
    assert all(loss < 100 for loss in losses), f"{name} loses references: {losses}"
