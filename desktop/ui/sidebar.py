"""The list of conversations on the left: new chat, search across every message, rename, delete."""

from __future__ import annotations

import datetime as dt
import time

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core.store import Conversation, SearchHit
from desktop.ui.icons import app_icon, icon
from desktop.ui.theme import Theme

CONVERSATION_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1


def when(timestamp: float, now: dt.datetime | None = None) -> str:
    """A moment as a person says it: "14:02" today, "Monday" this week, else "03 Nov 2026"."""
    moment = dt.datetime.fromtimestamp(timestamp)
    now = now or dt.datetime.now()
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    if (now.date() - moment.date()).days < 7:
        return moment.strftime("%A")
    return moment.strftime("%d %b %Y")


class Sidebar(QFrame):
    conversation_chosen = Signal(int, int)  # conversation id, message id to show (0: none)
    new_requested = Signal()
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    search_changed = Signal(str)
    documents_requested = Signal()

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.theme = theme
        self.setMinimumWidth(220)
        self.setMaximumWidth(360)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 14, 12, 10)
        layout.setSpacing(10)

        title_row = QHBoxLayout()
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(26, 26))
        title_row.addWidget(logo)
        title = QLabel("Hearth")
        title.setObjectName("SidebarTitle")
        title_row.addWidget(title)
        title_row.addStretch(1)
        layout.addLayout(title_row)

        self.new_button = QPushButton(icon("new", theme.text), "  New chat")
        self.new_button.setIconSize(QSize(16, 16))
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested.emit)
        layout.addWidget(self.new_button)

        self.documents_button = QPushButton(icon("books", theme.text), "  Documents")
        self.documents_button.setObjectName("SidebarEntry")
        self.documents_button.setIconSize(QSize(16, 16))
        self.documents_button.setToolTip("Folders and files your chats can search; they stay on this computer")
        self.documents_button.clicked.connect(self.documents_requested.emit)
        layout.addWidget(self.documents_button)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search all chats")
        self.search.addAction(icon("search", theme.muted), QLineEdit.ActionPosition.LeadingPosition)
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=150)
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        layout.addWidget(self.search)

        self.list = QListWidget()
        self.list.setObjectName("ConversationList")
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setWordWrap(False)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemClicked.connect(self._chosen)
        self.list.itemActivated.connect(self._chosen)
        self.list.itemChanged.connect(self._renamed)
        layout.addWidget(self.list, 1)

        self.empty = QLabel("No chats yet.")
        self.empty.setObjectName("SidebarFooter")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.empty)

        self.footer = QLabel("Chats are kept on this computer.")
        self.footer.setObjectName("SidebarFooter")
        self.footer.setWordWrap(True)
        layout.addWidget(self.footer)

        delete = QAction("Delete chat", self.list)
        delete.setShortcut(QKeySequence.StandardKey.Delete)
        delete.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        delete.triggered.connect(self._delete_current)
        self.list.addAction(delete)
        self._filling = False

    @property
    def searching(self) -> bool:
        return bool(self.search.text().strip())

    def set_conversations(self, conversations: list[Conversation], current: int | None) -> None:
        self._filling = True
        self.list.clear()
        for c in conversations:
            item = QListWidgetItem(c.title)
            item.setData(CONVERSATION_ROLE, c.id)
            item.setData(MESSAGE_ROLE, 0)
            item.setToolTip(f"{c.title}\nLast message: {when(c.updated_at)}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
            if c.id == current:
                self.list.setCurrentItem(item)
        self._filling = False
        self.empty.setText("No chats yet.")
        self.empty.setVisible(not conversations)

    def show_title(self, conversation_id: int, title: str) -> None:
        """Show a conversation's new title in the list (search hits are left as they were found)."""
        if self.searching:
            return
        for i in range(self.list.count()):
            item = self.list.item(i)
            if int(item.data(CONVERSATION_ROLE)) == conversation_id:
                self._filling = True  # not a rename by the user
                item.setText(title)
                item.setToolTip(f"{title}\nLast message: {when(time.time())}")
                self._filling = False
                return

    def show_hits(self, hits: list[SearchHit]) -> None:
        self._filling = True
        self.list.clear()
        for hit in hits:
            snippet = " ".join(hit.snippet.split())
            item = QListWidgetItem(f"{hit.conversation_title}\n{snippet}")
            item.setData(CONVERSATION_ROLE, hit.conversation_id)
            item.setData(MESSAGE_ROLE, hit.message_id)
            item.setToolTip(snippet)
            self.list.addItem(item)
        self._filling = False
        self.empty.setText("Nothing found." if self.searching else "No chats yet.")
        self.empty.setVisible(not hits)

    def _chosen(self, item: QListWidgetItem) -> None:
        self.conversation_chosen.emit(int(item.data(CONVERSATION_ROLE)), int(item.data(MESSAGE_ROLE) or 0))

    def _renamed(self, item: QListWidgetItem) -> None:
        if not self._filling and not self.searching:
            self.rename_requested.emit(int(item.data(CONVERSATION_ROLE)), item.text())

    def _delete_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.delete_requested.emit(int(item.data(CONVERSATION_ROLE)))

    def start_rename(self, conversation_id: int) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if int(item.data(CONVERSATION_ROLE)) == conversation_id:
                self.list.editItem(item)
                return

    def _menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        cid = int(item.data(CONVERSATION_ROLE))
        menu = QMenu(self)
        if not self.searching:
            menu.addAction(icon("rename", self.theme.text), "Rename", lambda: self.list.editItem(item))
        menu.addAction(icon("trash", self.theme.text), "Delete", lambda: self.delete_requested.emit(cid))
        menu.exec(self.list.viewport().mapToGlobal(pos))
