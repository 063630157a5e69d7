"""The GUI's composition root: build the core services, then the main window, on a qasync loop."""

from __future__ import annotations

import asyncio
import sys
import time

# Imported only when first needed, never before the window is shown (they cost seconds to import).
HEAVY_MODULES = ("llama_cpp", "huggingface_hub", "anthropic", "numpy", "fastapi", "uvicorn")


def run_app(*, self_test: bool = False, quit_when_shown: bool = False) -> int:
    import qasync
    from PySide6.QtWidgets import QApplication, QMessageBox

    from desktop.core.errors import HearthError
    from desktop.core.services import open_services, setup_logging
    from desktop.ui.icons import app_icon
    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Hearth")
    app.setDesktopFileName("hearth")
    app.setWindowIcon(app_icon())
    theme = apply_theme(app)
    try:
        services = open_services()
    except HearthError as exc:
        QMessageBox.critical(None, "Hearth cannot start", str(exc))
        return 1
    setup_logging(services.paths)

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(services, theme, preload_model=not (self_test or quit_when_shown))
    window.show()
    code = 0
    if quit_when_shown:  # start-up timing: the process's age once the window is on screen
        from PySide6.QtCore import QTimer

        def shown() -> None:
            import os

            import psutil

            launched = float(os.environ.get("HEARTH_LAUNCHED_AT") or psutil.Process().create_time())
            heavy = [m for m in HEAVY_MODULES if m in sys.modules]
            print(f"shown after {time.time() - launched:.3f} s; heavy modules loaded: {', '.join(heavy) or 'none'}",
                  flush=True)
            window.close()
            app.quit()

        QTimer.singleShot(0, shown)
    if self_test:
        from desktop.ui.self_test import schedule_self_test

        result = schedule_self_test(window)
    with loop:
        loop.run_forever()
    if self_test:
        code = result.code
    services.close()
    return code
