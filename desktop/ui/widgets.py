"""Small widgets shared by the window's pages."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.icons import icon, tool_button
from desktop.ui.theme import Theme


class Banner(QFrame):
    """A one-line notice above the conversation; errors stay until closed."""

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        close = QToolButton()
        close.setIcon(icon("close", theme.muted))
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_text(self, text: str, level: str = "error") -> None:
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self.show()


def muted(text: str = "", wrap: bool = True) -> QLabel:
    """Secondary text in the palette's muted colour."""
    label = QLabel(text)
    label.setObjectName("Muted")
    label.setWordWrap(wrap)
    return label


def data_table(headers: list[str], name: str, stretch: int = 0) -> QTableWidget:
    """A read-only table of rows, one selected at a time; column `stretch` takes the spare width."""
    table = QTableWidget(0, len(headers))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setShowGrid(False)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    head = table.horizontalHeader()
    head.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    head.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setWordWrap(False)
    return table


def confirm(parent: QWidget, name: str, title: str, text: str, info: str, accept: str,
            on_accept: Callable[[], None], *, destructive: bool = False) -> QMessageBox:
    """A question with Cancel as the default; `on_accept` runs only when the user agrees. Not
    modal to the app, so nothing waits on it; tests find it by its object name."""
    box = QMessageBox(QMessageBox.Icon.Warning if destructive else QMessageBox.Icon.Question, title, text,
                      parent=parent)
    box.setObjectName(name)
    box.setInformativeText(info)
    yes = box.addButton(accept, QMessageBox.ButtonRole.DestructiveRole if destructive else
                        QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.buttonClicked.connect(lambda b: on_accept() if b is yes else None)
    box.open()
    return box


def page_frame(page: QWidget, theme: Theme, title: str,
               back: Callable[[], None]) -> tuple[QVBoxLayout, QHBoxLayout, Banner, QTabWidget]:
    """The frame of a full page beside the chat: a back button and title (the row takes more widgets
    on its right), a banner for notices, and tabs that fill the rest."""
    page.setObjectName("ChatArea")
    column = QVBoxLayout(page)
    column.setContentsMargins(20, 12, 20, 10)
    column.setSpacing(8)
    top = QHBoxLayout()
    top.addWidget(tool_button("back", "Back to the chat", back, theme.text, size=18))
    heading = QLabel(title)
    heading.setObjectName("PageTitle")
    top.addWidget(heading)
    top.addStretch(1)
    column.addLayout(top)
    banner = Banner(theme)
    column.addWidget(banner)
    tabs = QTabWidget()
    tabs.setDocumentMode(True)
    tabs.tabBar().setDrawBase(False)
    column.addWidget(tabs, 1)
    return column, top, banner, tabs
