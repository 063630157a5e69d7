"""Shared pieces of the benchmarks: the machine's description, medians, percentiles, results file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def results_path(quick: bool = False) -> Path | None:
    """Where a benchmark saves its figures: HEARTH_BENCH_RESULTS when set (the suite sets it), else
    tests/bench/results.json; a --quick run alone saves nothing, so it never replaces real figures."""
    named = os.environ.get("HEARTH_BENCH_RESULTS")
    if named:
        return Path(named)
    return None if quick else RESULTS


def machine() -> dict[str, object]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "llama_cpp_python": version("llama-cpp-python"),
        "pyside6": version("PySide6-Essentials"),
    }


def machine_line() -> str:
    """What every benchmark prints first: the machine and the versions its figures belong to."""
    m = machine()
    return (f"Machine: {m['cpu']}, {m['physical_cores']} cores, {m['ram_gb']} GB; Python {m['python']}, "
            f"llama-cpp-python {m['llama_cpp_python']}, PySide6 {m['pyside6']}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def row(figure: str, hearth: float, reference: float | None = None, *, reference_name: str = "",
        target: str = "", met: bool | None = None, digits: int = 1, ratio_of: str = "hearth/reference") -> dict:
    """One line of the results table: Hearth's figure, the reference measured in the same run, their
    ratio, the target and whether it was met (None: no target)."""
    ratio = None
    if reference not in (None, 0) and hearth == hearth:  # not NaN
        ratio = round(hearth / reference, 3)
    return {"figure": figure, "hearth": round(hearth, digits), "reference": None if reference is None else
            round(reference, digits), "reference_name": reference_name, "ratio": ratio, "target": target,
            "met": met}


def save(section: str, data: dict[str, object], rows: list[dict], *, quick: bool = False) -> None:
    """Put one benchmark's figures (and its lines of the results table) into the results file."""
    path = results_path(quick)
    if path is None:
        return
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine()
    results[section] = {**data, "quick": quick, "rows": rows}
    path.write_text(json.dumps(results, indent=2) + "\n")


class Lateness:
    """How late a 10 ms timer on the GUI thread fires: the time the window could not answer a
    click or draw a frame. Start it, do the work, stop it, read `late` (ms per tick)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.interval_ms = interval_ms
        self.late: list[float] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer(interval=interval_ms)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._last = 0

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed()
        self.late.append(max(0.0, (now - self._last) / 1e6 - self.interval_ms))
        self._last = now

    def start(self) -> None:
        self.late = []
        self._clock.start()
        self._last = 0
        self._timer.start()

    def stop(self) -> list[float]:
        self._timer.stop()
        return self.late


def open_window(services):
    """The real main window on a qasync loop, as the app opens it: (app, loop, window)."""
    import asyncio

    import qasync
    from PySide6.QtWidgets import QApplication

    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
    theme = apply_theme(app, dark=False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(services, theme, preload_model=False)
    window.resize(1100, 720)
    window.show()
    return app, loop, window
