"""The Documents page: collections of folders and files Hearth reads into passages for chats to
search; adding (buttons or drag and drop) and indexing in the background with its progress, each
file's state and the reason a file failed, removing a collection. Everything stays on this
computer."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core.docs import DEFAULT_COLLECTION
from desktop.core.errors import HearthError
from desktop.core.services import Services
from desktop.core.text import shown
from desktop.ui.icons import icon
from desktop.ui.sidebar import when
from desktop.ui.sources import elide_middle, local_files
from desktop.ui.theme import Theme
from desktop.ui.widgets import confirm, data_table, muted, page_frame

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]

EMPTY_TEXT = ("Add folders or files, and Hearth reads them into passages it can search: PDF, Word (DOCX), "
              "text, Markdown, HTML, CSV and source code. Attach them to a chat with the paperclip, and "
              "answers say which file and page they come from.")
PRIVATE_TEXT = "Your documents and their index never leave this computer."
KEYWORDS_ONLY = ("Search uses keywords only; add an embedding model (Models → Discover: Nomic Embed Text) "
                 "for better results.")
STATE_NAMES = {"waiting": "Waiting", "indexing": "Indexing…", "done": "Indexed", "failed": "Failed",
               "skipped": "Skipped"}
REFRESH_S = 1.0  # while indexing, the tables are read again at most this often
COLLECTION_ROWS = 5  # the collections table shows this many rows before it scrolls


def time_left(seconds: float | None) -> str:
    """"about 3 min left" for an estimate in seconds ("" when there is none yet)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    if seconds < 45:
        return "less than a minute left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


def progress_line(progress: Any) -> str:
    """"12 of 40 files · 318 pages · 2,140 passages · about 1 min left", from the indexer's
    Progress (files_done, files_total, pages, passages, seconds_left)."""
    done, total = int(getattr(progress, "files_done", 0)), int(getattr(progress, "files_total", 0))
    pages, passages = int(getattr(progress, "pages", 0)), int(getattr(progress, "passages", 0))
    parts = [f"{done:,} of {total:,} file{'s' if total != 1 else ''}", f"{pages:,} page{'s' if pages != 1 else ''}",
             f"{passages:,} passage{'s' if passages != 1 else ''}", time_left(getattr(progress, "seconds_left", None))]
    return " · ".join(p for p in parts if p)


def updated_text(timestamp: float | None, now: dt.datetime | None = None) -> str:
    """When a collection was last indexed, as a person says it: "14:02", "Monday", "03 Nov 2026"."""
    return when(timestamp, now) if timestamp else "—"  # (the same words as the chats' list)


def has_embedding_model(services: Services) -> bool:
    """Whether an embedding model is installed (vectors can then be made for hybrid search)."""
    return any(getattr(m, "for_embeddings", False) for m in services.library.models())


def in_its_row(reason: str, name: str) -> str:
    """A file's reason as its row shows it: without the file's name the row already gives
    ("“a.txt” is not text…" -> "Is not text…"); the whole sentence stays on hover."""
    quoted = f"“{name}” "
    if reason.startswith(quoted) and len(reason) > len(quoted):
        rest = reason[len(quoted):]
        return rest[0].upper() + rest[1:]
    return reason


def numbers_right(table: QTableWidget, columns: Sequence[int]) -> None:
    """Columns of numbers: their headings right-aligned, over the figures."""
    for column in columns:
        table.horizontalHeaderItem(column).setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


class _MiddleElide(QStyledItemDelegate):
    """File names cut in their middle, so the suffix and the start both stay readable."""

    def initStyleOption(self, option, index) -> None:  # noqa: N802 (Qt's name)
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideMiddle


class CollectionDialog(QDialog):
    """Which collection new files go into: an existing one, or a new name typed in."""

    def __init__(self, names: Sequence[str], current: str, count: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("CollectionDialog")
        self.setWindowTitle("Add to a collection")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(10)
        what = f"{count} item{'s' if count != 1 else ''}"
        layout.addWidget(QLabel(f"Add {what} to which collection? Type a name for a new one."))
        self.name = QComboBox()
        self.name.setEditable(True)
        self.name.addItems(list(names) or [DEFAULT_COLLECTION])
        self.name.setCurrentText(current or (names[0] if names else DEFAULT_COLLECTION))
        self.name.lineEdit().selectAll()
        layout.addWidget(self.name)
        self.problem = QLabel()
        self.problem.setObjectName("ErrorText")
        self.problem.hide()
        layout.addWidget(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = buttons.addButton("Add", QDialogButtonBox.ButtonRole.AcceptRole)
        self.add_button.setDefault(True)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def chosen(self) -> str:
        return " ".join(self.name.currentText().split())

    def _accept(self) -> None:
        if not self.chosen():
            self.problem.setText("Give the collection a name.")
            self.problem.show()
            return
        self.accept()


class DocumentsPage(QWidget):
    """The Documents page (see the module). `collections_changed` tells the chat's paperclip menu."""

    back_requested = Signal()
    message = Signal(str, str)  # text, level
    collections_changed = Signal()

    def __init__(self, services: Services, theme: Theme, spawn: Spawn, index: Any = None) -> None:
        super().__init__()
        self.services = services
        self.theme = theme
        self.spawn = spawn
        self._index = index
        self._task: asyncio.Future[Any] | None = None
        self._again = False  # files were added while indexing ran: index again once it ends
        self._last_refresh = 0.0
        self._selected = ""
        self._resumed = False
        self._running = ""  # the collection being indexed
        self._embedding: Any = None  # the Embedder of the run under way, if any
        self.setAcceptDrops(True)
        column, top, self.banner, tabs = page_frame(self, theme, "Documents", self.back_requested.emit)
        tabs.tabBar().hide()
        self.add_folder_button = QPushButton(icon("folder", theme.text), "  Add folder…")
        self.add_folder_button.clicked.connect(lambda: self.choose(folder=True))
        self.add_files_button = QPushButton(icon("document", theme.text), "  Add files…")
        self.add_files_button.clicked.connect(lambda: self.choose(folder=False))
        for button in (self.add_folder_button, self.add_files_button):
            button.setIconSize(QSize(16, 16))
            top.addWidget(button)
        self.stack = QStackedWidget()
        self.empty = self._build_empty()
        self.main = self._build_main()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.main)
        tabs.addTab(self.stack, "Collections")
        self.refresh()

    @property
    def index(self) -> Any:
        """The documents database (documents.db in the data folder), opened when first needed."""
        if self._index is None:
            from desktop.core.docs.index import DocumentIndex

            self._index = DocumentIndex(self.services.paths.data / "documents.db")
        return self._index

    def notify(self, text: str, level: str = "error") -> None:
        self.banner.show_text(text, level)

    # -- building -------------------------------------------------------------------------------
    def _build_empty(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(24, 24, 24, 24)
        layout.setSpacing(10)
        layout.addStretch(1)
        glyph = QLabel()
        glyph.setPixmap(icon("books", self.theme.muted).pixmap(56, 56))
        glyph.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(glyph)
        title = QLabel("Chat with your documents")
        title.setObjectName("EmptyTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(title)
        for text, name in ((EMPTY_TEXT, "EmptyText"), (PRIVATE_TEXT, "EmptyText")):
            label = QLabel(text)
            label.setObjectName(name)
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self._centred(layout, label)
        self.empty_private = label
        layout.addSpacing(8)
        row = QHBoxLayout()
        row.addStretch(1)
        folder = QPushButton("Add a folder…")
        folder.setObjectName("Primary")
        folder.clicked.connect(lambda: self.choose(folder=True))
        files = QPushButton("Add files…")
        files.clicked.connect(lambda: self.choose(folder=False))
        row.addWidget(folder)
        row.addWidget(files)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addSpacing(8)
        self.drop_hint = QLabel("Or drop files and folders here")
        self.drop_hint.setObjectName("DropHint")
        self.drop_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.drop_hint.setFixedWidth(380)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.drop_hint)
        row.addStretch(1)
        layout.addLayout(row)
        self.empty_keywords = muted(KEYWORDS_ONLY)
        self.empty_keywords.setObjectName("SettingsHint")
        self.empty_keywords.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addSpacing(6)
        self._centred(layout, self.empty_keywords)
        layout.addStretch(2)
        return page

    @staticmethod
    def _centred(layout: QVBoxLayout, label: QLabel) -> None:
        """A wrapping label in the middle, as wide as reads well (centred by stretches: an aligned
        item would not get its wrapped height)."""
        label.setMinimumWidth(360)
        label.setMaximumWidth(540)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(label, 8)
        row.addStretch(1)
        layout.addLayout(row)

    def _build_main(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.setSpacing(8)
        self.keywords_note = muted(KEYWORDS_ONLY)
        layout.addWidget(self.keywords_note)

        self.collections_table = data_table(["Collection", "Files", "Passages", "Failed", "Updated"],
                                            "CollectionsTable", stretch=0)
        self.collections_table.setItemDelegateForColumn(0, _MiddleElide(self.collections_table))
        self.collections_table.itemSelectionChanged.connect(self._collection_chosen)
        numbers_right(self.collections_table, (1, 2, 3))
        layout.addWidget(self.collections_table)

        self.progress_card = QFrame()
        self.progress_card.setObjectName("Card")
        card = QVBoxLayout(self.progress_card)
        card.setContentsMargins(14, 10, 10, 10)
        card.setSpacing(6)
        head = QHBoxLayout()
        self.progress_title = QLabel()
        self.progress_title.setObjectName("CardTitle")
        head.addWidget(self.progress_title, 1)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop indexing. What is indexed is kept; adding or Resume goes on from there.")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("Primary")
        self.resume_button.clicked.connect(lambda: self.start_indexing())
        head.addWidget(self.stop_button)
        head.addWidget(self.resume_button)
        card.addLayout(head)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFixedHeight(8)
        self.progress_bar.setTextVisible(False)
        card.addWidget(self.progress_bar)
        self.progress_text = muted("", wrap=False)
        card.addWidget(self.progress_text)
        self.progress_file = muted("", wrap=False)
        self.progress_file.setObjectName("SettingsHint")
        card.addWidget(self.progress_file)
        self.progress_card.hide()
        layout.addWidget(self.progress_card)

        files_head = QHBoxLayout()
        self.files_title = QLabel()
        self.files_title.setObjectName("CardTitle")
        files_head.addWidget(self.files_title, 1)
        self.remove_button = QPushButton(icon("trash", self.theme.text), "  Remove collection…")
        self.remove_button.setIconSize(QSize(16, 16))
        self.remove_button.clicked.connect(self.ask_remove)
        files_head.addWidget(self.remove_button)
        layout.addLayout(files_head)
        self.files_table = data_table(["File", "State", "Pages", "Passages", "Reason"], "FilesTable", stretch=0)
        self.files_table.setItemDelegateForColumn(0, _MiddleElide(self.files_table))
        self.files_table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.files_table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        numbers_right(self.files_table, (2, 3))
        layout.addWidget(self.files_table, 1)
        self.files_empty = muted("No files in this collection yet: add a folder or files, or drop them here.")
        self.files_empty.hide()
        layout.addWidget(self.files_empty)
        return page

    # -- showing --------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self.refresh()
        self.resume_waiting()

    def resume_waiting(self) -> None:
        """Files a kill or a reboot left waiting are indexed (once per launch; Resume after that)."""
        if not self._resumed:
            self._resumed = True
            if not self.indexing and any(c.waiting for c in self._collections()):
                self.start_indexing()

    def _collections(self) -> list[Any]:
        from desktop.core.docs.context import is_hidden

        try:
            return [c for c in self.index.collections() if not is_hidden(c.name)]  # not a chat's own files
        except HearthError as exc:
            self.notify(str(exc))
            return []

    def collection_names(self) -> list[str]:
        return [c.name for c in self._collections()]

    @property
    def selected(self) -> str:
        """The collection whose files are shown ("" when there is none)."""
        return self._selected

    def refresh(self) -> None:
        """Read the collections and the selected one's files again."""
        self._last_refresh = time.monotonic()
        collections = self._collections()
        keywords_only = not has_embedding_model(self.services)
        self.keywords_note.setVisible(keywords_only)
        self.empty_keywords.setVisible(keywords_only)
        empty = not collections and not self.indexing
        self.add_folder_button.setVisible(not empty)  # the empty page has its own, in the middle
        self.add_files_button.setVisible(not empty)
        if empty:
            self.stack.setCurrentWidget(self.empty)
            self._selected = ""
            return
        self.stack.setCurrentWidget(self.main)
        names = [c.name for c in collections]
        if self._selected not in names:
            self._selected = names[0] if names else ""
        try:
            all_files = self.index.files()
        except HearthError as exc:
            self.notify(str(exc))
            all_files = []
        updated: dict[str, float] = {}
        for f in all_files:
            if f.indexed_at:
                updated[f.collection] = max(updated.get(f.collection, 0.0), f.indexed_at)
        table = self.collections_table
        table.blockSignals(True)
        table.setRowCount(len(collections))
        for row, c in enumerate(collections):
            cells = [shown(c.name), f"{c.files:,}", f"{c.passages:,}", f"{c.failed:,}" if c.failed else "—",
                     updated_text(updated.get(c.name))]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col in (1, 2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if col == 3 and c.failed:
                    item.setForeground(QColor(self.theme.error))
                table.setItem(row, col, item)
            table.item(row, 0).setToolTip(self._collection_tip(c))
            if c.name == self._selected:
                table.selectRow(row)
        table.blockSignals(False)
        rows = min(max(len(collections), 1), COLLECTION_ROWS)
        table.setFixedHeight(table.horizontalHeader().sizeHint().height() + rows * table.verticalHeader().defaultSectionSize()
                             + 2 * table.frameWidth() + 6)
        self._show_files([f for f in all_files if f.collection == self._selected])

    def _collection_tip(self, c: Any) -> str:
        lines = [shown(c.name), f"{c.files:,} files, {c.passages:,} passages"]
        if c.failed:
            lines.append(f"{c.failed:,} could not be read")
        if c.waiting:
            lines.append(f"{c.waiting:,} waiting to be indexed")
        lines.append(f"Searched by keywords and meaning ({c.embed_model})" if c.embed_model else
                     "Searched by keywords")
        return "\n".join(lines)

    def _show_files(self, files: list[Any]) -> None:
        self.files_title.setText(f"Files in “{shown(self._selected)}”" if self._selected else "Files")
        self.remove_button.setEnabled(bool(self._selected))
        table = self.files_table
        table.setRowCount(len(files))
        for row, f in enumerate(files):
            state = STATE_NAMES.get(f.state, f.state)
            reason = " ".join((f.reason or "").split())
            cells = [shown(f.name), state, f"{f.pages:,}" if f.pages else "—",
                     f"{f.passages:,}" if f.state == "done" else "—", shown(in_its_row(reason, f.name))]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col in (2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if f.state == "failed" and col in (1, 4):
                    item.setForeground(QColor(self.theme.error))
                elif f.state in ("skipped", "waiting") and col in (1, 4):
                    item.setForeground(QColor(self.theme.muted))
                table.setItem(row, col, item)
            table.item(row, 0).setToolTip(f"{f.path}\n{reason}" if reason else f.path)
            if reason:
                tip = f"{f.name}: {reason}"
                table.item(row, 1).setToolTip(tip)
                table.item(row, 4).setToolTip(tip)
        table.setVisible(bool(files))
        self.files_empty.setVisible(not files)

    def _collection_chosen(self) -> None:
        rows = self.collections_table.selectionModel().selectedRows()
        if rows:
            item = self.collections_table.item(rows[0].row(), 0)
            names = self.collection_names()
            if 0 <= rows[0].row() < len(names) and item is not None:
                self._selected = names[rows[0].row()]
                self.refresh()

    def select(self, name: str) -> None:
        self._selected = name
        self.refresh()

    # -- adding ---------------------------------------------------------------------------------
    def choose(self, *, folder: bool) -> QFileDialog:
        """The system's dialog for a folder or files; what is chosen is added (asking where)."""
        dialog = QFileDialog(self, "Add a folder" if folder else "Add files", str(Path.home()))
        dialog.setObjectName("AddDocumentsDialog")
        if folder:
            dialog.setFileMode(QFileDialog.FileMode.Directory)
            dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        else:
            dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
            dialog.setNameFilters(["Documents (*.pdf *.docx *.txt *.md *.markdown *.html *.htm *.csv *.rst *.py *.js "
                                   "*.ts *.java *.c *.cpp *.h *.go *.rs *.json *.yaml *.yml *.toml *.xml)",
                                   "All files (*)"])
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.filesSelected.connect(self.ask_collection)
        dialog.open()
        return dialog

    def ask_collection(self, paths: list[str]) -> CollectionDialog | None:
        """Ask which collection `paths` go into (the selected one offered), then add them."""
        if not paths:
            return None
        dialog = CollectionDialog(self.collection_names(), self._selected, len(paths), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.add_paths(paths, dialog.chosen()))
        dialog.open()
        return dialog

    def add_paths(self, paths: Sequence[str], collection: str) -> None:
        """Register `paths` (files and folders) in `collection` and index them in the background;
        what cannot be added is said in one sentence."""
        try:
            added = self.index.add(list(paths), collection)
        except HearthError as exc:
            self.notify(str(exc))
            return
        self._selected = collection
        if added.skipped:
            first_path, first_reason = added.skipped[0]
            more = f" ({len(added.skipped) - 1} more left out; hover the files for why)" if len(added.skipped) > 1 else ""
            self.notify(f"{Path(first_path).name} was left out: {first_reason}{more}", "info")
        elif not added.added and added.known:
            self.notify(f"Already in “{collection}”: nothing new to add. Changed files are read again.", "info")
        else:
            self.banner.hide()
        self.refresh()
        self.collections_changed.emit()
        self.start_indexing()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt's name)
        if local_files(event.mimeData()):
            event.acceptProposedAction()
            self._hint(True)

    def dragLeaveEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self._hint(False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt's name)
        self._hint(False)
        paths = local_files(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.ask_collection(paths)

    def _hint(self, active: bool) -> None:
        self.drop_hint.setProperty("active", active)
        self.drop_hint.style().unpolish(self.drop_hint)
        self.drop_hint.style().polish(self.drop_hint)

    # -- indexing -------------------------------------------------------------------------------
    @property
    def indexing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start_indexing(self) -> None:
        """Index whatever is waiting or changed, in the background (once at a time: files added
        meanwhile are taken when the run ends)."""
        if self.indexing:
            self._again = True
            return
        self._again = False
        self._task = self.spawn(self._index_all())

    def stop(self) -> None:
        """Stop indexing; what is indexed is kept, and the rest waits for Resume."""
        self._again = False
        if self._task is not None:
            self._task.cancel()

    def halt(self) -> None:
        """The window is closing: indexing stops now (the rest waits for the next launch) and the
        embedding model's engine child is ended at once, not on a later turn of the loop."""
        self.stop()
        if self._embedding is not None:
            self._embedding.engine.stop_now()

    async def _embedder(self) -> Any:
        try:
            from desktop.core.docs.embedder import find_embedder
        except ImportError:
            return None
        return find_embedder(self.services)

    async def _index_all(self) -> None:
        from desktop.core.docs.indexer import Indexer

        self._show_running(True)
        stopped = False
        embedder = None
        try:
            embedder = self._embedding = await self._embedder()
            indexer = Indexer(self.index, embedder)
            # The user's collections, one after the other (a chat's own files are its to index).
            while names := [c.name for c in self._collections() if c.waiting]:
                self._running = names[0]
                await indexer.run(names[0], progress=self.show_progress)
                if self._running in [c.name for c in self._collections() if c.waiting]:
                    break  # it left files waiting (they failed to be read again): no endless loop
        except asyncio.CancelledError:
            stopped = True
            raise
        finally:
            self._embedding = None
            if embedder is not None:
                await embedder.close()  # its engine child goes with the run
            again = self._again and not stopped
            self._task = None
            self._show_running(False, stopped=stopped)
            self.collections_changed.emit()
            if again:
                self.start_indexing()

    def _show_running(self, running: bool, stopped: bool = False) -> None:
        if running:
            self.progress_card.show()
        self.stop_button.setVisible(running)
        self.resume_button.setVisible(not running)
        if running:
            self.progress_title.setText("Reading your documents…")
            self.progress_bar.setRange(0, 0)
            self.progress_text.setText("Looking for what changed…")
            self.progress_file.setText("")
            self.refresh()
            return
        self.refresh()
        waiting = sum(c.waiting for c in self._collections())
        if waiting:
            self.progress_title.setText("Indexing stopped" if stopped else "Some files are still waiting")
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            self.progress_text.setText(f"{waiting:,} file{'s' if waiting != 1 else ''} not indexed yet; "
                                       "what is indexed is kept.")
            self.progress_file.setText("")
            self.progress_card.show()
        else:
            self.progress_card.hide()

    def show_progress(self, progress: Any) -> None:
        """The indexer's Progress on the card (a callback on the window's loop)."""
        total = int(getattr(progress, "files_total", 0))
        done = int(getattr(progress, "files_done", 0))
        self.progress_title.setText(f"Indexing “{shown(self._running)}”…" if self._running else
                                    "Reading your documents…")
        if total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
        self.progress_text.setText(progress_line(progress))
        current = str(getattr(progress, "current", "") or getattr(progress, "current_file", "") or "")
        if current:
            text = f"Reading {Path(current).name}"
            self.progress_file.setText(elide_middle(shown(text), self.progress_file.fontMetrics(),
                                                    max(200, self.progress_card.width() - 40)))
            self.progress_file.setToolTip(current)
        if time.monotonic() - self._last_refresh >= REFRESH_S:
            self.refresh()

    # -- removing -------------------------------------------------------------------------------
    def ask_remove(self) -> None:
        name = self._selected
        if not name:
            return
        files = next((c.files for c in self._collections() if c.name == name), 0)
        confirm(self, "ConfirmRemoveCollection", "Remove collection",
                f"Remove the collection “{shown(name)}”?",
                f"Its {files:,} file{'s' if files != 1 else ''} stay where they are on your disk; only Hearth's "
                "index of them is deleted. Chats that used it no longer search it.",
                "Remove", lambda: self.remove(name), destructive=True)

    def remove(self, name: str) -> None:
        if self.indexing:
            self.stop()
        try:
            self.index.remove(name)
        except HearthError as exc:
            self.notify(str(exc))
            return
        self._selected = ""
        self.notify(f"The collection “{shown(name)}” is removed; your files are untouched.", "info")
        self.refresh()
        self.collections_changed.emit()
