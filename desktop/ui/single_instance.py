"""One app per data folder: a lock file in the data folder says a window is open on it, and a local
socket lets a second launch ask that window to come forward instead of opening the folder twice.

The lock is Qt's QLockFile: it records the owner's process id, host and program, and a lock whose
process is gone (the app was killed, the machine lost power) is taken over at the next launch. The
socket's name is derived from the user and the data folder's resolved path, so two users, or two
data folders, never reach each other's window. CLI commands do not take the lock: they work beside
the open window (the database and the files they write are safe to share).
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import stat
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QLockFile, QObject, QSysInfo, QTimer, Signal

log = logging.getLogger(__name__)

LOCK_NAME = "hearth.lock"
# How long a second launch waits for the open window to answer before it says the folder is busy.
HANDOVER_WAIT_S = 2.0
# A lock this young belongs to a window still starting (not listening yet): it is waited for.
STARTING_S = 10.0
SHOW = b"show\n"
SHOWN = b"shown\n"


def server_name(data: Path) -> str:
    """The local socket's name for this user and data folder: 'hearth-' and 24 hex digits of the
    SHA-256 of both (a name, not a path: Qt puts it in the temporary folder, or a Windows pipe)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the uid is as good
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(f"{user}\0{Path(data).resolve()}".encode()).hexdigest()
    return f"hearth-{digest[:24]}"


class AppInstance(QObject):
    """This process's claim on a data folder.

    `claim()` takes the lock or says it is held; the holder `listen()`s and emits `show_requested`
    when another launch asks for the window; the other launch calls `hand_over()`."""

    show_requested = Signal()

    def __init__(self, data: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data = Path(data)
        self.name = server_name(self.data)
        self._lock = QLockFile(str(self.data / LOCK_NAME))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        self._server = None
        self.lock_problem = ""  # a sentence when the lock's path is not a lock file Hearth can use

    def claim(self) -> bool:
        """Take the data folder's lock; False when a live process holds it, or when something that
        is not a lock file (a folder, a link, a pipe) has the lock's name: then `lock_problem` says
        so, and `hand_over` returns that sentence at once. A lock left by a process that no longer
        runs (killed, crashed) is removed and taken."""
        if self._lock.tryLock(0):
            return True
        self.lock_problem = self._not_a_lock_file()
        if self.lock_problem:  # said once, by the launch (logging is not set up yet)
            return False
        if self._lock.error() == QLockFile.LockError.PermissionError and not (self.data / LOCK_NAME).exists():
            log.warning("cannot write the lock in %s; opening without it", self.data)
            return True  # a folder Hearth cannot write: opening the database says so in words
        return False

    def release(self) -> None:
        """Give the folder back (the window has closed)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()

    # -- the open window --------------------------------------------------------------------------
    def listen(self) -> None:
        """Answer other launches: each that sends 'show' gets the window forward and 'shown' back."""
        from PySide6.QtNetwork import QLocalServer

        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        QLocalServer.removeServer(self.name)  # a socket file left by a killed holder: ours now
        if not server.listen(self.name):
            log.warning("other launches cannot reach this window: %s", server.errorString())
            return
        server.newConnection.connect(lambda: self._answer(server))
        self._server = server
        log.info("the window is open on %s (process %d); other launches hand over to it", self.data, os.getpid())

    def _answer(self, server) -> None:
        while server.hasPendingConnections():
            socket = server.nextPendingConnection()

            def read(socket=socket) -> None:
                if not socket.canReadLine():
                    return
                if bytes(socket.readLine().data()) == SHOW:
                    log.info("another launch on this data folder asked for the window: brought it forward")
                    self.show_requested.emit()
                    socket.write(SHOWN)
                    socket.flush()
                socket.disconnectFromServer()

            socket.readyRead.connect(read)
            socket.disconnected.connect(socket.deleteLater)
            read()

    # -- a second launch --------------------------------------------------------------------------
    def hand_over(self, wait_s: float = HANDOVER_WAIT_S) -> str | None:
        """Ask the window open on this folder to come forward. None when it did; else the sentence
        to show: the lock's path is not a lock file (`lock_problem`), the folder is open in another
        user's session, on another computer, or its window does not answer within `wait_s` seconds (a window still starting, its lock younger than
        STARTING_S, is waited for until it listens)."""
        from PySide6.QtNetwork import QLocalSocket

        if self.lock_problem:
            return self.lock_problem
        started = time.monotonic()
        while True:
            socket = QLocalSocket()
            socket.connectToServer(self.name)
            if socket.waitForConnected(200):
                deadline = time.monotonic() + wait_s
                socket.write(SHOW)
                answer = b""
                while not answer.endswith(b"\n") and time.monotonic() < deadline:
                    socket.waitForBytesWritten(10)
                    if socket.waitForReadyRead(max(1, int((deadline - time.monotonic()) * 1000))):
                        answer += bytes(socket.readAll().data())
                    elif socket.state() != QLocalSocket.LocalSocketState.ConnectedState:
                        break
                socket.abort()
                return None if answer == SHOWN else self._busy_sentence()
            if time.monotonic() - started >= wait_s and not self._holder_starting():
                return self._busy_sentence()
            time.sleep(0.05)  # the window is starting and not listening yet: try again

    def _not_a_lock_file(self) -> str:
        """A sentence if the lock's path holds something other than a regular file ("" if not).
        Never removed here: a folder or a link with that name may hold someone's files."""
        path = self.data / LOCK_NAME
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return ""
        if stat.S_ISREG(mode):
            return ""
        kind = ("a folder" if stat.S_ISDIR(mode) else "a link" if stat.S_ISLNK(mode) else
                "a pipe, a socket or a device")
        return (f"{path} is {kind}, not Hearth's lock file, so Hearth cannot tell whether it is already open "
                "on this data folder; move or remove it and start Hearth again.")

    def _holder_starting(self) -> bool:
        try:
            return time.time() - (self.data / LOCK_NAME).stat().st_mtime < STARTING_S
        except OSError:
            return False

    def _busy_sentence(self) -> str:
        info = self._lock.getLockInfo()  # PySide6 gives (pid, host, program), or () when unreadable
        found = len(info) == 3 and bool(info[0])
        pid, host = (info[0], info[1]) if found else (0, "")
        lock_file = self.data / LOCK_NAME
        other_user = False
        try:
            other_user = hasattr(os, "getuid") and lock_file.stat().st_uid != os.getuid()
        except OSError:
            pass
        if found and host and host != QSysInfo.machineHostName():
            return (f"Hearth's data folder {self.data} is in use by Hearth on another computer ({host}); "
                    "close it there first.")
        if other_user:
            return (f"Hearth's data folder {self.data} is in use by another user's Hearth; "
                    "close it in that session first.")
        which = f" (process {pid})" if found else ""
        return (f"Hearth is already open on {self.data}{which} but does not answer; "
                "close it, or wait a moment, and start Hearth again.")


def after_first_paint(widget, work) -> None:
    """Run `work()` on the event loop's turn after `widget` is first drawn (so it does not delay
    the window's first appearance)."""

    class FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint:
                widget.removeEventFilter(self)
                QTimer.singleShot(0, work)
            return False

    probe = FirstPaint(widget)
    widget.installEventFilter(probe)


def bring_forward(window) -> None:
    """Show the window, restored if minimised, raised above others and active."""
    from PySide6.QtCore import Qt

    window.setWindowState((window.windowState() & ~Qt.WindowState.WindowMinimized) | Qt.WindowState.WindowActive)
    window.show()
    window.raise_()
    window.activateWindow()
