"""The GUI's composition root: build the core services, then the main window, on a qasync loop."""

from __future__ import annotations

import asyncio
import sys


def run_app(*, self_test: bool = False) -> int:
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
    window = MainWindow(services, theme, preload_model=not self_test)
    window.show()
    code = 0
    if self_test:
        from desktop.ui.self_test import schedule_self_test

        result = schedule_self_test(window)
    with loop:
        loop.run_forever()
    if self_test:
        code = result.code
    services.close()
    return code
