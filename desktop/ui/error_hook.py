"""Every error nobody caught, from a Qt slot, a thread or the asyncio loop, becomes one sentence in
the window and a log entry with its traceback in the data folder's log; never a traceback on the
terminal."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType

from desktop.core.errors import HearthError
from desktop.core.store import DatabaseBusy

log = logging.getLogger(__name__)

DATABASE_BUSY = "Hearth's database is in use by another program; try again when it is free."


def sentence(exc: BaseException, log_file: str) -> str:
    """What the user reads about `exc`: a Hearth error's own sentence, a locked database's, or that
    something went wrong, nothing is lost, and where the details are."""
    if isinstance(exc, DatabaseBusy):
        return DATABASE_BUSY
    if isinstance(exc, HearthError):
        return str(exc)
    return (f"Something went wrong inside Hearth ({type(exc).__name__}). Nothing you wrote is lost. "
            f"The details are in {log_file}.")


def install_error_hook(window) -> Callable[[], None]:
    """Route uncaught errors to `window.notify(sentence)` and the log: sys.excepthook (Qt slots and
    virtual methods end there), threading.excepthook (a worker's, shown on the GUI thread) and the
    running asyncio loop's exception handler. Returns a function that puts the previous hooks back.
    KeyboardInterrupt keeps Python's own handling."""
    from PySide6.QtCore import QObject, Signal

    log_file = str(window.services.paths.logs / "hearth.log")

    class ToGuiThread(QObject):
        said = Signal(str)

    relay = ToGuiThread()
    relay.said.connect(lambda text: window.notify(text))

    def report(kind: type[BaseException], exc: BaseException, tb: TracebackType | None, where: str) -> None:
        if isinstance(exc, DatabaseBusy):
            log.warning("%s: %s", where, exc)
        else:
            log.error("uncaught error (%s)", where, exc_info=(kind, exc, tb))
        relay.said.emit(sentence(exc, log_file))  # queued when it comes from another thread

    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous_hook(kind, exc, tb)
            return
        report(kind, exc, tb, "in the window")

    previous_thread_hook = threading.excepthook

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        report(args.exc_type, args.exc_value, args.exc_traceback, f"in thread {getattr(args.thread, 'name', '?')}")

    loop = None
    previous_loop_handler = None
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
        previous_loop_handler = loop.get_exception_handler()
    except RuntimeError:  # no loop in this thread
        loop = None

    def loop_handler(_loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if exc is None:
            log.error("asyncio: %s", context.get("message"))
            return
        report(type(exc), exc, exc.__traceback__, f"asyncio: {context.get('message', '')}")

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    if loop is not None:
        loop.set_exception_handler(loop_handler)

    def uninstall() -> None:
        sys.excepthook = previous_hook
        threading.excepthook = previous_thread_hook
        if loop is not None and not loop.is_closed():
            loop.set_exception_handler(previous_loop_handler)
        relay.deleteLater()

    window._error_relay = relay  # lives as long as the window
    return uninstall
