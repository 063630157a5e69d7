"""Where a model's answer meets the reader's computer: its links, its image chips and copying.

The renderer (`markdown.py`) only ever makes http(s) and mailto links and image chips. Here
the widgets that draw answers (`AnswerView`'s prose labels and its text browsers for tables and
very long prose, in the chat, the thinking and Compare's columns) get their behaviour:
hovering a link or a chip shows its full address; a click on a live link asks first ("Open this
link in your browser?") and only then hands it to the system, through `open_in_browser`; nothing
is opened on a click alone, no resource is loaded from disk or the network, and text copied from
an answer carries none of the invisible characters added for wrapping.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QClipboard,
    QContextMenuEvent,
    QCursor,
    QDesktopServices,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QKeySequence,
    QTextDocument,
)
from PySide6.QtWidgets import QLabel, QMenu, QMessageBox, QTextBrowser, QToolTip, QWidget

from desktop.ui.markdown import LIVE_SCHEMES, image_address, is_live_link, plain_copy
from desktop.ui.math_render import issued_image, selection_as_written
from desktop.ui.widgets import confirm

OPEN_LINK_QUESTION = "Open this link in your browser?"


def link_tip(href: str) -> str:
    """What hovering an anchor of an answer shows: a link's full target, or the address of an
    image that was not loaded."""
    address = image_address(href)
    return href if address is None else f"Image not loaded: {address}"


def open_in_browser(url: str) -> bool:
    """Hand a live link to the system's browser or mail app. The one place an answer's link
    leaves Hearth; anything but http(s) or mailto is refused here too."""
    if not is_live_link(url):
        return False
    target = QUrl(url, QUrl.ParsingMode.StrictMode)
    if not target.isValid() or target.scheme().lower() not in LIVE_SCHEMES:
        return False
    return QDesktopServices.openUrl(target)


def ask_to_open(parent: QWidget, href: str) -> QMessageBox | None:
    """After a click on a link: show its full address and open it only if the reader agrees.
    An image chip, or anything that is not a live link, does nothing."""
    if image_address(href) is not None or not is_live_link(href):
        return None
    return confirm(parent, "ConfirmOpenLink", "Open link", OPEN_LINK_QUESTION, href, "Open",
                   lambda: open_in_browser(href))


class _AnswerLabelGuard(QObject):
    """Event filter and link handler of a label drawing an answer: hover shows where a link
    goes, a click asks before opening, and copies (Ctrl+C, the context menu, and the X11
    selection that a middle click pastes) carry no invisible characters."""

    def __init__(self, label: QLabel) -> None:
        super().__init__(label)
        self.label = label
        self.hovered = ""  # the anchor under the mouse, for "Copy link address"
        label.linkHovered.connect(self._hovered)
        label.linkActivated.connect(self._activated)

    def _hovered(self, href: str) -> None:
        self.hovered = href
        if href:
            QToolTip.showText(QCursor.pos(), link_tip(href), self.label)
        else:
            QToolTip.hideText()

    def _activated(self, href: str) -> None:
        ask_to_open(self.label, href)

    def copy(self) -> None:
        if self.label.hasSelectedText():
            QGuiApplication.clipboard().setText(plain_copy(self._selected()))

    def _selected(self) -> str:
        """The selected text, each typeset formula in it as the model wrote it."""
        text = self.label.selectedText()
        if "\ufffc" not in text:
            return text
        document = QTextDocument()
        document.setHtml(self.label.text())
        start = self.label.selectionStart()
        return selection_as_written(document, start, start + len(text))

    def select_all(self) -> None:
        label = self.label
        if label.textFormat() == Qt.TextFormat.PlainText:
            length = len(label.text())
        else:  # positions count the drawn characters, not the HTML's
            document = QTextDocument()
            document.setHtml(label.text())
            length = document.characterCount() - 1
        label.setSelection(0, length)

    def _copy_selection(self) -> None:
        clipboard = QGuiApplication.clipboard()
        if clipboard.supportsSelection() and self.label.hasSelectedText():
            clipboard.setText(plain_copy(self._selected()), QClipboard.Mode.Selection)

    def _menu(self, event: QContextMenuEvent) -> None:
        menu = QMenu(self.label)
        menu.setObjectName("AnswerMenu")
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.addAction("Copy", self.copy).setEnabled(self.label.hasSelectedText())
        address = image_address(self.hovered) if self.hovered else None
        target = address if address is not None else self.hovered
        if target:
            menu.addAction("Copy image address" if address is not None else "Copy link address",
                           lambda: QGuiApplication.clipboard().setText(target))
        menu.addAction("Select all", self.select_all)
        menu.popup(event.globalPos())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) and event.matches(QKeySequence.StandardKey.Copy):
            if self.label.hasSelectedText():
                self.copy()
                return True
            return False
        if kind == QEvent.Type.ContextMenu and isinstance(event, QContextMenuEvent):
            self._menu(event)
            return True
        if kind == QEvent.Type.MouseButtonRelease:
            QTimer.singleShot(0, self, self._copy_selection)  # after Qt has set its own, with them
        return False


def guard_label(label: QLabel) -> None:
    """Make a label that draws a model's words safe to click and clean to copy from: links open
    only after the reader agrees, hovering shows where they go, copies carry no zero-width
    spaces. (The label never loads a resource because the renderer writes none.)"""
    label.setOpenExternalLinks(False)
    label.installEventFilter(_AnswerLabelGuard(label))


class AnswerBrowser(QTextBrowser):
    """A read-only rich-text view of an answer's part (the base of `AnswerView`'s tables and very
    long prose) that loads nothing and follows no link by itself: a click on a live link asks
    first, as on a label. The renderer writes no images;
    `loadResource` refusing every resource is the second guard."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)  # else a click on a link loads its target into this view
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._clicked)

    def _clicked(self, url: QUrl) -> None:
        ask_to_open(self, url.toString(QUrl.ComponentFormattingOption.FullyEncoded))

    def loadResource(self, kind: int, name: QUrl) -> object:  # noqa: N802 (Qt's name)
        # An empty value is not enough: Qt's document then reads the file itself. A null image
        # (or an empty style sheet) is an answer, so nothing is read. The one exception: a
        # formula typeset by Hearth's own renderer, from memory (`math_render.issued_image`).
        if kind != QTextDocument.ResourceType.ImageResource.value:
            return ""
        formula = issued_image(name.toString(QUrl.ComponentFormattingOption.FullyEncoded))
        return formula if formula is not None else QImage()

    # Copies are made here rather than in createMimeDataFromSelection: a QMimeData made in Python
    # and handed to Qt's clipboard was freed twice when the app closed (a crash at exit).
    def copy(self) -> None:
        cursor = self.textCursor()
        text = cursor.selection().toPlainText()
        if "\ufffc" in text:  # a typeset formula: copied as the model wrote it
            text = selection_as_written(self.document(), cursor.selectionStart(), cursor.selectionEnd())
        if text:
            QGuiApplication.clipboard().setText(plain_copy(text))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            return
        super().keyPressEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 (Qt's name)
        menu = QMenu(self)
        menu.setObjectName("AnswerMenu")
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.addAction("Copy", self.copy).setEnabled(self.textCursor().hasSelection())
        menu.addAction("Select all", self.selectAll)
        menu.popup(event.globalPos())
