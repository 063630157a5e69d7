"""Python's cycle collector, run on the window's thread only.

Left to itself the collector runs in whichever thread happens to allocate when a threshold is
crossed: a download thread, a keyring lookup in a worker, a test's stand-in server. Cycles that
hold Qt widgets (a widget and a lambda connected to one of its signals) are then destroyed off
the GUI thread, which Qt does not allow, and the app crashes later in its event loop (seen as
segmentation faults in the window tests). Here automatic collection is turned off and the same
generational thresholds are checked a few times a second from a timer on the GUI thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

CHECK_INTERVAL_MS = 250


class MainThreadCollector(QObject):
    """While it lives, cyclic garbage is collected on the thread that created it (the GUI's)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._threshold = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_INTERVAL_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds, oldest first."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._threshold[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        """Back to Python's own collection (at exit, or when a test is done with the window)."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
