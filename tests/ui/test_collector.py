"""Garbage that holds widgets is freed on the window's thread, whichever thread made it garbage."""

from __future__ import annotations

import gc
import threading
import weakref


def test_cycles_dropped_in_another_thread_are_freed_on_the_gui_thread(qtbot, qapp):
    assert not gc.isenabled()  # the session runs with the app's collector (tests/ui/conftest.py)
    freed_on: list[str] = []

    class Node:
        pass

    def make_garbage() -> None:
        # Cycles, as a widget and a lambda connected to its signal make: far more than the first
        # generation's threshold, so Python would collect them here, in this thread.
        for i in range(5_000):
            a, b = Node(), Node()
            a.other, b.other = b, a
            if i < 3:
                weakref.finalize(a, lambda: freed_on.append(threading.current_thread().name))

    worker = threading.Thread(target=make_garbage, name="worker")
    worker.start()
    worker.join()
    assert freed_on == []  # nothing was collected in the worker
    qtbot.waitUntil(lambda: len(freed_on) == 3, timeout=5_000)
    assert set(freed_on) == {threading.main_thread().name}
