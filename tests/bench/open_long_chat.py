"""Time from asking the real window to open a long conversation to its first paint.

Usage: python tests/bench/open_long_chat.py [MESSAGES]   (default 2000)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(count: int) -> float:
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-bench-")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import qasync
    from PySide6.QtWidgets import QApplication

    from desktop.core.services import open_services
    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
    theme = apply_theme(app, dark=False)
    services = open_services()
    long_chat = services.store.create_conversation(title="Long")
    for i in range(count // 2):
        services.store.add_message(long_chat.id, "user", f"Question number {i}: how does this work?")
        services.store.add_message(long_chat.id, "assistant",
                                   f"Answer {i}: it works like **this**, with `code` and a list:\n\n1. one\n2. two\n")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(services, theme, preload_model=False)
    window.resize(1100, 720)
    window.show()
    other = services.store.create_conversation(title="Other")
    window.open_conversation(other.id)
    app.processEvents()
    started = time.perf_counter()
    window.open_conversation(long_chat.id)
    window.repaint()
    app.processEvents()
    elapsed = time.perf_counter() - started
    print(f"{count} messages: opened and painted in {elapsed:.2f} s "
          f"({len(window.message_list.widgets())} shown)")
    window.close()
    services.close()
    loop.close()
    return elapsed


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
