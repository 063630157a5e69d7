"""The GUI's composition root: build the core services, then the main window, on a qasync loop."""

from __future__ import annotations

import asyncio
import sys
import time

# Imported only when first needed, never before the window is shown (from 0.1 s to seconds each).
HEAVY_MODULES = ("llama_cpp", "huggingface_hub", "anthropic", "numpy", "fastapi", "uvicorn", "httpx")


def run_app(*, self_test: bool = False, quit_when_shown: bool = False) -> int:
    from PySide6.QtWidgets import QApplication, QMessageBox

    from desktop.core.paths import app_paths
    from desktop.ui.single_instance import AppInstance, after_first_paint, bring_forward

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Hearth")
    app.setDesktopFileName("hearth")
    try:
        paths = app_paths()
    except OSError as exc:
        QMessageBox.critical(None, "Hearth cannot start", f"Hearth cannot make its data folders ({exc}).")
        return 1
    instance = AppInstance(paths.data)
    if not instance.claim():  # a window is open on this data folder: it comes forward instead
        busy = instance.hand_over()
        if busy is None:
            return 0
        print(busy, file=sys.stderr)
        if app.platformName() not in ("offscreen", "minimal"):  # no screen to show a dialog on
            title = "Hearth cannot start" if instance.lock_problem else "Hearth is already open"
            QMessageBox.information(None, title, busy)
        return 1
    # Only now the rest of the app: a second launch hands over without loading it.
    import qasync

    from desktop.core.errors import HearthError
    from desktop.core.services import open_services, setup_logging
    from desktop.ui.collector import MainThreadCollector
    from desktop.ui.error_hook import install_error_hook
    from desktop.ui.icons import app_icon
    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    app.setWindowIcon(app_icon())
    theme = apply_theme(app)
    collector = MainThreadCollector(app)  # Qt objects are only ever freed on this thread
    try:
        services = open_services(paths)
    except HearthError as exc:
        instance.release()
        QMessageBox.critical(None, "Hearth cannot start", str(exc))
        return 1
    setup_logging(services.paths)

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(services, theme, preload_model=not (self_test or quit_when_shown))
    uninstall_error_hook = install_error_hook(window)
    instance.show_requested.connect(lambda: bring_forward(window))
    after_first_paint(window, instance.listen)  # QtNetwork's import waits until the window is drawn
    after_first_paint(window, _warm_up_math)  # the math typesetter's import, off the GUI thread
    if not (self_test or quit_when_shown):  # the local server, when the user left it on
        after_first_paint(window, window.server.start_if_enabled)
    window.show()
    code = 0
    if quit_when_shown:  # start-up timing
        _report_start_up(app, window)
    if self_test:
        from desktop.ui.self_test import schedule_self_test

        result = schedule_self_test(window)
    with loop:
        loop.run_forever()
    if self_test:
        code = result.code
    uninstall_error_hook()
    services.close()
    instance.release()
    collector.stop()
    return code


def _report_start_up(app, window) -> None:
    """Print the process's age when the window's first drawing is done (and which heavy modules
    were imported by then), and when the parts built after it (settings panel, model manager,
    Compare) are ready too; then quit."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    shown: list[float] = []
    heavy: list[str] = []

    def age(at: float) -> float:
        import os

        import psutil

        return at - float(os.environ.get("HEARTH_LAUNCHED_AT") or psutil.Process().create_time())

    def drawn() -> None:
        shown.append(time.time())
        heavy.extend(m for m in HEAVY_MODULES if m in sys.modules)
        ready()

    def ready() -> None:
        if not window.hidden_parts_built():
            QTimer.singleShot(0, ready)
            return
        print(f"shown after {age(shown[0]):.3f} s; ready after {age(time.time()):.3f} s; "
              f"heavy modules loaded: {', '.join(heavy) or 'none'}", flush=True)
        window.close()
        app.quit()

    class FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint:
                window.removeEventFilter(self)
                QTimer.singleShot(0, drawn)  # runs once the children are drawn, in the same pass
            return False

    window._first_paint_probe = FirstPaint(window)
    window.installEventFilter(window._first_paint_probe)


def _warm_up_math() -> None:
    from desktop.ui import math_render

    math_render.warm_up()
