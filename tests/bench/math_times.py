"""How long typesetting a formula holds the GUI thread: first time and from the cache.

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.bench.math_times [--repeat N]

Prints, per formula, the median and the spread (min-max) over N fresh renders (the cache cleared
before each) of: how long `render` held the calling (GUI) thread, at most TYPESET_SECONDS plus
painting; how long ziamath took to typeset it (in the worker, run again to time it); and a
cached look-up (`html_img`, which also builds the <img> tag). Then the same for the worst
formulas still inside `math_render`'s bounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from PySide6.QtWidgets import QApplication

from desktop.ui import math_render
from desktop.ui.theme import LIGHT

TYPICAL = {
    "E=mc^2": "E=mc^2",
    "x^2": "x^2",
    "fraction": "\\frac{a}{b}",
    "sum": "\\sum_{i=1}^n i = \\frac{n(n+1)}{2}",
    "integral": "\\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt\\pi}{2}",
    "quadratic": "x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}",
    "matrix 2x2": "A = \\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    "aligned": "\\begin{aligned} a &= b + c \\\\ d &= e - f \\end{aligned}",
    "greek": "\\alpha + \\beta \\cdot \\gamma \\leq \\Omega",
    "limit": "\\lim_{x \\to 0} \\frac{\\sin x}{x} = 1",
}
WORST = {  # at the edge of math_render's bounds (each just inside)
    "1000 characters": "x+" * 499 + "y",
    "6 nested fractions": "\\frac{" * 6 + "1" + "}{2}" * 6,
    "6 nested roots": "\\sqrt{" * 6 + "x" + "}" * 6,
    "6 nested left-right": "\\left(" * 6 + "x" + "\\right)" * 6,
    "matrix 8x7 (60 separators)": "\\begin{pmatrix}" + "\\\\".join(["&".join(["10"] * 7)] * 8) + "\\end{pmatrix}",
    "1000 characters of commands": "\\alpha " * 142,
}


def _spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"median {statistics.median(ms):7.2f} ms  (min {min(ms):6.2f}, max {max(ms):7.2f})"


def _idle() -> None:
    """Wait until the typesetting worker has finished whatever it still runs."""
    for future in list(math_render._running.values()):
        future.exception()


def measure(formulas: dict[str, str], repeat: int, display: bool) -> None:
    em, half_x = math_render.text_metrics()
    scale = math_render.device_scale()
    size = round(em, 2) * math_render.MATH_SCALE
    for name, latex in formulas.items():
        held, worker = [], []
        for _ in range(repeat):
            _idle()
            math_render.cache_clear()
            started = time.perf_counter()
            result = math_render.render(latex, display, LIGHT.text, round(em, 2), half_x, scale)
            held.append(time.perf_counter() - started)
            _idle()
            started = time.perf_counter()
            if not math_render.too_complex(latex):
                math_render._svg(latex, display, LIGHT.text, size)
            worker.append(time.perf_counter() - started)
        cached = []
        for _ in range(repeat):
            started = time.perf_counter()
            math_render.html_img(latex, display=display, colour=LIGHT.text)
            cached.append(time.perf_counter() - started)
        shown = "typeset" if result is not None else "as written"
        print(f"  {name:27} GUI held {_spread(held)} | typesetting {_spread(worker)} | "
              f"cached {_spread(cached)} [{shown}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)
    started = time.perf_counter()
    math_render.render("w", False, LIGHT.text, 13.33, 3.5, 1.0)
    print(f"first formula of a run (imports ziamath, loads its font): {(time.perf_counter() - started) * 1000:.0f} ms")
    for display in (False, True):
        print(f"typical formulas, {'display' if display else 'inline'}:")
        measure(TYPICAL, args.repeat, display)
    print("worst formulas inside the bounds, display:")
    measure(WORST, max(3, args.repeat // 2), True)
    del app


if __name__ == "__main__":
    main()
