"""The Local server page: turn Hearth's OpenAI- and Ollama-compatible API on and off, copy its
address, choose who may reach it (port, the network with a key, web origins), and watch the
requests other apps make. `ServerSwitch` owns the running `LocalServer` for the window."""

from __future__ import annotations

import asyncio
import errno
import secrets as token_source
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from PySide6.QtCore import (
    QAbstractTableModel,
    QEventLoop,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.core import net, secrets
from desktop.core.errors import HearthError
from desktop.core.server import KEY_NAME, LOOPBACK, RequestRecord, ServerConfig, ServerError
from desktop.core.services import Services
from desktop.core.settings import ServerSettings
from desktop.core.store import StoreError
from desktop.ui.theme import Theme
from desktop.ui.widgets import confirm, muted, page_frame

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]
LOG_ROWS = 500  # the live log keeps the last this many requests, newest first
ALL_INTERFACES = "0.0.0.0"
EXAMPLE_PATH = "/v1/models"
NO_KEYRING = "kept in memory until Hearth closes (this computer has no keyring)"


def local_server(services: Services, config: ServerConfig) -> Any:
    """The real `LocalServer` (desktop/core/server), imported only when the server starts."""
    from desktop.core.server import LocalServer

    return LocalServer(services, config)


def import_server() -> None:
    """Import the server's modules (FastAPI, uvicorn: ~0.4 s the first time); called in a worker
    thread so the window does not stop while they load."""
    import importlib

    for name in ("uvicorn", "uvicorn.protocols.http.auto", "uvicorn.protocols.websockets.auto",
                 "uvicorn.lifespan.on", "desktop.core.server.app", "desktop.core.server.local"):
        importlib.import_module(name)  # what uvicorn.Config.load() would import on the loop's thread


def origin_problem(text: str) -> str:
    """"" when `text` is a web origin as browsers send it in the Origin header (RFC 6454:
    scheme://host[:port], http or https, nothing after), else a sentence saying what is wrong."""
    text = text.strip()
    example = "like http://localhost:3000"
    if not text:
        return f"Type an origin, {example}."
    if text == "*" or "*" in text:
        return f"Name each site by itself, {example}: a wildcard would let every web page use your models."
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return f"“{text}” has a port that is not a number from 1 to 65535."
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"An origin starts with http:// or https:// and names a host, {example}."
    if parts.username or parts.password or "@" in parts.netloc:
        return f"An origin has no user name or password, {example}."
    if parts.path or parts.query or parts.fragment or text.endswith(("?", "#")):
        return f"An origin is only scheme, host and port, with no path (no “/” at the end), {example}."
    if not parts.hostname or port == 0:
        return f"“{text}” names no host or port a browser could send, {example}."
    return ""


def loaded_line(m: Any) -> str:
    """"SmolLM2 (unloads in 9 min)" for one of `LocalServer.loaded()` (pool.LoadedModel: name,
    busy, shared, idle_until in seconds since the epoch)."""
    name = str(getattr(m, "name", None) or getattr(m, "id", None) or m)
    if getattr(m, "embedding", False):
        name += " · embeddings"
    if getattr(m, "busy", 0):
        return f"{name} (answering)"
    if getattr(m, "shared", False):
        return f"{name} (shared with the chat)"
    until = getattr(m, "idle_until", None)
    if until:
        minutes = max(0, round((until - time.time()) / 60))
        return f"{name} (unloads in {minutes} min)" if minutes else f"{name} (unloads in less than a minute)"
    return name


def host_port(address: str) -> str:
    """"127.0.0.1:4784" of "http://127.0.0.1:4784"."""
    return address.split("://", 1)[-1].rstrip("/")


class ServerSwitch(QObject):
    """Starts and stops the window's `LocalServer` on the event loop and says what it is doing.
    `state` is "off", "starting", "on" or "stopping"; `error` the last sentence a start or stop
    gave (""). `config` is what the running server was started with."""

    changed = Signal()
    request = Signal(object)  # a RequestRecord, on the GUI thread

    def __init__(self, services: Services, spawn: Spawn, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services, self.spawn = services, spawn
        self.server: Any = None
        self.state = "off"
        self.error = ""
        self.config: ServerConfig | None = None
        self._work: asyncio.Future[Any] | None = None

    @property
    def settings(self) -> ServerSettings:
        return self.services.settings.server

    @property
    def address(self) -> str:
        """"http://127.0.0.1:4784" while on, else ""."""
        return str(self.server.address) if self.server is not None and self.state == "on" else ""

    def save(self, **changes: Any) -> None:
        """Change the server's settings in settings.json (never its key)."""
        settings = self.services.settings
        self.services.save_settings(replace(settings, server=replace(settings.server, **changes)))

    def wanted_config(self, *, with_key: bool = True) -> ServerConfig:
        """The config the settings ask for now, with the key from the keyring (a lookup that may
        take a while: call it off the GUI thread) unless `with_key` is False. Raises ServerError
        when the network is chosen and no key is kept (a key kept in memory ended with the app)."""
        s = self.settings
        key = (secrets.get(KEY_NAME) or "") if with_key and s.network else ""
        if with_key and s.network and not key:
            raise ServerError("Serving on your network needs a key, and none is kept (a key kept only in "
                              "memory ended when Hearth closed): make a new key on the Local server page.")
        return ServerConfig(host=ALL_INTERFACES if s.network else LOOPBACK, port=s.port,
                            api_key=key if s.network else "", origins=tuple(s.origins),
                            ttl_s=s.ttl_s, log_bodies=s.log_bodies, cloud=tuple(s.cloud))

    def pending(self) -> bool:
        """True when the server is on with other settings than the saved ones (they apply when it
        starts again)."""
        if self.state != "on" or self.config is None:
            return False
        return self.wanted_config(with_key=False) != replace(self.config, api_key="")

    def _prepare(self) -> ServerConfig:
        import_server()
        return self.wanted_config()

    def busy(self) -> bool:
        """True while a start or stop asked for has not finished."""
        return self._work is not None and not self._work.done()

    def set_enabled(self, on: bool) -> asyncio.Future[Any]:
        """The user's switch: saved (so the next launch does the same), then started or stopped.
        A start that fails leaves it off, saved off too (what the switch shows)."""
        if on != self.settings.enabled:
            self.save(enabled=on)

        async def turn_on() -> bool:
            started = await self.start()
            if not started and self.settings.enabled:
                self.save(enabled=False)
            return started

        return self._run(turn_on() if on else self.stop())

    def start_if_enabled(self) -> asyncio.Future[Any] | None:
        """At launch, once the window is drawn: start the server when the user left it on."""
        return self._run(self.start()) if self.settings.enabled and self.state == "off" else None

    def restart(self) -> asyncio.Future[Any]:
        """Stop and start again with the saved settings (a new key, the network, the port…)."""
        async def again() -> None:
            await self.stop()
            await self.start()
        return self._run(again())

    def _run(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        previous = self._work

        async def in_turn() -> Any:  # one start or stop at a time, in the order asked
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            return await coro

        self._work = self.spawn(in_turn())
        return self._work

    async def start(self) -> bool:
        """Start with the saved settings; False (and `error` says why) when it cannot."""
        if self.state == "on":
            return True
        self._set("starting", "")
        try:
            # The keyring (its first use imports and probes backends) and FastAPI load in a worker thread.
            config = await asyncio.get_running_loop().run_in_executor(None, self._prepare)
            server = local_server(self.services, config)
            server.on_request = self.request.emit
            try:
                await server.start()
            except asyncio.CancelledError:  # the window closed while it started: it must not stay bound
                asyncio.ensure_future(server.stop())
                self._set("off", "")
                raise
        except ServerError as exc:
            self._set("off", str(exc))
            return False
        except ImportError:
            self._set("off", "This build of Hearth has no local server.")
            return False
        except OSError as exc:  # the server should say it in a ServerError; a bare one still gets words
            in_use = exc.errno in (errno.EADDRINUSE, errno.EACCES)
            self._set("off", f"Port {self.settings.port} is in use by another program: choose another port "
                      f"and turn the server on again." if in_use else
                      f"The server cannot listen on port {self.settings.port}: {exc.strerror or exc}.")
            return False
        self.server, self.config = server, config
        self._set("on", "")
        return True

    async def stop(self) -> None:
        """Stop serving; the models the server loaded are unloaded (never the window's)."""
        server = self.server
        if server is None:
            if self.state != "off":
                self._set("off", self.error)
            return
        self._set("stopping", "")
        try:
            await server.stop()
        except (ServerError, OSError) as exc:
            self.error = str(exc)
        finally:
            self.server, self.config = None, None
            self._set("off", self.error)

    def stop_before_closing(self, wait_s: float = 5.0) -> None:
        """The window is closing: stop the server (at most `wait_s`) before the engines stop,
        turning Qt's event loop, which runs asyncio's under qasync."""
        if self.server is None:
            return
        try:
            inside_task = asyncio.current_task() is not None
        except RuntimeError:  # no running loop: nothing could run the stop
            return
        work = asyncio.ensure_future(self.stop())
        if inside_task:  # a task cannot wait here for another; the stop finishes on the loop
            return
        deadline = time.monotonic() + wait_s
        while not work.done() and time.monotonic() < deadline:
            QGuiApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)

    def loaded(self) -> list[str]:
        """The models the server holds now, each as "name (what it is doing)"."""
        if self.server is None or self.state != "on":
            return []
        try:
            models = self.server.loaded()
        except Exception:  # noqa: BLE001 - a line on a page is not worth a crash
            return []
        return [loaded_line(m) for m in models]

    def _set(self, state: str, error: str) -> None:
        self.state, self.error = state, error
        self.changed.emit()


class RequestLog(QAbstractTableModel):
    """The last `LOG_ROWS` requests, newest first; older ones drop off the end."""

    HEADERS = ("Time", "Client", "Request", "Model", "Tokens", "Duration", "Status")
    NUMBERS = (4, 5, 6)  # right-aligned columns

    def __init__(self, parent: QObject | None = None, limit: int = LOG_ROWS) -> None:
        super().__init__(parent)
        self.limit = limit
        self._rows: deque[RequestRecord] = deque()

    def add(self, record: RequestRecord) -> None:
        if len(self._rows) >= self.limit:
            last = len(self._rows) - 1
            self.beginRemoveRows(QModelIndex(), last, last)
            self._rows.pop()
            self.endRemoveRows()
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.appendleft(record)
        self.endInsertRows()

    def record(self, row: int) -> RequestRecord:
        return self._rows[row]

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section in self.NUMBERS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, column = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.cell(r, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{r.method} {r.path}\n{r.client}\nTokens in → out: {self.cell(r, 4)}"
            return f"{tip}\n\n{r.body}" if r.body else tip
        if role == Qt.ItemDataRole.TextAlignmentRole and column in self.NUMBERS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def cell(r: RequestRecord, column: int) -> str:
        if column == 0:
            return time.strftime("%H:%M:%S", time.localtime(r.at))
        if column == 1:  # an app on this computer is named by its user agent alone (the tooltip has both)
            address, _, agent = r.client.partition(" ")
            return agent if agent and address in (LOOPBACK, "::1", "localhost") else r.client
        if column == 2:
            return r.path
        if column == 3:
            return r.model or "—"
        if column == 4:
            if r.tokens_in is None and r.tokens_out is None:
                return "—"
            return " → ".join("—" if n is None else f"{n:,}" for n in (r.tokens_in, r.tokens_out))
        if column == 5:
            ms = r.duration_ms
            return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"
        return str(r.status)


class Switch(QAbstractButton):
    """An on/off switch (a checkable button drawn as a sliding knob)."""

    def __init__(self, theme: Theme, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = theme
        self.setCheckable(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAccessibleName(name)
        self.setToolTip(name)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(44, 24)

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        on = self.isChecked()
        track = QColor(self.theme.accent if on else self.theme.border)
        if not self.isEnabled():
            track.setAlphaF(0.5)
        rect = QRectF(1, 1, self.width() - 2, self.height() - 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(track)
        painter.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
        knob = rect.height() - 6
        x = rect.right() - knob - 3 if on else rect.left() + 3
        painter.setBrush(QColor("#ffffff"))
        painter.drawEllipse(QRectF(x, rect.top() + 3, knob, knob))
        if self.hasFocus():
            painter.setPen(QColor(self.theme.muted))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)


def copy_text(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


class KeyDialog(QDialog):
    """The network key, shown once, with a Copy button."""

    def __init__(self, key: str, in_keyring: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ServerKeyDialog")
        self.setWindowTitle("Your server key")
        self.setMinimumWidth(460)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        intro = QLabel("Apps on other computers send this key (as “Authorization: Bearer …”, the "
                       "API key field of most apps) to use your models.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        row = QHBoxLayout()
        self.key = QLineEdit(key)
        self.key.setObjectName("ServerKey")
        self.key.setReadOnly(True)
        self.key.setMinimumWidth(340)
        row.addWidget(self.key, 1)
        self.copy = QPushButton("Copy")
        self.copy.clicked.connect(lambda: (copy_text(key), self.copy.setText("Copied")))
        row.addWidget(self.copy)
        layout.addLayout(row)
        where = "in your system keyring" if in_keyring else NO_KEYRING
        self.note = QLabel(f"Keep it: Hearth will not show it again. It is {where}.")
        self.note.setObjectName("Muted")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)


class ServerPage(QWidget):
    """The Local server page (see the module docstring)."""

    back_requested = Signal()
    message = Signal(str, str)  # text, level

    def __init__(self, switch: ServerSwitch, theme: Theme) -> None:
        super().__init__()
        self.switch, self.theme = switch, theme
        self.setObjectName("ChatArea")
        self.key_dialog: KeyDialog | None = None
        column, _top, self.banner, self.tabs = page_frame(self, theme, "Local server", self.back_requested.emit)
        column.insertWidget(column.count() - 1, self._build_status_card())
        self.tabs.addTab(self._build_activity(), "Requests")
        settings = QScrollArea()
        settings.setWidgetResizable(True)
        settings.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        settings.setWidget(self._build_settings())
        self.tabs.addTab(settings, "Settings")

        switch.changed.connect(self.show_state)
        switch.request.connect(self._on_request)
        self._loaded_timer = QTimer(self, interval=2000)
        self._loaded_timer.timeout.connect(self.show_loaded)
        self.show_settings()
        self.show_state()

    def notify(self, text: str, level: str = "error") -> None:
        self.banner.show_text(text, level)

    # -- building -------------------------------------------------------------------------------
    def _build_status_card(self) -> QFrame:
        card = QFrame()
        card.setObjectName("Card")
        layout = QVBoxLayout(card)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(6)
        row = QHBoxLayout()
        row.setSpacing(10)
        self.power = Switch(self.theme, "Local server on or off")
        self.power.setObjectName("ServerSwitch")
        self.power.toggled.connect(self._power_toggled)
        row.addWidget(self.power)
        self.state_label = QLabel("Off")
        self.state_label.setObjectName("CardTitle")
        self.state_label.setMinimumWidth(self.state_label.fontMetrics().horizontalAdvance("Stopping…") + 8)
        row.addWidget(self.state_label)
        self.address = QLineEdit()
        self.address.setObjectName("ServerAddress")
        self.address.setReadOnly(True)
        self.address.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.address.setMaximumWidth(320)
        row.addWidget(self.address, 1)
        self.copy_address = QPushButton("Copy")
        self.copy_address.setToolTip("Copy the address")
        self.copy_address.setMinimumWidth(self.copy_address.fontMetrics().horizontalAdvance("Copied") + 30)
        self.copy_address.clicked.connect(self._copy_address)
        row.addWidget(self.copy_address)
        row.addStretch(1)
        layout.addLayout(row)
        self.lan_label = muted()
        self.lan_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.lan_label)
        self.error_label = QLabel()
        self.error_label.setObjectName("ErrorText")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        layout.addWidget(self.error_label)
        pending = QHBoxLayout()
        pending.setContentsMargins(0, 0, 0, 0)
        self.pending_label = muted("Your changes apply when the server starts again.", wrap=False)
        pending.addWidget(self.pending_label)
        self.restart_button = QPushButton("Restart now")
        self.restart_button.clicked.connect(lambda: self.switch.restart())
        pending.addWidget(self.restart_button)
        pending.addStretch(1)
        self.pending_row = QWidget()
        self.pending_row.setLayout(pending)
        layout.addWidget(self.pending_row)
        return card

    def _build_settings(self) -> QWidget:
        holder = QWidget()
        holder.setObjectName("ChatArea")
        outer = QHBoxLayout(holder)
        outer.setContentsMargins(0, 6, 0, 6)
        column = QWidget()
        column.setMaximumWidth(620)
        outer.addWidget(column, 1)
        outer.addStretch(0)
        form = QVBoxLayout(column)
        form.setContentsMargins(2, 0, 12, 0)
        form.setSpacing(6)

        form.addWidget(self._section("Port"))
        port_row = QHBoxLayout()
        self.port = QSpinBox()
        self.port.setObjectName("ServerPort")
        self.port.setRange(1024, 65535)
        self.port.setFixedWidth(90)
        self.port.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.port.valueChanged.connect(lambda v: self._save(port=v))
        port_row.addWidget(self.port)
        port_row.addWidget(muted("Applies when the server starts again. LM Studio uses 1234, Ollama 11434."), 1)
        form.addLayout(port_row)

        form.addWidget(self._section("Network"))
        self.network = self._checkbox("Serve on my network")
        self.network.setObjectName("ServerNetwork")
        self.network.toggled.connect(self._network_toggled)
        form.addWidget(self.network)
        form.addWidget(muted("Other computers on your network may use your models, with a key. Off: only "
                             "apps on this computer can reach the server."))
        key_row = QHBoxLayout()
        self.key_label = muted()
        key_row.addWidget(self.key_label, 1)
        self.new_key = QPushButton("New key")
        self.new_key.setObjectName("NewServerKey")
        self.new_key.setToolTip("Make a new key; the old one stops working")
        self.new_key.clicked.connect(self.make_key)
        key_row.addWidget(self.new_key)
        form.addLayout(key_row)

        form.addWidget(self._section("Allowed web origins"))
        form.addWidget(muted("Web pages from these sites may call the server from a browser. None: no web "
                             "page can (apps and scripts still can)."))
        self.origins = QListWidget()
        self.origins.setObjectName("ServerOrigins")
        self.origins.setFixedHeight(78)
        form.addWidget(self.origins)
        origin_row = QHBoxLayout()
        self.origin_input = QLineEdit()
        self.origin_input.setObjectName("OriginInput")
        self.origin_input.setPlaceholderText("http://localhost:3000")
        self.origin_input.returnPressed.connect(self.add_origin)
        origin_row.addWidget(self.origin_input, 1)
        add = QPushButton("Add")
        add.setObjectName("AddOrigin")
        add.clicked.connect(self.add_origin)
        origin_row.addWidget(add)
        self.remove_origin_button = QPushButton("Remove")
        self.remove_origin_button.clicked.connect(self.remove_origin)
        origin_row.addWidget(self.remove_origin_button)
        form.addLayout(origin_row)
        self.origin_error = QLabel()
        self.origin_error.setObjectName("ErrorText")
        self.origin_error.setWordWrap(True)
        self.origin_error.hide()
        form.addWidget(self.origin_error)

        form.addWidget(self._section("Idle unload"))
        ttl_row = QHBoxLayout()
        self.ttl = QSpinBox()
        self.ttl.setObjectName("ServerTtl")
        self.ttl.setRange(1, 24 * 60)
        self.ttl.setSuffix(" min")
        self.ttl.setFixedWidth(90)
        self.ttl.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.ttl.valueChanged.connect(lambda v: self._save(ttl_s=v * 60))
        ttl_row.addWidget(self.ttl)
        ttl_row.addWidget(muted("A model an app loaded is unloaded after this long unused."), 1)
        form.addLayout(ttl_row)

        form.addWidget(self._section("Privacy"))
        self.log_bodies = self._checkbox("Log prompts and answers")
        self.log_bodies.setObjectName("ServerLogBodies")
        self.log_bodies.toggled.connect(lambda on: self._save(log_bodies=on))
        form.addWidget(self.log_bodies)
        form.addWidget(muted("Off: the log keeps only who asked, which model and how many tokens. On: what "
                             "apps send and get back is kept too, where anyone who uses this computer "
                             "can read it."))
        self.forget_prompts = QPushButton("Delete kept prompts and answers…")
        self.forget_prompts.setObjectName("ServerForgetBodies")
        self.forget_prompts.setToolTip("Turning the log off stops keeping them; those already kept stay until "
                                       "you delete them here. The counts in the data ledger stay.")
        self.forget_prompts.clicked.connect(self.delete_kept_prompts)
        form.addWidget(self.forget_prompts, 0, Qt.AlignmentFlag.AlignLeft)

        form.addWidget(self._section("Cloud models"))
        form.addWidget(muted("Apps may also ask for the models of a cloud provider you allow here, by its name "
                             "and model (for example openai/gpt-4o-mini). Their words then leave this computer, "
                             "and the data ledger counts them. Off for every provider until you tick it."))
        self.cloud_boxes = QVBoxLayout()
        self.cloud_boxes.setSpacing(4)
        form.addLayout(self.cloud_boxes)
        form.addStretch(1)
        return holder

    def show_cloud(self) -> None:
        """One box per provider the user added, ticked for those the server may forward to (made
        again only when the providers or the choice changed)."""
        try:
            added, problem = self.switch.services.providers.all(), ""
        except HearthError as exc:
            added, problem = [], str(exc)
        allowed = set(self.switch.settings.cloud)
        shown = (problem, tuple((p.name, p.label, p.processed_on, p.name in allowed) for p in added))
        if shown == getattr(self, "_cloud_shown", None):
            return
        self._cloud_shown = shown
        while self.cloud_boxes.count():
            widget = self.cloud_boxes.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        if problem:
            self.cloud_boxes.addWidget(muted(problem))
            return
        if not added:
            self.cloud_boxes.addWidget(muted("You have added no cloud provider (Compare & cloud → Providers)."))
            return
        for provider in added:
            where = "on this computer" if provider.on_this_machine else f"sent to {provider.host}"
            box = self._checkbox(f"{provider.label}: {provider.name}/… models, {where}")
            box.setObjectName(f"ServerCloud-{provider.name}")
            box.setChecked(provider.name in allowed)
            box.toggled.connect(lambda on, name=provider.name: self._allow_cloud(name, on))
            self.cloud_boxes.addWidget(box)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self.show_cloud()  # providers may have been added or removed meanwhile

    def _allow_cloud(self, name: str, on: bool) -> None:
        allowed = [n for n in self.switch.settings.cloud if n != name] + ([name] if on else [])
        self._save(cloud=tuple(allowed))
        self._cloud_shown = None  # the box shows the choice already: made again on the next show

    def _build_activity(self) -> QWidget:
        holder = QWidget()
        side = QVBoxLayout(holder)
        side.setContentsMargins(0, 6, 0, 0)
        side.setSpacing(6)
        loaded = QHBoxLayout()
        title = QLabel("Loaded models:")
        title.setObjectName("CardTitle")
        loaded.addWidget(title, 0, Qt.AlignmentFlag.AlignTop)
        self.loaded_label = muted()
        self.loaded_label.setObjectName("ServerLoaded")
        loaded.addWidget(self.loaded_label, 1)
        side.addLayout(loaded)
        self.log = RequestLog(self)
        self.table = QTableView()
        self.table.setObjectName("ServerLog")
        self.table.setModel(self.log)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 12)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        head = self.table.horizontalHeader()
        head.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        head.setHighlightSections(False)
        head.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        head.setStretchLastSection(False)
        # Widths from what each column holds (a client's user agent can be long: it takes the rest, cut at its end).
        width = self.fontMetrics().horizontalAdvance
        for column, sample in enumerate(("00:00:00", "", "/v1/chat/completions", "",
                                         "12,345 → 1,234", "Duration", "Status")):
            head.resizeSection(column, width(sample) + 18)
        head.setMinimumSectionSize(width("Status") + 20)
        head.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # client and model share the spare width
        head.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.empty = self._build_empty()
        self.log_stack = QStackedWidget()
        self.log_stack.addWidget(self.empty)
        self.log_stack.addWidget(self.table)
        side.addWidget(self.log_stack, 1)
        self.log.rowsInserted.connect(lambda *_: self.log_stack.setCurrentWidget(self.table))
        return holder

    def _build_empty(self) -> QWidget:
        holder = QWidget()
        outer = QVBoxLayout(holder)
        outer.setContentsMargins(0, 0, 0, 0)
        box = QFrame()
        box.setObjectName("Card")
        box.setMaximumWidth(640)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(18, 16, 18, 16)
        layout.setSpacing(8)
        title = QLabel("No requests yet")
        title.setObjectName("CardTitle")
        layout.addWidget(title)
        self.empty_text = muted("Point apps that speak the OpenAI or Ollama API at this address: editors, note "
                                "apps, scripts. Their requests appear here. To try it, run:")
        layout.addWidget(self.empty_text)
        row = QHBoxLayout()
        self.example = QLineEdit()
        self.example.setObjectName("ServerExample")
        self.example.setReadOnly(True)
        self.example.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        mono = self.example.font()
        mono.setFamilies(["DejaVu Sans Mono", "Menlo", "Consolas", "monospace"])
        self.example.setFont(mono)
        row.addWidget(self.example, 1)
        copy = QPushButton("Copy")
        copy.setObjectName("CopyExample")
        copy.setMinimumWidth(copy.fontMetrics().horizontalAdvance("Copied") + 30)
        copy.clicked.connect(lambda: (copy_text(self.example.text()), copy.setText("Copied"),
                                      QTimer.singleShot(1500, copy, lambda: copy.setText("Copy"))))
        row.addWidget(copy)
        layout.addLayout(row)
        layout.addWidget(muted("Apps name a model by its Hearth id (GET /v1/models lists them). It loads on "
                               "the first request and is unloaded when left unused."))
        outer.addWidget(box)
        outer.addStretch(1)
        return holder

    def _checkbox(self, text: str) -> QCheckBox:
        box = QCheckBox(text)
        if self.theme.dark:  # Fusion draws the box's edge from the window colour: on a dark one it vanishes
            palette = box.palette()
            palette.setColor(QPalette.ColorRole.Window, QColor(self.theme.muted))
            box.setPalette(palette)
        return box

    @staticmethod
    def _section(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("CardTitle")
        label.setContentsMargins(0, 8, 0, 0)
        return label

    # -- showing --------------------------------------------------------------------------------
    def show_settings(self) -> None:
        """The saved settings in the controls (without saving them again)."""
        s = self.switch.settings
        for widget, setter, value in ((self.port, self.port.setValue, s.port),
                                      (self.network, self.network.setChecked, s.network),
                                      (self.ttl, self.ttl.setValue, max(1, round(s.ttl_s / 60))),
                                      (self.log_bodies, self.log_bodies.setChecked, s.log_bodies)):
            widget.blockSignals(True)
            setter(value)
            widget.blockSignals(False)
        self.origins.clear()
        self.origins.addItems(list(s.origins))
        self.show_cloud()
        self.show_key()

    def show_key(self) -> None:
        if not self.network.isChecked():  # (no keyring lookup on the GUI thread when none is needed)
            self.key_label.setText("No key needed: only this computer can reach the server.")
        elif not secrets.get(KEY_NAME):
            self.key_label.setText("No key is kept: make a new one before the server can serve your network.")
        elif secrets.in_memory_only(KEY_NAME):
            self.key_label.setText(f"A key is {NO_KEYRING}.")
        else:
            self.key_label.setText("A key is kept in your system keyring.")
        self.new_key.setEnabled(self.network.isChecked())

    def show_state(self) -> None:
        """The switch, the address and the sentence follow the server's state."""
        sw = self.switch
        self.power.blockSignals(True)
        self.power.setChecked(sw.state in ("on", "starting"))
        self.power.blockSignals(False)
        self.power.setEnabled(sw.state in ("on", "off"))
        self.state_label.setText({"on": "On", "starting": "Starting…", "stopping": "Stopping…"}.get(sw.state, "Off"))
        port = sw.config.port if sw.config else sw.settings.port
        address = sw.address or f"http://{LOOPBACK}:{port}"
        self.address.setText(address)
        self.example.setText(f"curl {address}{EXAMPLE_PATH}")
        lan = net.lan_address() if sw.state == "on" and sw.config and sw.config.host != LOOPBACK else ""
        self.lan_label.setText(f"Other computers: http://{lan}:{port} (with the key)" if lan else
                               "Only apps on this computer can reach it." if sw.state == "on" else
                               "Off: no app can reach your models through Hearth.")
        self.error_label.setText(sw.error)
        self.error_label.setVisible(bool(sw.error))
        self.pending_row.setVisible(sw.pending())
        self.show_loaded()
        if sw.state == "on":
            self._loaded_timer.start()
        else:
            self._loaded_timer.stop()

    def show_loaded(self) -> None:
        names = self.switch.loaded()
        ttl_min = max(1, round(self.switch.settings.ttl_s / 60))
        self.loaded_label.setText(", ".join(names) if names else
                                  f"None. A model loads when an app first asks for it and is unloaded after "
                                  f"{ttl_min} min unused.")

    def _on_request(self, record: RequestRecord) -> None:
        self.log.add(record)

    # -- changes --------------------------------------------------------------------------------
    def _power_toggled(self, on: bool) -> None:
        self.switch.set_enabled(on)

    def _copy_address(self) -> None:
        copy_text(self.address.text())
        self.copy_address.setText("Copied")
        QTimer.singleShot(1500, self, lambda: self.copy_address.setText("Copy"))

    def _save(self, **changes: Any) -> None:
        self.switch.save(**changes)
        self.show_state()

    def _network_toggled(self, on: bool) -> None:
        self.switch.save(network=on)
        if on and not secrets.get(KEY_NAME):
            self.make_key(restart=False)
        self.show_key()
        if self.switch.state == "on":  # who may reach it changes now, not at the next start
            self.switch.restart()
        else:
            self.show_state()

    def make_key(self, *, restart: bool = True) -> None:
        """A new random key (256 bits, URL-safe), kept with `secrets.put` and shown once; a server
        serving the network starts again with it (unless `restart` is False)."""
        key = token_source.token_urlsafe(32)
        in_keyring = secrets.put(KEY_NAME, key)
        self.show_key()
        self.key_dialog = KeyDialog(key, in_keyring, self)
        self.key_dialog.finished.connect(lambda _: setattr(self, "key_dialog", None))
        self.key_dialog.open()
        if restart and self.switch.state == "on" and self.switch.settings.network:  # the old key stops now
            self.switch.restart()

    def delete_kept_prompts(self) -> None:
        """After asking: delete every prompt and answer the request log kept in the database
        (the data ledger's counts per app and day stay). Says how many, or why it could not."""
        store = self.switch.services.store
        kept = store.count_api_requests()
        if not kept:
            self.notify("No prompts or answers are kept.", "info")
            return

        def delete() -> None:
            try:
                gone = store.clear_api_requests()
            except StoreError as exc:
                self.notify(str(exc), "error")
                return
            self.notify(f"Deleted the prompts and answers of {gone:,} request{'s' * (gone != 1)}.", "info")

        self.forget_dialog = confirm(self, "ForgetPromptsDialog", "Delete kept prompts and answers",
                                     f"Delete the prompts and answers of {kept:,} request{'s' * (kept != 1)}?",
                                     "They are overwritten on disk. The counts of what each app used stay.",
                                     "Delete", delete, destructive=True)

    def add_origin(self) -> None:
        text = self.origin_input.text().strip()
        if text.endswith("/") and text.count("/") == 3:  # "http://localhost:3000/" as copied from a browser
            text = text[:-1]
        problem = origin_problem(text)
        origins = tuple(self.switch.settings.origins)
        if not problem and text.lower() in (o.lower() for o in origins):
            problem = f"{text} is in the list already."
        self.origin_error.setText(problem)
        self.origin_error.setVisible(bool(problem))
        if problem:
            return
        self.switch.save(origins=(*origins, text))
        self.origins.addItem(text)
        self.origin_input.clear()
        self.show_state()

    def remove_origin(self) -> None:
        item = self.origins.currentItem()
        if item is None:
            return
        self.switch.save(origins=tuple(o for o in self.switch.settings.origins if o != item.text()))
        self.origins.takeItem(self.origins.row(item))
        self.show_state()
