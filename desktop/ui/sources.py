"""Documents in the chat: the Sources under an answer (numbered entries, the passage on hover, the
whole passage in a dialog), the question asked before passages go to a cloud model, and files
dropped onto the window."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontMetrics
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.core.text import shown

HOVER_CHARS = 420  # a passage on hover: about five lines of a tooltip, cut at a word
ENTRY_WIDTH = 560  # the widest a source's name is drawn before its middle is elided
ENTRY_PAD = 2  # room either side of a source's name (its style gives it no padding)


def source_name(source: Mapping[str, Any]) -> str:
    """How a source is named under an answer: "report.pdf, page 3", "notes.md, Setup", "notes.txt"
    (as docs.Passage.where); `source` is one of Message.sources ({"n", "path", "name", "page",
    "heading", "text"})."""
    name = shown(str(source.get("name") or Path(str(source.get("path") or "")).name or "document"))
    page, heading = source.get("page"), shown(str(source.get("heading") or ""))
    if page is not None:
        return f"{name}, page {page}"
    return f"{name}, {heading}" if heading else name


def shortened(text: str, limit: int = HOVER_CHARS) -> str:
    """`text` on one screen: spaces folded, cut at the last word end before `limit` characters
    with "…" (whole when it is shorter)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def elide_middle(text: str, metrics: QFontMetrics, width: int) -> str:
    """A long file name cut in its middle ("annual-rep…2024-final.pdf"), so its start and its
    suffix stay readable."""
    return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, width)


class SourceEntry(QPushButton):
    """One numbered source, "[1] report.pdf, page 3": the passage on hover, the whole passage on a
    click. A flat link-like button, so the keyboard reaches it too."""

    def __init__(self, source: Mapping[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = dict(source)
        self.setObjectName("SourceEntry")
        self.setFlat(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.full_text = f"[{source.get('n', '?')}] {source_name(source)}"
        self.setText(self.full_text)
        passage = shortened(str(source.get("text") or ""))
        self.setToolTip(f"{source_name(source)}\n\n{passage}" if passage else source_name(source))
        self.setAccessibleName(self.full_text)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        # The whole name's width (the text shown may be elided), up to ENTRY_WIDTH.
        wanted = self.fontMetrics().horizontalAdvance(self.full_text) + 2 * ENTRY_PAD
        return QSize(min(wanted, ENTRY_WIDTH), super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(min(self.sizeHint().width(), 120), super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self.setText(elide_middle(self.full_text, self.fontMetrics(), max(40, self.width() - 2 * ENTRY_PAD)))


class SourcesList(QFrame):
    """"Sources" and the numbered entries under an answer; `opened` gives the source clicked."""

    opened = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SourcesList")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 2)
        layout.setSpacing(0)
        self.title = QLabel("Sources")
        self.title.setObjectName("SourcesTitle")
        self.title.setIndent(0)  # its text starts where the answer's and the entries' do
        layout.addWidget(self.title)
        self.entries: list[SourceEntry] = []

    def set_sources(self, sources: list[Mapping[str, Any]]) -> None:
        """Show `sources` (Message.sources, in their numbers' order); none hides the list."""
        for entry in self.entries:
            self.layout().removeWidget(entry)
            entry.deleteLater()
        self.entries = []
        for source in sorted(sources, key=lambda s: int(s.get("n") or 0)):
            entry = SourceEntry(source)
            entry.clicked.connect(lambda _=False, s=entry.source: self.opened.emit(s))
            self.layout().addWidget(entry, 0, Qt.AlignmentFlag.AlignLeft)
            self.entries.append(entry)
        self.setVisible(bool(self.entries))


class SourceDialog(QDialog):
    """The whole passage an answer cited, where it is from (file path, page or heading), all of it
    selectable. Hearth opens no file on its own: "Open file" is there only for a file on this
    computer that still exists, and only the user's click opens it (in the system's own app)."""

    def __init__(self, source: Mapping[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SourceDialog")
        self.setWindowTitle(f"Source [{source.get('n', '?')}]")
        self.resize(620, 440)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(8)
        heading = QLabel(f"[{source.get('n', '?')}] {source_name(source)}")
        heading.setObjectName("CardTitle")
        heading.setWordWrap(True)
        heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(heading)
        self.path = str(source.get("path") or "")
        where = QLabel(shown(self.path) or "(no file path)")
        where.setObjectName("Muted")
        where.setWordWrap(True)
        where.setTextFormat(Qt.TextFormat.PlainText)
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                      | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        layout.addWidget(where)
        self.passage = QPlainTextEdit(str(source.get("text") or ""))
        self.passage.setObjectName("SourcePassage")
        self.passage.setReadOnly(True)
        self.passage.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # it wraps
        self.passage.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                             | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        layout.addWidget(self.passage, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.open_button: QPushButton | None = None
        if self.path and Path(self.path).is_file():
            self.open_button = buttons.addButton("Open file", QDialogButtonBox.ButtonRole.ActionRole)
            self.open_button.setToolTip("Open the file in the app your system uses for it")
            self.open_button.clicked.connect(self.open_file)
        layout.addWidget(buttons)

    def open_file(self) -> None:
        """The user's own click: the file, if it is still there, in the system's app for it."""
        if self.path and Path(self.path).is_file():
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.path))


def ask_documents_consent(parent: QWidget, provider: str, on_send: Callable[[], None],
                          on_not_now: Callable[[], None]) -> QMessageBox:
    """Before the first answer that would send passages of the user's documents to a cloud
    `provider`: Send (passages go, this chat remembers the choice) or Not now (nothing is sent;
    the question stays in the box). Not modal to the app; found by its object name."""
    box = QMessageBox(QMessageBox.Icon.Question, "Send passages to the cloud?",
                      f"Send passages from your documents to {provider}?", parent=parent)
    box.setObjectName("DocumentsConsent")
    box.setInformativeText(
        f"To answer from your documents, Hearth sends the passages it finds to {provider} with your "
        "question. Your files and their index stay on this computer. Not now sends nothing: choose a "
        "model on this computer to keep everything here.")
    send = box.addButton("Send", QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(box.addButton("Not now", QMessageBox.ButtonRole.RejectRole))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.buttonClicked.connect(lambda b: on_send() if b is send else on_not_now())
    box.open()
    return box


def local_files(mime) -> list[str]:
    """The local files a drag carries (its URLs that are files on this computer), else []."""
    if mime is None or not mime.hasUrls():
        return []
    paths = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
    return [p for p in paths if p]


class FileDrop(QObject):
    """Files dropped onto the widgets it watches (`watch(widget)`); `dropped` gives their paths.
    Drops that carry no local file are left to the widget (text still drops into the box)."""

    dropped = Signal(list)

    def watch(self, widget: QWidget) -> None:
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            paths = local_files(event.mimeData())
            if not paths:
                return False
            event.acceptProposedAction()
            if kind == QEvent.Type.Drop:
                self.dropped.emit(paths)
            return True
        return False
