"""Drawing long answers: the GUI stall while the chat's message list (offscreen) shows
(a) a 100,000-character answer on one line, (b) a 500-line Python code block and (c) a table of
30 columns and 20 rows, each beside a reference: a bare widget showing the same text (a wrapping
QLabel, a QPlainTextEdit, a QLabel with the table). Each draw is a new message widget added to
the list, as when the answer first shows or the chat is opened again. The figure is the longest
pass of the GUI thread's event loop while the message is built, laid out and drawn (until the
list has been quiet for a while), the longest stall of each draw; median of the runs, with the
spread. Target: under 50 ms.

Usage: python tests/bench/render.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import Lateness, machine_line, median, row, save  # noqa: E402

WORDS = ("heat", "pump", "moves", "warmth", "from", "outside", "air", "into", "the", "house", "even", "when",
         "it", "is", "cold", "compressor", "refrigerant", "efficient", "quiet", "cheap")


def long_answer(rng: random.Random) -> str:
    """100,000 characters of words on one line (one paragraph)."""
    text = " ".join(rng.choice(WORDS) for _ in range(30_000))
    return text[:100_000]


def code_answer() -> str:
    """A fenced Python block of 500 lines, some of them long."""
    lines = [f"def step_{i}(values, scale={i}):  # line {i}: " + "x" * (i % 120) for i in range(250)]
    lines += [f"    return [v * scale + {i} for v in values if v > {i % 7}]" for i in range(250)]
    return "Here is the code:\n\n```python\n" + "\n".join(lines) + "\n```\n"


def table_answer() -> str:
    """A table of 30 columns and 20 rows."""
    head = "| " + " | ".join(f"Column {c}" for c in range(30)) + " |"
    rule = "|" + "---|" * 30
    rows = ["| " + " | ".join(f"r{r} c{c}" for c in range(30)) + " |" for r in range(20)]
    return "\n".join([head, rule, *rows]) + "\n"


def stall(app, build, quiet_s: float = 0.25) -> tuple[float, object]:
    """The longest the GUI thread was held (ms) while `build` runs from the event loop and the
    list lays out and draws what it made: the longest single pass of the event loop (every
    event that was waiting, handled back to back, as a click would wait behind them), and no
    less than how late a 10 ms timer fired meanwhile."""
    from PySide6.QtCore import QTimer

    probe = Lateness()
    probe.start()
    holder: list = []
    QTimer.singleShot(20, lambda: holder.append(build()))
    longest = 0.0
    end = time.perf_counter() + quiet_s + 0.05
    while time.perf_counter() < end or not holder:
        started = time.perf_counter()
        app.processEvents()
        longest = max(longest, (time.perf_counter() - started) * 1000)
        time.sleep(0.001)
    late = probe.stop()
    return max([longest, *late]), holder[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="two runs of each (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 2
    os.environ.setdefault("HEARTH_HOME", tempfile.mkdtemp(prefix="hearth-bench-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QEvent, Qt
    from PySide6.QtWidgets import QApplication, QLabel, QPlainTextEdit, QSizePolicy

    from desktop.ui.chat_view import MessageList, MessageWidget
    from desktop.ui.markdown import to_html
    from desktop.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
    theme = apply_theme(app, dark=False)
    listing = MessageList()
    listing.resize(1100, 720)
    listing.show()
    app.processEvents()
    rng = random.Random(7)
    cases = {"answer": long_answer(rng), "code": code_answer(), "table": table_answer()}

    def hearth(text: str):
        def build():
            widget = MessageWidget("assistant", theme)
            widget.set_text(text)
            listing.add(widget)
            return widget
        return build

    def reference(kind: str, text: str):
        def build():
            if kind == "code":
                widget = QPlainTextEdit()
                widget.setReadOnly(True)
                widget.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
                widget.setPlainText(text)
                widget.setMinimumHeight(600)
            else:
                widget = QLabel()
                widget.setWordWrap(kind == "answer")
                widget.setTextFormat(Qt.TextFormat.RichText if kind == "table" else Qt.TextFormat.PlainText)
                widget.setText(to_html(text) if kind == "table" else text)
                widget.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
            listing.layout_.insertWidget(listing.layout_.count(), widget)
            return widget
        return build

    def clear(widget) -> None:
        if isinstance(widget, MessageWidget):
            listing.remove(widget)
        else:
            listing.layout_.removeWidget(widget)
            widget.deleteLater()
        app.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        app.processEvents()

    figures: dict[str, dict[str, list[float]]] = {name: {"hearth": [], "reference": []} for name in cases}
    for _ in range(args.runs):  # interleaved, so both see the same machine
        for name, text in cases.items():
            for side, build in (("hearth", hearth(text)), ("reference", reference(name, text))):
                ms, widget = stall(app, build)
                figures[name][side].append(ms)
                clear(widget)
    listing.close()

    titles = {"answer": "a 100,000-character answer on one line", "code": "a 500-line code block",
              "table": "a 30-column table"}
    references = {"answer": "bare wrapping QLabel", "code": "bare QPlainTextEdit", "table": "bare QLabel"}
    print(machine_line())
    print(f"{'GUI stall to draw':44}{'Hearth, ms':>22}{'reference, ms':>22}")
    rows, data = [], {"runs": args.runs}
    for name, sides in figures.items():
        ours, theirs = median(sides["hearth"]), median(sides["reference"])
        spread = f"{min(sides['hearth']):.0f}–{max(sides['hearth']):.0f}"
        their_spread = f"{min(sides['reference']):.0f}–{max(sides['reference']):.0f}"
        print(f"{titles[name]:44}{f'{ours:.1f} ({spread})':>22}{f'{theirs:.1f} ({their_spread})':>22}")
        rows.append(row(f"GUI stall to draw {titles[name]}, ms", ours, theirs, reference_name=references[name],
                        target="< 50", met=ours < 50))
        data[name] = {"hearth_ms": [round(v, 1) for v in sides["hearth"]],
                      "reference_ms": [round(v, 1) for v in sides["reference"]],
                      "hearth_stdev_ms": round(statistics.pstdev(sides["hearth"]), 1)}
    save("render", data, rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
