"""The main window: conversations on the left, the chat in the middle, settings on the right,
and a status bar that says what the model is doing and how much memory it takes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core import hardware
from desktop.core.chat import NEW_CHAT, RESTART_HINT, MessageNotSaved, title_from
from desktop.core.errors import HearthError
from desktop.core.library import ModelFileMissing, file_problem
from desktop.core.server import LOOPBACK
from desktop.core.services import Services
from desktop.core.settings import LoadOptions, Sampling
from desktop.core.store import Conversation, DatabaseBusy, Message
from desktop.core.text import shown
from desktop.core.units import human_bytes
from desktop.ui.chat_view import (
    COLUMN_WIDTH,
    EARLIER_PAGE,
    Composer,
    EmptyState,
    MessageList,
    MessageWidget,
    waiting_note,
)
from desktop.ui.icons import icon, tool_button
from desktop.ui.server_page import ServerSwitch, host_port
from desktop.ui.sidebar import Sidebar
from desktop.ui.sources import FileDrop, ask_documents_consent
from desktop.ui.theme import Theme
from desktop.ui.widgets import Banner, confirm

if TYPE_CHECKING:
    from desktop.ui.cloud_page import CloudPage
    from desktop.ui.documents_page import DocumentsPage
    from desktop.ui.models_page import ModelsPage
    from desktop.ui.server_page import ServerPage
    from desktop.ui.settings_panel import SettingsPanel

log = logging.getLogger(__name__)

FIRST_PAGE = 20  # messages shown when a chat opens (more than a window holds: the first paint is quick)
PAGE = EARLIER_PAGE  # messages added by "Show earlier messages" (scrolling up adds a few at a time)
LOCAL_NOTE = "Runs on this computer. Answers can be wrong: check what matters."
FLUSH_INTERVAL_MS = 33  # text reaches the screen at most ~30 times a second...
MAX_FLUSH_INTERVAL_MS = 200  # ...and at least 5 times a second
DATABASE_BUSY = "Hearth's database is in use by another program; your change will be saved when it is free."
SAVE_RETRY_MS = 1000  # a change the database could not take is tried again this often
# ...and drawing may take about 1/RENDER_BUDGET of the time, so that on a small machine the
# window does not take the CPU the model needs (painting costs about as much as the layout
# measured here, hence the factor 2 below).
RENDER_BUDGET = 40
LAYOUT_LEVELS = 5  # message, column, chat area, viewport, scroll area


class _Relay(QObject):
    """Carries progress from a worker thread to the window (queued across threads by Qt)."""

    progress = Signal(int, int)


class MainWindow(QMainWindow):
    def __init__(self, services: Services, theme: Theme, *, preload_model: bool = True) -> None:
        super().__init__()
        self.services = services
        self.theme = theme
        self.current_id: int | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._streaming: MessageWidget | None = None
        # The chat whose answer is being written, from the moment it is asked for (the model may
        # still have to load: the chat service is not busy yet) to the moment it has ended.
        self._writing: int | None = None
        self._dirty = False
        self._left_out: dict[int, int] = {}  # conversation id: messages the model no longer sees
        self._earlier_count = 0  # the open chat's messages not shown yet (older than the first shown)
        self.setWindowTitle("Hearth")
        self.resize(1180, 760)
        self.setMinimumSize(760, 480)

        self.sidebar = Sidebar(theme)
        self.sidebar.new_requested.connect(self.new_chat)
        self.sidebar.conversation_chosen.connect(self.open_conversation)
        self.sidebar.rename_requested.connect(self.rename_conversation)
        self.sidebar.delete_requested.connect(self.confirm_delete)
        self.sidebar.search_changed.connect(self._search)
        self.sidebar.documents_requested.connect(self.show_documents)
        self.sidebar.footer.setToolTip(f"Saved in {services.paths.data}")

        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        self.pages = QStackedWidget()
        self.chat_page = self._build_chat_area()
        self.pages.addWidget(self.chat_page)
        # The model manager, Compare and the settings panel are hidden at start: they are built
        # once the window has been drawn (or when first asked for), so the chat shows sooner.
        self._models_page: ModelsPage | None = None
        self._cloud_page: CloudPage | None = None
        self._server_page: ServerPage | None = None  # built when first opened
        self._documents_page: DocumentsPage | None = None  # built when first opened
        # The local API server (off unless the user turned it on; app.py starts it after the first drawing).
        self.server = ServerSwitch(services, self.spawn, parent=self)
        row.addWidget(self.pages, 1)
        self._row = row  # the settings panel goes on the right of the pages, once built
        self._settings_panel: SettingsPanel | None = None
        self.setCentralWidget(central)
        self._build_status_bar()
        self.server.changed.connect(self._show_server_state)

        # Drawing the answer happens when text arrives, no sooner than the interval after the
        # last drawing: no timer ticks while nothing new has come.
        self._flush_timer = QTimer(self, singleShot=True)
        self._flush_timer.timeout.connect(self._flush)
        self._next_flush = 0.0  # time.monotonic() before which the answer is not drawn again
        self._watchdog = QTimer(self, interval=1000)
        self._watchdog.timeout.connect(self._check_engine)
        self._watchdog.start()
        self._memory_timer = QTimer(self, interval=2000)
        self._memory_timer.timeout.connect(self._update_memory)
        self._memory_timer.start()
        # Changes the database could not take while another program held it locked, in the order
        # made, each with what to do once written; shown as made meanwhile (titles, deletions).
        self._unsaved: list[tuple[Callable[[], Any], Callable[[], Any] | None]] = []
        self._unsaved_titles: dict[int, str] = {}
        self._unsaved_deletions: set[int] = set()
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_RETRY_MS)
        self._save_timer.timeout.connect(self._save_unsaved)

        QShortcut(QKeySequence("Ctrl+N"), self, activated=self.new_chat)
        QShortcut(QKeySequence("Ctrl+F"), self, activated=self.sidebar.search.setFocus)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.stop)
        QShortcut(QKeySequence("Ctrl+,"), self, activated=self.toggle_settings)
        QShortcut(QKeySequence("Ctrl+M"), self, activated=self.show_models)
        QShortcut(QKeySequence("Ctrl+K"), self, activated=self.show_cloud)
        QShortcut(QKeySequence(Qt.Key.Key_F1), self, activated=self.show_about)

        services.engine.on_state = self._on_engine_state
        services.chat.on_wait = self._on_wait
        services.chat.on_notice = self._on_chat_notice
        services.chat.on_database_wait = self._on_database_wait
        self._on_engine_state(services.engine.state, "")
        self.refresh_models()
        conversations = services.store.conversations()
        if conversations:
            self.open_conversation(conversations[0].id)
        else:
            self.new_chat()
        if preload_model and self.selected_model_id():
            QTimer.singleShot(0, lambda: self.spawn(self.load_selected_model()))
        self.installEventFilter(self)  # until the first drawing (see eventFilter)

    # -- building -------------------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if watched is self and event.type() == QEvent.Type.Paint:
            # The window's first drawing is under way (its children are drawn right after): what
            # is hidden at start is built on the next turns of the event loop, a part a turn.
            self.removeEventFilter(self)
            for build in (self._update_memory, lambda: self.settings_panel, lambda: self.models_page,
                          lambda: self.cloud_page, self._resume_indexing):
                QTimer.singleShot(0, self, lambda build=build: self.isVisible() and build())
        return False

    def hidden_parts_built(self) -> bool:
        return None not in (self._settings_panel, self._models_page, self._cloud_page)

    @property
    def settings_panel(self) -> SettingsPanel:
        if self._settings_panel is None:
            from desktop.ui.settings_panel import SettingsPanel

            panel = SettingsPanel(cores=hardware.physical_cores())
            panel.hide()
            panel.chat_settings_changed.connect(self._save_chat_settings)
            panel.load_options_changed.connect(self._save_load_options)
            panel.make_default_requested.connect(self._make_default)
            panel.reload_requested.connect(lambda: self.spawn(self.reload_model()))
            panel.chat_format_changed.connect(self._save_chat_format)
            panel.show_load(self.services.settings.load)
            panel.set_prompt_info(self.services.engine.prompt_info if self.services.engine.is_alive() else {})
            self._row.addWidget(panel)
            self._settings_panel = panel
            self._show_chat_settings()
            self._show_model_settings()
        return self._settings_panel

    def _show_chat_settings(self, conversation: Conversation | None = None) -> None:
        """The open chat's system prompt and sampling, in the settings panel if it is built."""
        if self._settings_panel is None or self.current_id is None:
            return
        if conversation is None:
            try:
                conversation = self.services.store.conversation(self.current_id)
            except KeyError:
                return
        self._settings_panel.show_chat(conversation.system_prompt, Sampling.from_dict(conversation.sampling))

    def _flush_settings(self) -> None:
        """Save what was typed in the settings panel and not saved yet (it waits for a pause)."""
        if self._settings_panel is not None:
            self._settings_panel.flush()

    def _hide_settings(self) -> None:
        if self._settings_panel is not None:
            self._settings_panel.hide()
        self.settings_button.setChecked(False)

    @property
    def models_page(self) -> ModelsPage:
        if self._models_page is None:
            from desktop.ui.models_page import ModelsPage

            page = self._add_page(ModelsPage(self.services, self.theme, self.spawn))
            page.use_requested.connect(self.use_model)
            page.models_changed.connect(self.refresh_models)
            self._models_page = page
        return self._models_page

    @property
    def cloud_page(self) -> CloudPage:
        if self._cloud_page is None:
            from desktop.ui.cloud_page import CloudPage

            page = self._add_page(CloudPage(self.services, self.theme, self.spawn))
            page.providers_changed.connect(self.refresh_models)
            page.offline_changed.connect(self.set_offline)
            self.server.request.connect(page.api_request_arrived)  # the Data tab's apps, as they use it
            self._cloud_page = page
        return self._cloud_page

    @property
    def server_page(self) -> ServerPage:
        if self._server_page is None:
            from desktop.ui.server_page import ServerPage

            self._server_page = self._add_page(ServerPage(self.server, self.theme))
        return self._server_page

    @property
    def documents_page(self) -> DocumentsPage:
        if self._documents_page is None:
            from desktop.ui.documents_page import DocumentsPage

            page = self._add_page(DocumentsPage(self.services, self.theme, self.spawn))
            page.collections_changed.connect(self._show_attachments)
            self._documents_page = page
        return self._documents_page

    def _resume_indexing(self) -> None:
        """Documents a kill or a reboot left waiting are indexed from the launch, in the background."""
        if (self.services.paths.data / "documents.db").exists():
            self.documents_page.resume_waiting()

    def show_documents(self) -> None:
        self._hide_settings()
        self.pages.setCurrentWidget(self.documents_page)

    def _add_page(self, page):
        """A page beside the chat: its back arrow returns to the chat, its sentences go to its banner."""
        page.back_requested.connect(self.show_chat)
        page.message.connect(self.notify)
        self.pages.addWidget(page)
        return page

    def _build_chat_area(self) -> QWidget:
        area = QWidget()
        area.setObjectName("ChatArea")
        column = QVBoxLayout(area)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)

        header = QFrame()
        header.setObjectName("Header")
        bar = QHBoxLayout(header)
        bar.setContentsMargins(14, 8, 10, 8)
        bar.setSpacing(6)
        self.model_combo = QComboBox()
        self.model_combo.setMinimumWidth(320)
        self.model_combo.setToolTip("The model this chat uses: one on this computer (chip), or a cloud model "
                                    "(cloud) once you add a provider under Compare & cloud.")
        self.model_combo.activated.connect(self._model_chosen)
        bar.addWidget(self.model_combo)
        self.import_button = self._header_button("import", "Import a .gguf model from disk", self.import_model)
        bar.addWidget(self.import_button)
        self.models_button = self._header_button("models", "Find, download and manage models (Ctrl+M)",
                                                 self.show_models)
        bar.addWidget(self.models_button)
        self.cloud_button = self._header_button("compare", "Compare models side by side, cloud providers, "
                                                "where your words went (Ctrl+K)", self.show_cloud)
        bar.addWidget(self.cloud_button)
        self.server_button = self._header_button("server", "Local server: let other apps on this computer use your "
                                                 "models through the OpenAI or Ollama API", self.show_server)
        self.server_button.setObjectName("ServerButton")
        bar.addWidget(self.server_button)
        self.eject_button = self._header_button("eject", "Unload the model and free its memory",
                                                lambda: self.spawn(self.services.engine.stop()))
        bar.addWidget(self.eject_button)
        bar.addStretch(1)
        self.about_button = self._header_button("info", "About Hearth: version, llama.cpp build, GPU, licences (F1)",
                                                self.show_about)
        bar.addWidget(self.about_button)
        self.settings_button = self._header_button("settings", "Chat and model settings (Ctrl+,)",
                                                   self.toggle_settings)
        self.settings_button.setCheckable(True)
        bar.addWidget(self.settings_button)
        column.addWidget(header)

        self.banner = Banner(self.theme)
        banner_row = QHBoxLayout()
        banner_row.setContentsMargins(24, 10, 24, 0)
        banner_row.addWidget(self.banner)
        column.addLayout(banner_row)

        self.stack = QStackedWidget()
        self.empty_state = EmptyState()
        self.empty_state.suggestion_chosen.connect(self.send)
        self.empty_state.import_requested.connect(self.import_model)
        self.empty_state.browse_requested.connect(self.show_models)
        self.message_list = MessageList()
        self.message_list.earlier_requested.connect(self.show_earlier)
        self.stack.addWidget(self.empty_state)
        self.stack.addWidget(self.message_list)
        column.addWidget(self.stack, 1)

        self.composer = Composer(self.theme)
        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(self.stop)
        self.composer.collections = self._collections_for_chat
        self.composer.attach_requested.connect(self.choose_attachments)
        self.composer.collection_toggled.connect(self.use_collection)
        self.composer.detach_requested.connect(self.detach)
        self.composer.documents_requested.connect(self.show_documents)
        # Files dropped anywhere on the chat (its messages, the empty page, the box) are attached.
        self.file_drop = FileDrop(self)
        self.file_drop.dropped.connect(self.attach_files)
        for target in (area, self.empty_state, self.message_list.viewport(), self.composer,
                       self.composer.input.viewport()):
            self.file_drop.watch(target)
        self.composer.setMaximumWidth(COLUMN_WIDTH)
        composer_row = QHBoxLayout()
        composer_row.setContentsMargins(24, 6, 24, 6)
        composer_row.addStretch(1)
        composer_row.addWidget(self.composer, 100)
        composer_row.addStretch(1)
        column.addLayout(composer_row)
        self.where_note = QLabel(LOCAL_NOTE)
        self.where_note.setObjectName("SettingsHint")
        self.where_note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        column.addWidget(self.where_note)
        column.addSpacing(6)
        return area

    def _header_button(self, name: str, tip: str, slot) -> QToolButton:
        return tool_button(name, tip, slot, self.theme.text, size=18)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        status.setSizeGripEnabled(False)
        self.engine_label = QLabel("No model loaded")
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 0)  # llama.cpp gives no load fraction: a busy bar
        self.load_progress.setFixedWidth(90)
        self.load_progress.setFixedHeight(10)
        self.load_progress.setTextVisible(False)
        self.load_progress.hide()
        self.context_label = QLabel("")
        self.memory_label = QLabel("")
        self.offline_button = QToolButton()
        self.offline_button.setObjectName("OfflineSwitch")
        self.offline_button.setCheckable(True)
        self.offline_button.toggled.connect(self.set_offline)
        status.addWidget(self.engine_label)
        status.addWidget(self.load_progress)
        status.addPermanentWidget(self.context_label)
        status.addPermanentWidget(self.memory_label)
        self.server_status = QToolButton()
        self.server_status.setObjectName("ServerStatus")
        self.server_status.setText("Server: off")
        self.server_status.setToolTip("The local API server for other apps: click to open its page")
        self.server_status.clicked.connect(self.show_server)
        status.addPermanentWidget(self.server_status)
        status.addPermanentWidget(self.offline_button)
        self._show_offline(self.services.settings.offline)

    # -- background work --------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run a coroutine on the loop; an error nobody expected is logged and shown as a sentence."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if isinstance(exc, HearthError):
                self.notify(str(exc))
            elif exc is not None:
                log.error("unexpected error", exc_info=exc)
                self.notify(
                    f"Something went wrong inside Hearth ({type(exc).__name__}). Nothing you wrote "
                    f"is lost. The details are in {self.services.paths.logs / 'hearth.log'}.")

        task.add_done_callback(done)
        return task

    def save(self, change: Callable[[], Any], then: Callable[[], Any] | None = None) -> bool:
        """Write a change to the database from the window's thread, holding it at most the store's
        busy timeout (100 ms): while another program holds the database locked (DatabaseBusy), the
        change waits in line with a sentence, is tried again every SAVE_RETRY_MS, and is written
        when the lock goes; `then()` runs once it is written. Returns whether it was written now."""
        if not self._unsaved:
            try:
                change()
            except DatabaseBusy:
                pass
            else:
                if then is not None:
                    then()
                return True
        self._unsaved.append((change, then))  # after the changes already waiting: in the order made
        self.banner.show_text(DATABASE_BUSY, level="info")
        self._save_timer.start()
        return False

    def _on_chat_notice(self, text: str) -> None:
        """A sentence from the chat service (a chat template replaced, …)."""
        self.banner.show_text(text, level="info")

    def _on_database_wait(self, text: str) -> None:
        """The chat service waits for another program's lock to save a message."""
        if not self._unsaved:  # else the banner already says the database is in use, and that changes wait
            self.banner.show_text(text, level="info")

    def _clear_banner(self) -> None:
        """A new message clears the last sentence, unless changes still wait for the database."""
        if self._unsaved:
            self.banner.show_text(DATABASE_BUSY, level="info")
        else:
            self.banner.hide()

    def _save_unsaved(self) -> None:
        while self._unsaved:
            change, then = self._unsaved[0]
            try:
                change()
            except DatabaseBusy:
                self._save_timer.start()
                return
            except (HearthError, KeyError) as exc:  # e.g. the chat was deleted meanwhile: this one is moot
                log.info("a change waiting for the database was dropped: %s", exc)
            else:
                if then is not None:
                    then()
            self._unsaved.pop(0)
        log.info("the changes that waited for the database are saved")
        if self.banner.label.text() == DATABASE_BUSY:
            self.banner.show_text("The database is free again: your changes are saved.", level="info")

    def notify(self, text: str, level: str = "error") -> None:
        """A sentence on the page the user is looking at."""
        page = self.pages.currentWidget()
        pages = (self._models_page, self._cloud_page, self._server_page, self._documents_page)
        banner = page.banner if page is not None and page in pages else self.banner
        banner.show_text(text, level)

    # -- offline mode ------------------------------------------------------------------------------
    def set_offline(self, on: bool) -> None:
        """Offline mode: nothing but this computer is reached (enforced in core/net.py)."""
        if on != self.services.settings.offline:
            self.services.save_settings(replace(self.services.settings, offline=on))
        self._show_offline(on)
        if self._cloud_page is not None:  # (one built later reads the setting)
            self._cloud_page.set_offline(on)
        self._show_where()

    def _show_offline(self, on: bool) -> None:
        self.offline_button.blockSignals(True)
        self.offline_button.setChecked(on)
        self.offline_button.blockSignals(False)
        self.offline_button.setText("Offline" if on else "Online")
        self.offline_button.setToolTip("Offline mode is on: Hearth connects to nothing but this computer. Click to "
                                       "allow downloads and cloud models again." if on else
                                       "Click for offline mode: Hearth then connects to nothing but this computer.")

    # -- models ---------------------------------------------------------------------------------
    def refresh_models(self, select: str | None = None) -> None:
        installed = self.services.library.models()
        models = [m for m in installed if not m.for_embeddings]  # embedding models cannot chat
        remote = self.services.providers.targets()
        wanted = select or self.selected_model_id() or self.services.settings.last_model
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for m in models:
            problem = file_problem(m)  # a linked file moved or deleted: said here, not by the engine
            label = f"{shown(m.name)}   ·   {m.quantization}   ·   {problem or human_bytes(m.size)}"
            self.model_combo.addItem(icon("chip", self.theme.muted), label, m.id)
            if problem:
                self.model_combo.setItemData(self.model_combo.count() - 1, f"{problem}: {m.path}. Open Models "
                                             "to locate it or remove it.", Qt.ItemDataRole.ToolTipRole)
        if not models:
            self.model_combo.addItem("No chat model installed" if installed else "No model installed", "")
        if remote:
            self.model_combo.insertSeparator(self.model_combo.count())
        for t in remote:
            self.model_combo.addItem(icon("cloud", self.theme.muted), f"{t.provider.label}   ·   {t.model}", t.id)
            self.model_combo.setItemData(self.model_combo.count() - 1, f"Sends your words to {t.provider.processed_on}",
                                         Qt.ItemDataRole.ToolTipRole)
        index = self.model_combo.findData(wanted)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        self.model_combo.setEnabled(bool(models or remote))
        self.empty_state.set_model(self.selected_model_name())
        self._show_where()

    def cloud_target(self):
        """The chosen model when it is a cloud one, else None."""
        return self.services.providers.target(self.selected_model_id())

    def _show_where(self) -> None:
        target = self.cloud_target()
        if target is None:
            self.where_note.setText(LOCAL_NOTE)
        else:
            p = target.provider
            where = "this computer" if p.on_this_machine else p.processed_on
            self.where_note.setText(f"Your words go to {where} ({p.label}). Answers can be wrong: check what matters.")

    def show_models(self) -> None:
        self._hide_settings()
        self.pages.setCurrentWidget(self.models_page)
        self.models_page.refresh_installed()

    def show_about(self) -> None:
        from desktop.ui.about import AboutDialog

        dialog = AboutDialog(self.services.paths.data, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def show_cloud(self) -> None:
        self._hide_settings()
        self.cloud_page.refresh()
        self.pages.setCurrentWidget(self.cloud_page)

    def show_server(self) -> None:
        self._hide_settings()
        self.pages.setCurrentWidget(self.server_page)

    def _show_server_state(self) -> None:
        """The status bar's entry says whether the server is on and where; a start that failed
        while its page is not shown is said in the banner."""
        sw = self.server
        network = " and your network" if sw.config is not None and sw.config.host != LOOPBACK else ""
        text = {"on": f"Server: on {host_port(sw.address)}{network}", "starting": "Server: starting…",
                "stopping": "Server: stopping…"}.get(sw.state, "Server: off")
        self.server_status.setText(text)
        self.server_status.setProperty("on", sw.state == "on")
        self.server_status.style().unpolish(self.server_status)
        self.server_status.style().polish(self.server_status)
        self.server_status.setToolTip(sw.error or "The local API server for other apps: click to open its page")
        if sw.state == "off" and sw.error and self.pages.currentWidget() is not self._server_page:
            self.notify(f"The local server is off: {sw.error}")

    def show_chat(self) -> None:
        self.pages.setCurrentWidget(self.chat_page)
        self.composer.input.setFocus()

    def use_model(self, model_id: str) -> None:
        self.refresh_models(select=model_id)
        self.show_chat()
        if self.selected_model_id() == model_id:
            self._model_chosen(self.model_combo.currentIndex())

    def selected_model_id(self) -> str:
        return str(self.model_combo.currentData() or "")

    def selected_model_name(self) -> str | None:
        model_id = self.selected_model_id()
        if not model_id:
            return None
        target = self.cloud_target()
        if target is not None:
            return target.title
        try:
            return self.services.library.get(model_id).name
        except HearthError:
            return None

    def _show_model_settings(self) -> None:
        """The settings panel's per-model part: the chosen local model's chat format."""
        if self._settings_panel is None:
            return
        record = None
        if self.cloud_target() is None and self.selected_model_id():
            try:
                record = self.services.library.get(self.selected_model_id())
            except HearthError:
                record = None
        self._settings_panel.show_chat_format(record.chat_format if record is not None else None)

    def _save_chat_format(self, choice: str) -> None:
        model_id = self.selected_model_id()
        if not model_id or self.cloud_target() is not None:
            return
        self.save(lambda: self.services.store.set_chat_format(model_id, choice))
        self.banner.show_text("The new chat format applies from your next message (the model reloads).",
                              level="info")

    def _model_chosen(self, _index: int) -> None:
        self._show_model_settings()
        model_id = self.selected_model_id()
        if not model_id:
            return
        if self.current_id is not None:
            conversation_id = self.current_id
            self.save(lambda: self.services.store.update_conversation(conversation_id, model=model_id))
        self.empty_state.set_model(self.selected_model_name())
        self._show_where()
        if self.cloud_target() is None:  # new chats start on the last local model, never a cloud one
            self.services.save_settings(replace(self.services.settings, last_model=model_id))
            self.spawn(self.load_selected_model())

    async def load_selected_model(self) -> None:
        model_id = self.selected_model_id()
        if model_id and self.cloud_target() is None:
            try:
                record = self.services.library.require_file(self.services.library.get(model_id))
            except ModelFileMissing as exc:
                self.notify(f"{exc} Open Models (Locate… or Remove).")
                return
            await self.services.engine.ensure(record, self.services.settings.load)

    async def reload_model(self) -> None:
        await self.services.engine.stop()
        await self.load_selected_model()

    def import_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.spawn(self.import_path(path))

    async def import_path(self, path: str) -> None:
        relay = _Relay()
        relay.progress.connect(lambda done, total: self.engine_label.setText(
            f"Importing {Path(path).name}: {done * 100 // max(total, 1)} %"))
        try:
            record = await asyncio.to_thread(self.services.library.import_file, path,
                                             progress=relay.progress.emit)
        finally:
            self._on_engine_state(self.services.engine.state, "")
        self.refresh_models(select=record.id)
        self._model_chosen(self.model_combo.currentIndex())
        if self._models_page is not None:
            self._models_page.refresh_installed()
        self.banner.show_text(f"Added {record.name} ({record.quantization}, {human_bytes(record.size)}).",
                              level="info")

    # -- engine state -----------------------------------------------------------------------------
    def _on_engine_state(self, state: str, detail: str) -> None:
        engine = self.services.engine
        name = engine.model.name if engine.model else "the model"
        self.load_progress.setVisible(state == "loading")
        self.eject_button.setEnabled(state in ("ready", "loading"))
        text = {
            "loading": f"Loading {name}…",
            "ready": f"● {name} · ready",
            "failed": "The model could not be loaded",
            "crashed": f"The engine running {name} stopped",
            "stopped": "No model loaded",
        }.get(state, state)
        self.engine_label.setText(text)
        if state == "ready":
            notice = engine.take_notice()  # about its chat template: said once, in words
            if notice:
                self.banner.show_text(notice, level="info")
            if self._settings_panel is not None:
                self._settings_panel.set_prompt_info(engine.prompt_info)
        if state == "ready" and engine.plan:
            self.engine_label.setToolTip(
                f"{engine.plan.model.path}\nContext {engine.n_ctx} tokens · {engine.plan.n_threads} "
                f"threads · needs about {human_bytes(engine.plan.memory.total)}")
        if self._streaming is not None and state == "loading":
            self._streaming.start_streaming(name, "Loading the model…")
        elif self._streaming is not None and state == "ready":
            self._streaming.start_streaming(name, "Thinking…")
        self._update_context()

    def _check_engine(self) -> None:
        if self.services.chat.busy:
            return
        death = self.services.engine.check_alive()
        if death:
            self.banner.show_text(f"{death} {RESTART_HINT}")

    def _update_memory(self) -> None:
        app = hardware.process_memory()
        text = f"Memory: Hearth {human_bytes(app)}"
        pid = self.services.engine.pid
        if pid and self.services.engine.is_alive():
            text += f" · model {human_bytes(hardware.process_memory(pid))}"
        self.memory_label.setText(text)

    def _update_context(self) -> None:
        n_ctx = self.services.engine.n_ctx if self.services.engine.is_alive() else 0
        used = None
        if self.current_id is not None:
            last = self.services.store.last_counted_answer(self.current_id)
            if last is not None:
                used = (last.tokens_in or 0) + (last.tokens_out or 0)
        left_out = self._left_out.get(self.current_id or 0, 0)
        if n_ctx and used is not None:
            note = f" · the oldest {left_out} messages no longer fit" if left_out else ""
            self.context_label.setText(f"Context: {min(used, n_ctx):,} of {n_ctx:,} tokens{note}")
        elif n_ctx:
            self.context_label.setText(f"Context: {n_ctx:,} tokens")
        else:
            self.context_label.setText("")

    # -- conversations ---------------------------------------------------------------------------
    def refresh_conversations(self) -> None:
        if not self.sidebar.searching:
            self.sidebar.set_conversations(self._conversations(), self.current_id)

    def _conversations(self) -> list[Conversation]:
        """The chats as the user left them: changes still waiting for the database shown as made."""
        return [replace(c, title=self._unsaved_titles.get(c.id, c.title)) for c in self.services.store.conversations()
                if c.id not in self._unsaved_deletions]

    def _search(self, text: str) -> None:
        if text:
            self.sidebar.show_hits(self.services.store.search(text))
        else:
            self.refresh_conversations()

    def _drop_if_empty(self, conversation_id: int | None) -> None:
        """Leave no empty 'New chat' behind when the user moves on without writing."""
        if conversation_id is None:
            return
        try:
            conversation = self.services.store.conversation(conversation_id)
        except KeyError:
            return
        if conversation.title == NEW_CHAT and not self.services.store.messages(conversation_id):
            self._delete(conversation_id)

    def new_chat(self) -> None:
        self._flush_settings()
        previous = self.current_id
        chosen = self.selected_model_id() if self.cloud_target() is None else ""
        try:
            conversation = self.services.chat.new_conversation(model_id=chosen)
        except DatabaseBusy:
            self.banner.show_text("Hearth's database is in use by another program; a new chat can start "
                                  "once it is free.", level="info")
            return
        if previous != conversation.id:
            self._drop_if_empty(previous)
        self.open_conversation(conversation.id)
        self.composer.input.setFocus()

    def open_conversation(self, conversation_id: int, focus_message: int = 0) -> None:
        self._flush_settings()
        if self.current_id not in (None, conversation_id):
            self._drop_if_empty(self.current_id)
        try:
            conversation = self.services.store.conversation(conversation_id)
        except KeyError:
            return
        self.current_id = conversation_id
        self.setWindowTitle(f"{conversation.title} — Hearth")
        self._show_messages(conversation, focus_message)
        self._show_chat_settings(conversation)
        if conversation.model:
            index = self.model_combo.findData(conversation.model)
            if index >= 0:
                self.model_combo.setCurrentIndex(index)
        self.empty_state.set_model(self.selected_model_name())
        self.refresh_conversations()
        self._update_context()
        self._show_attachments()

    def _show_messages(self, conversation: Conversation, focus_message: int = 0) -> None:
        self.message_list.clear()
        self._streaming = None
        live = self.services.chat.live_answer()
        focus_widget = None
        store = self.services.store
        messages = store.messages(conversation.id, last=FIRST_PAGE)
        if focus_message and not any(m.id == focus_message for m in messages):
            messages = store.messages(conversation.id, since=focus_message)  # a search hit far back: down to it
        if live and live.replaces is not None:  # an answer being written again: the new one, live
            messages = [store.message(live.message_id) if m.id == live.replaces else m for m in messages]
        self._earlier_count = store.count_messages(conversation.id, before=messages[0].id) if messages else 0
        self.message_list.set_earlier(self._earlier_count)
        written_again = store.with_versions(conversation.id)
        for message in messages:
            widget = self._add_widget(message.role)
            widget.show_message(message)
            if message.id in written_again:
                self._show_versions(widget)
            if live and live.message_id == message.id:
                self._attach_stream(widget)
            if message.id == focus_message:
                focus_widget = widget
        self._mark_last_answer()
        self.stack.setCurrentWidget(self.message_list if self.message_list.widgets() else self.empty_state)
        if focus_widget is not None:
            self.message_list.scroll_to(focus_widget)
        else:
            self.message_list.scroll_to_bottom()

    def _add_widget(self, role: str, *, shown: bool = True) -> MessageWidget:
        widget = MessageWidget(role, self.theme)
        widget.regenerate_requested.connect(self.regenerate)
        widget.version_requested.connect(lambda step, w=widget: self._switch_version(w, step))
        if shown:
            self.message_list.add(widget)
        return widget

    def show_earlier(self, count: int = PAGE) -> None:
        """Add up to `count` earlier messages of the open chat above what is shown."""
        shown = self.message_list.widgets()
        first = next((w.message for w in shown if w.message is not None), None)
        if self.current_id is None or first is None or not self._earlier_count:
            return
        page = self.services.store.messages(self.current_id, before=first.id, last=count)
        written_again = self.services.store.with_versions(self.current_id)
        widgets = []
        for message in page:
            widget = self._add_widget(message.role, shown=False)
            widget.show_message(message)
            if message.id in written_again:
                self._show_versions(widget)
            widgets.append(widget)
        self.message_list.prepend(widgets)
        self._earlier_count = max(0, self._earlier_count - len(page))
        self.message_list.set_earlier(self._earlier_count)

    def _versions_of(self, message: Message) -> list[Message]:
        """The versions of an answer one may switch to (not one another Hearth is writing)."""
        return [v for v in self.services.store.versions(message.id) if v.status != "streaming" or v.id == message.id]

    def _show_versions(self, widget: MessageWidget) -> None:
        if widget.message is not None and widget.role == "assistant":
            versions = self._versions_of(widget.message)
            widget.set_versions([v.id for v in versions].index(widget.message.id), len(versions))

    def _switch_version(self, widget: MessageWidget, step: int) -> None:
        """Show (and send from now on) the earlier or later version of an answer written again."""
        if self.answering or widget.message is None:
            return
        versions = self._versions_of(widget.message)
        index = [v.id for v in versions].index(widget.message.id) + step
        if 0 <= index < len(versions):
            try:
                chosen = self.services.store.choose_version(versions[index].id)
            except DatabaseBusy:
                self.banner.show_text("Hearth's database is in use by another program; switch versions "
                                      "once it is free.", level="info")
                return
            widget.show_message(chosen)
            widget.set_versions(index, len(versions))
            self._update_context()

    def _mark_last_answer(self) -> None:
        """Write again, on the last answer only, and only while no answer is being written."""
        widgets = self.message_list.widgets()
        busy = self.answering
        for i, widget in enumerate(widgets):
            widget.set_regenerate_visible(not busy and i == len(widgets) - 1 and widget.role == "assistant")

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        title = title.strip() or NEW_CHAT  # as the store keeps it
        self._unsaved_titles[conversation_id] = title
        if conversation_id == self.current_id:
            self.setWindowTitle(f"{title} — Hearth")

        def written() -> None:
            if self._unsaved_titles.get(conversation_id) == title:
                del self._unsaved_titles[conversation_id]
            QTimer.singleShot(0, self.refresh_conversations)

        self.save(lambda: self.services.store.update_conversation(conversation_id, title=title), then=written)

    def confirm_delete(self, conversation_id: int) -> None:
        try:
            conversation = self.services.store.conversation(conversation_id)
        except KeyError:
            return
        confirm(self, "ConfirmDelete", "Delete chat", f"Delete “{conversation.title}” and all its messages?",
                "This cannot be undone.", "Delete", lambda: self.delete_conversation(conversation_id),
                destructive=True)

    def delete_conversation(self, conversation_id: int) -> None:
        live = self.services.chat.live_answer()
        if live and conversation_id == self.current_id:
            self.stop()
        self._delete(conversation_id)
        if conversation_id == self.current_id:
            self.current_id = None
            remaining = self._conversations()
            if remaining:
                self.open_conversation(remaining[0].id)
            else:
                self.new_chat()
            if self.current_id is None:  # no new chat while the database is locked: an empty page
                self.message_list.clear()
                self.stack.setCurrentWidget(self.empty_state)
                self.setWindowTitle("Hearth")
        self.refresh_conversations()

    def _delete(self, conversation_id: int) -> None:
        self._unsaved_deletions.add(conversation_id)
        self.save(lambda: self.services.store.delete_conversation(conversation_id),
                  then=lambda: self._unsaved_deletions.discard(conversation_id))

    def _save_chat_settings(self, system_prompt: str, sampling: dict) -> None:
        if self.current_id is not None:
            conversation_id = self.current_id
            self.save(lambda: self.services.store.update_conversation(conversation_id, system_prompt=system_prompt,
                                                                      sampling=sampling))

    def _save_load_options(self, options: LoadOptions) -> None:
        self.services.save_settings(replace(self.services.settings, load=options))

    def _make_default(self) -> None:
        panel = self.settings_panel
        self.services.save_settings(replace(self.services.settings, sampling=panel.sampling(),
                                            system_prompt=panel.system_prompt.toPlainText()))
        self.banner.show_text("New chats will start with these settings.", level="info")

    def toggle_settings(self) -> None:
        visible = not self.settings_panel.isVisible()
        self.settings_panel.setVisible(visible)
        self.settings_button.setChecked(visible)

    # -- documents in the chat ---------------------------------------------------------------------
    def choose_attachments(self) -> QFileDialog:
        """The system's file dialog; the files chosen are attached to the open chat."""
        dialog = QFileDialog(self, "Attach files to this chat", str(Path.home()))
        dialog.setObjectName("AttachDialog")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.filesSelected.connect(self.attach_files)
        dialog.open()
        return dialog

    def attach_files(self, paths: list[str]) -> None:
        """Attach files to the open chat (a new one if none is open); a file Hearth cannot read
        gets its sentence in the banner and no chip."""
        if not paths:
            return
        if self.current_id is None:
            self.new_chat()
        if self.current_id is None:
            return
        folders = [p for p in paths if Path(p).is_dir()]
        problems: list[str] = []
        for path in paths:  # one at a time: a file that cannot be read keeps no other out
            if path in folders:
                continue
            try:
                problems += self.services.chat.attach(self.current_id, [path])
            except HearthError as exc:
                name = Path(path).name
                problems.append(str(exc) if name in str(exc) else f"{name}: {exc}")
        if folders:
            problems.append(f"{Path(folders[0]).name} is a folder: add folders on the Documents page, then use "
                            "that collection here (paperclip › Use a collection).")
        if problems:
            self.banner.show_text(" ".join(problems))
        self._show_attachments()

    def detach(self, kind: str, value: str) -> None:
        """A chip's ×: the chat stops using that file or collection."""
        if self.current_id is None:
            return
        try:
            if kind == "file":
                self.services.chat.detach(self.current_id, value)
            else:
                used = self.services.chat.documents(self.current_id).collections
                self.services.chat.use_collections(self.current_id, [n for n in used if n != value])
        except HearthError as exc:
            self.banner.show_text(str(exc))
        self._show_attachments()

    def use_collection(self, name: str, on: bool) -> None:
        """The paperclip's menu ticked (or unticked) a collection for the open chat."""
        if self.current_id is None:
            self.new_chat()
        if self.current_id is None:
            return
        try:
            used = list(self.services.chat.documents(self.current_id).collections)
            wanted = used + [name] if on and name not in used else [n for n in used if n != name or on]
            self.services.chat.use_collections(self.current_id, wanted)
        except HearthError as exc:
            self.banner.show_text(str(exc))
        self._show_attachments()

    def _collections_for_chat(self) -> list[tuple[str, bool]]:
        """Every collection, and whether the open chat uses it (the paperclip's menu)."""
        try:
            names = self.documents_page.collection_names()
            used = set(self.services.chat.documents(self.current_id).collections) if self.current_id else set()
        except HearthError as exc:
            self.banner.show_text(str(exc))
            return []
        return [(name, name in used) for name in names]

    def _show_attachments(self) -> None:
        """The chips above the box: the open chat's files and collections."""
        files: list[str] = []
        collections: list[str] = []
        if self.current_id is not None:
            try:
                docs = self.services.chat.documents(self.current_id)
                files, collections = list(docs.files), list(docs.collections)
            except (HearthError, KeyError):
                pass
        self.composer.set_attachments(files, collections)

    # -- chatting --------------------------------------------------------------------------------
    def send(self, text: str) -> None:
        chat = self.services.chat
        text = text.strip()
        if not text or self.answering:
            return
        target = self.cloud_target()
        if (target is not None and self.current_id is not None
                and chat.documents_consent_needed(self.current_id)):
            conversation_id = self.current_id

            def granted() -> None:
                chat.grant_documents_consent(conversation_id)
                if self.current_id == conversation_id:
                    self.send(text)

            def not_now() -> None:
                if not self.composer.input.toPlainText().strip():
                    self.composer.input.setPlainText(text)  # nothing was sent: the question waits in the box
                self.banner.show_text("Nothing was sent. To use your documents privately, choose a model on this "
                                      "computer; or take them off this chat (× on each) to ask without them.",
                                      level="info")

            ask_documents_consent(self, target.provider.label, granted, not_now)
            return
        if not self.services.library.chat_models() and self.cloud_target() is None:
            self.banner.show_text("Import a model first: Hearth needs a .gguf file to chat with." if not
                                  self.services.library.models() else "Download or import a chat model first: "
                                  "the models installed are embedding models, which cannot chat.")
            return
        self._flush_settings()
        if self.current_id is None:
            self.new_chat()
        if self.current_id is None:  # no chat could be made (the database is locked): the text stays
            self.composer.input.setPlainText(text)
            return
        self._clear_banner()
        user = self._add_widget("user")
        user.set_text(text)
        self.stack.setCurrentWidget(self.message_list)
        self.message_list.scroll_to_bottom()
        conversation_id = self.current_id
        self._begin_answer(conversation_id)
        if self.services.store.conversation(conversation_id).title == NEW_CHAT:
            self._show_title(conversation_id, title_from(text))  # as chat.send saves it
        self.spawn(self._generate(conversation_id, chat.send(conversation_id, text, on_text=self._on_text),
                                  unsaved=(text, user)))

    def regenerate(self) -> None:
        chat = self.services.chat
        if self.answering or self.current_id is None:
            return
        widgets = self.message_list.widgets()
        if widgets and widgets[-1].role == "assistant":
            # Its new version is written in its place; should that fail, it comes back.
            self.message_list.remove(widgets[-1])
        self._clear_banner()
        conversation_id = self.current_id
        self._begin_answer(conversation_id)
        self.spawn(self._generate(conversation_id, chat.regenerate(conversation_id, on_text=self._on_text)))

    def stop(self) -> None:
        self.services.chat.stop()

    @property
    def answering(self) -> bool:
        """An answer is being written (its model perhaps still loading), or is still being put on screen."""
        return self._writing is not None or self.services.chat.busy or self._streaming is not None

    def _show_title(self, conversation_id: int, title: str) -> None:
        """A chat's new title in the list and the title bar, before the chat service has saved it."""
        self.sidebar.show_title(conversation_id, title)
        if conversation_id == self.current_id:
            self.setWindowTitle(f"{title} — Hearth")

    def _begin_answer(self, conversation_id: int) -> None:
        self._writing = conversation_id
        widget = self._add_widget("assistant")
        engine = self.services.engine
        name = self.selected_model_name() or "Model"
        target = self.cloud_target()
        loaded = engine.model is not None and engine.model.id == self.selected_model_id() and engine.is_alive()
        note = (f"Sending to {target.provider.processed_on}…" if target is not None else
                "Thinking…" if loaded else "Loading the model…")
        widget.start_streaming(name, note)
        self._attach_stream(widget)
        self._mark_last_answer()

    def _on_wait(self, seconds: float, why: str) -> None:
        """A cloud provider asked Hearth to wait (rate limit) or failed for a moment: say so."""
        if self._streaming is not None:
            self._streaming.meta.setText(waiting_note(seconds, why))

    def _attach_stream(self, widget: MessageWidget) -> None:
        self._streaming = widget
        widget.write_live()
        self.message_list.set_live(widget)
        self._dirty = False
        self._next_flush = 0.0
        self.composer.set_generating(True)

    def _on_text(self, _live) -> None:
        self._dirty = True
        if not self._flush_timer.isActive():
            self._flush_timer.start(max(0, int((self._next_flush - time.monotonic()) * 1000)))

    def _flush(self) -> None:
        """Put the text that arrived since the last drawing on screen (at most ~30 times a second,
        less when drawing is costly)."""
        live = self.services.chat.live_answer()
        if self._streaming is not None and self._dirty and live is not None:
            self._dirty = False
            text = live.text
            thinking = live.thinking
            if text != self._streaming.text or thinking != self._streaming.thinking:
                started = time.perf_counter()
                self._streaming.set_thinking(thinking, live.phase, live.thinking_ms)
                self._streaming.set_text(text)
                note = "" if live.phase == "thinking" else "Writing…"  # the section says "Thinking…"
                if self._streaming.meta.text() != note:
                    self._streaming.meta.setText(note)
                # Lay out now, to know the cost, and all the way up (each level's layout asks its
                # parent's on the next turn of the event loop): the message's new height, the
                # list's, its scroll range and the scroll to the bottom then reach the screen in
                # one paint rather than three, each a repaint of the whole chat area.
                for _level in range(LAYOUT_LEVELS):
                    QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
                cost_ms = (time.perf_counter() - started) * 1000
                interval = min(MAX_FLUSH_INTERVAL_MS, max(FLUSH_INTERVAL_MS, cost_ms * 2 * RENDER_BUDGET))
                self._next_flush = time.monotonic() + interval / 1000

    async def _generate(self, conversation_id: int, work: Coroutine[Any, Any, Message],
                        unsaved: tuple[str, MessageWidget] | None = None) -> None:
        try:
            message = await work
        except MessageNotSaved as exc:
            # Nothing reached the disk: take the bubbles back and give the words back to the box.
            assert unsaved is not None
            text, user_widget = unsaved
            for widget in (user_widget, self._streaming):
                if widget is not None and widget in self.message_list.widgets():
                    self.message_list.remove(widget)
            self._streaming = self._writing = None
            if not self.composer.input.toPlainText().strip():
                self.composer.input.setPlainText(text)
            self.banner.show_text(str(exc))
            self._mark_last_answer()
            # The title shown when it was sent was not saved either.
            self._show_title(conversation_id, self.services.store.conversation(conversation_id).title)
            return
        except Exception:
            # Something nobody expected: the window must not stay busy with an answer that ended.
            self._streaming = self._writing = None
            self.message_list.set_live(None)
            self._mark_last_answer()
            raise  # and spawn() says so in the banner
        finally:
            self._writing = None
            self._flush_timer.stop()
            self.composer.set_generating(False)
        shown = message
        if message.superseded and message.replaces is not None:
            # A new version that failed or was stopped: the answer it was to replace stays.
            shown = self.services.store.message(message.replaces)
        if self.current_id == conversation_id:
            if self._streaming is not None:
                self._streaming.show_message(shown)
                self._show_versions(self._streaming)
            self._streaming = None
            self.message_list.set_live(None)
            self.setWindowTitle(f"{self.services.store.conversation(conversation_id).title} — Hearth")
        else:
            self._streaming = None
        self._mark_last_answer()  # on the chat shown, whichever it is
        kept = " The earlier answer is kept." if shown is not message else ""
        if message.status == "error" and message.error:
            self.banner.show_text(message.error + kept)
        elif kept:
            self.banner.show_text(f"Stopped.{kept}", level="info")
        else:
            self._left_out[conversation_id] = self.services.chat.trimmed_messages
        self.refresh_conversations()
        self._update_context()
        self._update_memory()

    # -- closing ---------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        for timer in (self._watchdog, self._memory_timer, self._flush_timer):
            timer.stop()
        self.services.engine.on_state = None
        self._flush_settings()
        self.services.chat.stop()
        for task in list(self._tasks):
            task.cancel()
        self.services.downloads.on_change = self.services.downloads.on_installed = None
        self.services.downloads.halt()  # the partial files stay: the downloads resume next time
        if self._cloud_page is not None:
            self._cloud_page.halt()
        if self._documents_page is not None:
            self._documents_page.halt()  # indexing resumes at the next launch
        self._drop_if_empty(self.current_id)
        self._save_before_closing()
        self.server.stop_before_closing()  # its models unload before the window's engine stops
        self.services.chat.close_documents_now()  # the documents' embedding engine, if a chat started it
        self.services.engine.stop_now()
        super().closeEvent(event)

    def _save_before_closing(self, wait_s: float = 3.0) -> None:
        """Changes still waiting for a locked database get a last few seconds (the window is going)."""
        self._save_timer.stop()
        deadline = time.monotonic() + wait_s
        while self._unsaved:
            self._save_unsaved()
            self._save_timer.stop()
            if not self._unsaved or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if self._unsaved:
            log.warning("%d changes were not saved: another program held the database locked until Hearth closed",
                        len(self._unsaved))
