"""An answer drawn as a stack of blocks: prose as rich-text labels, fenced code as a coloured,
sideways-scrolling view with its language and a copy button, tables in a sideways-scrolling box.

The one view of a model's Markdown for the chat's answers, the thinking section and Compare's
columns (`export_html` draws the same blocks into a web page). Each block
is cut by `split_blocks` and drawn by the renderer of `markdown.py` (prose, tables) or by
pygments (code), so the same text looks the same everywhere and nothing in it is loaded or
opened. Nothing an answer holds can widen the window: long code lines and wide tables scroll
inside their own block. While an answer streams, only the blocks whose text changed are drawn
again (in practice the last one).
"""

from __future__ import annotations

import html
import math
import time

from PySide6.QtCore import QEvent, QPointF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
    QTextOption,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.links import AnswerBrowser, guard_label
from desktop.ui.markdown import (
    CODE,
    MAX_NESTING,
    MONO,
    PROSE,
    TABLE,
    Block,
    LiveMarkdown,
    cap_nesting,
    code_style_name,
    lexer_for,
    nesting_for_width,
    split_blocks,
    to_html,
    token_style,
)
from desktop.ui.theme import Theme

LONG_PROSE = 8_000  # characters of prose past which a run is drawn by a view that lays out once
LEX_SLICE_S = 0.008  # the longest one turn of the event loop spends colouring code
COPIED_MS = 1200


def answer_label(*, wrap: bool = True) -> QLabel:
    """A rich-text label for a model's words: selectable, links that ask before they open,
    copies without the invisible characters added for wrapping."""
    label = QLabel()
    label.setWordWrap(wrap)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                  | Qt.TextInteractionFlag.TextSelectableByKeyboard
                                  | Qt.TextInteractionFlag.LinksAccessibleByMouse)
    guard_label(label)
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    return label


def pass_wheel_on(widget: QWidget, event: QWheelEvent) -> None:
    """Hand an up-and-down wheel turn over a block to the scrolling view around it (the chat),
    so a tall code block or table never traps the reader's wheel."""
    area = widget.parentWidget()
    while area is not None and not isinstance(area, QAbstractScrollArea):
        area = area.parentWidget()
    if area is None:
        event.ignore()
        return
    viewport = area.viewport()
    at = viewport.mapFromGlobal(event.globalPosition().toPoint())
    QApplication.sendEvent(viewport, QWheelEvent(QPointF(at), event.globalPosition(), event.pixelDelta(),
                                                 event.angleDelta(), event.buttons(), event.modifiers(),
                                                 event.phase(), event.inverted()))
    event.accept()


def scroll_sideways_only(view, event: QWheelEvent, scroll) -> None:
    """A block's wheel: up and down belong to the chat around it (passed on); only sideways
    turns scroll the block itself, with `scroll(event)` (the view's own handler)."""
    delta = event.angleDelta()
    if abs(delta.x()) > abs(delta.y()) and view.horizontalScrollBar().maximum() > 0:
        scroll(event)
    else:
        pass_wheel_on(view, event)


def mono_font() -> QFont:
    """The monospaced face code is drawn in (the system's fixed font, at the text's size)."""
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setFamilies([name.strip(" '") for name in MONO.split(",")] + font.families())
    font.setPointSizeF(max(8.0, QGuiApplication.font().pointSizeF() * 0.95))
    return font


class _DocumentView(AnswerBrowser):
    """Rich text laid out once per width and drawn only where it is on screen (a label lays its
    text out again for every size it is asked about: a second for a 100,000-character line).
    Links ask before they open and copies are clean, as on the prose labels. It never scrolls
    up and down itself: it is as tall as its text, inside the chat that scrolls."""

    link_hovered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.document().setDocumentMargin(0)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self._heights: dict[int, int] = {}
        self.highlighted.connect(lambda url: self.link_hovered.emit(url.toString()))

    def set_html(self, html: str) -> None:
        self.setHtml(html)
        self._heights.clear()
        self.updateGeometry()

    def text(self) -> str:
        """The rich text shown (as a label's `text`)."""
        return self.toHtml()

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return True

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        # Layouts ask for the height at the real width (heightForWidth); laying the text out at
        # a guessed width first would only double the work.
        width = max(self.width(), 200)
        return QSize(width, self._heights.get(width) or next(reversed(self._heights.values()), 100))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(40, 20)

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        scroll_sideways_only(self, event, super().wheelEvent)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        # QTextEdit lays the whole text out again on every resize, even to the same width (a
        # QTextDocument's setTextWidth always does): here it is laid out only when its width
        # changes, and the scroll bars are set from the laid-out size.
        self._fit_text()
        self._set_bars()

    def _set_bars(self) -> None:
        viewport, size = self.viewport(), self.document().size()
        bar = self.horizontalScrollBar()
        bar.setRange(0, max(0, math.ceil(size.width()) - viewport.width()))
        bar.setPageStep(viewport.width())
        bar.setSingleStep(20)
        self.verticalScrollBar().setRange(0, 0)

    def _fit_text(self) -> None:
        """Lay the text out for the view's width, if it needs it."""

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        # Placed in the window, the view is told its font again (the same one): QTextEdit would
        # lay the whole text out once more for it.
        if event.type() == QEvent.Type.FontChange and self.document().defaultFont() == self.font():
            QWidget.changeEvent(self, event)
            return
        if event.type() == QEvent.Type.FontChange:
            self._heights.clear()
        super().changeEvent(event)


class LongProse(_DocumentView):
    """A very long run of prose (past LONG_PROSE characters), wrapped to the column."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("LongProse")

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt's name)
        height = self._heights.get(width)
        if height is not None:
            return height
        document = self.document()
        if document.textWidth() != width:
            document.setTextWidth(max(1, width))
        height = self._heights[width] = math.ceil(document.size().height()) + 2
        return height

    def _fit_text(self) -> None:
        self.heightForWidth(self.viewport().width())


class TableBlock(_DocumentView):
    """A table at its natural width; one wider than the column scrolls sideways inside this
    block, so the message column and the window never grow."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TableBlock")
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setLineWrapMode(AnswerBrowser.LineWrapMode.NoWrap)  # laid out once, at its natural width
        self._natural = QSize(0, 0)

    def set_html(self, html: str) -> None:
        self.setHtml(html)
        size = self.document().size()
        self._natural = QSize(math.ceil(size.width()) + 2, math.ceil(size.height()) + 2)
        self._set_bars()  # a table growing row by row may not change the view's size
        self.updateGeometry()

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt's name)
        bar = self.horizontalScrollBar().sizeHint().height() if self._natural.width() > width else 0
        return self._natural.height() + bar

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        width = min(self._natural.width(), 800)
        return QSize(width, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(60, self.heightForWidth(60))


class _CodeColours(QSyntaxHighlighter):
    """Colours from pygments, one line's formats at a time. The code is lexed a slice at a time
    between turns of the event loop, so a 500-line block shows at once and is coloured from the
    top within a few frames."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self.lines: dict[int, list[tuple[int, int, QTextCharFormat]]] = {}

    def highlightBlock(self, text: str) -> None:  # noqa: N802 (Qt's name)
        for start, length, form in self.lines.get(self.currentBlock().blockNumber(), ()):
            self.setFormat(start, length, form)


class CodeView(QPlainTextEdit):
    """The code of a block: read-only, monospaced, never wrapped; long lines scroll sideways
    inside the block. As tall as its lines, so the chat scrolls it, not the block itself."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("CodeView")
        self.setReadOnly(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                     | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setWordWrapMode(QTextOption.WrapMode.NoWrap)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setFont(mono_font())
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * 4)
        self.document().setDocumentMargin(2)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self._lines = 1
        self._widest = 0  # pixels of the longest line

    def set_code(self, code: str) -> None:
        """Show `code`; when it only grew (a block streaming in), only the new end is added."""
        old = self.toPlainText()
        if code.startswith(old) and old:
            cursor = self.textCursor()
            cursor.movePosition(cursor.MoveOperation.End)
            cursor.insertText(code[len(old):])
        else:
            self.setPlainText(code)
        lines = code.split("\n")
        self._lines = len(lines)
        longest = max(lines, key=len)
        self._widest = self.fontMetrics().horizontalAdvance(longest.expandtabs(4)) + 8
        self.updateGeometry()

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        scroll_sideways_only(self, event, super().wheelEvent)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt's name)
        margin = 2 * (self.document().documentMargin() + self.frameWidth())
        bar = self.horizontalScrollBar().sizeHint().height() if self._widest > width - margin else 0
        return int(self._lines * self.fontMetrics().lineSpacing() + margin + bar + 4)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        width = max(self.width(), 200)
        return QSize(width, self.heightForWidth(width))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(40, self.heightForWidth(40))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self.verticalScrollBar().setValue(0)


class _HeightFollowsWidth:
    """For a widget laid out by its own layout: its height is what that layout needs at the
    width it is given, and it may shrink to 60 px wide (its blocks scroll sideways)."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt's name)
        return self.layout().totalHeightForWidth(width)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(60, super().minimumSizeHint().height())


class CodeBlock(_HeightFollowsWidth, QFrame):
    """A fenced code block: its language and a copy button above the code, coloured by pygments
    in the theme's light or dark style. The copy button copies the code exactly as written."""

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("CodeBlock")
        self.theme = theme
        self.code = ""
        self.language = ""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 4, 4, 6)
        layout.setSpacing(2)
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        self.language_label = QLabel()
        self.language_label.setObjectName("CodeLanguage")
        header.addWidget(self.language_label)
        header.addStretch(1)
        self.copy_button = QToolButton()
        self.copy_button.setObjectName("CodeCopy")
        self.copy_button.setText("Copy")
        self.copy_button.setToolTip("Copy this code")
        self.copy_button.setAccessibleName("Copy this code")
        self.copy_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.copy_button.clicked.connect(self.copy_code)
        self.copy_button.ensurePolished()  # wide enough for "Copied" from the start: never elided
        self.copy_button.setText("Copied")
        self.copy_button.setMinimumWidth(self.copy_button.sizeHint().width())
        self.copy_button.setText("Copy")
        header.addWidget(self.copy_button)
        layout.addLayout(header)
        self.view = CodeView()
        layout.addWidget(self.view)
        self.colours = _CodeColours(self.view.document())
        self._formats: dict[tuple[str, bool, bool], QTextCharFormat] = {}
        self._lexing = None  # the tokens still to colour: (generator, line, column)
        self._lex_timer = QTimer(self, singleShot=True, interval=0)
        self._lex_timer.timeout.connect(self._lex_some)
        self._again_timer = QTimer(self, singleShot=True, interval=150)
        self._again_timer.timeout.connect(self._start_lexing)
        self._lexed_code = ""  # the code the last colouring pass read
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def show_block(self, block: Block) -> None:
        """Show a code block's language and code (again, as it grows)."""
        relabelled = block.language != self.language or not self.language_label.text()
        if relabelled:  # also while the fence's first line is still coming in ("py" -> "python")
            self.language = block.language
            self.language_label.setText(block.language or "code")
            self._lexing = None
            self._again_timer.stop()
        if block.text == self.code and not relabelled:
            return
        self.code = block.text
        self.view.set_code(block.text)
        if self._lexing is None and not self._again_timer.isActive():
            self._start_lexing()
        # else: a block still streaming in is coloured again once the pass under way ends
        self.updateGeometry()

    def _start_lexing(self) -> None:
        lexer = lexer_for(self.language)
        if lexer is None:
            self.colours.lines = {}
            self.colours.rehighlight()
        else:
            self._lexing = (lexer.get_tokens(self.code), 0, 0, {})
            self._lexed_code = self.code
            self._lex_some()

    def _format(self, token) -> QTextCharFormat | None:
        colour, bold, italic = token_style(code_style_name(self.theme.code_bg), token)
        if not (colour or bold or italic):
            return None
        key = (colour, bold, italic)
        form = self._formats.get(key)
        if form is None:
            form = self._formats[key] = QTextCharFormat()
            if colour:
                form.setForeground(QColor(colour))
            if bold:
                form.setFontWeight(QFont.Weight.DemiBold)
            form.setFontItalic(italic)
        return form

    def _lex_some(self) -> None:
        if self._lexing is None:
            return
        tokens, line, column, found = self._lexing
        stop = time.perf_counter() + LEX_SLICE_S
        first = line
        done = True
        for count, (token, value) in enumerate(tokens):
            form = self._format(token)
            for i, part in enumerate(value.split("\n")):
                if i:
                    line, column = line + 1, 0
                if part and form is not None:
                    found.setdefault(line, []).append((column, len(part), form))
                column += len(part)
            if count % 64 == 63 and time.perf_counter() > stop:
                done = False
                break
        self._lexing = None if done else (tokens, line, column, found)
        document = self.view.document()
        self.colours.lines = found
        last = line if done else line - 1  # the line being lexed is coloured with the next slice
        block = document.findBlockByNumber(first)
        while block.isValid() and block.blockNumber() <= last:
            self.colours.rehighlightBlock(block)
            block = block.next()
        if not done:
            self._lex_timer.start()
        elif self._lexed_code != self.code:
            # The code grew meanwhile (it streams in): colour it again after a pause, so a long
            # block being written costs the GUI thread a slice now and then, not all its time.
            self._again_timer.start()

    def copy_code(self) -> None:
        """Put the code on the clipboard, exactly as the model wrote it, and say "Copied"."""
        QGuiApplication.clipboard().setText(self.code)
        self.copy_button.setText("Copied")
        QTimer.singleShot(COPIED_MS, self.copy_button, lambda: self.copy_button.setText("Copy"))


class AnswerView(_HeightFollowsWidth, QWidget):
    """A model's Markdown as a column of blocks (prose, code, tables). `set_markdown` draws a
    text, reusing every block whose text has not changed; `live` marks an answer that is still
    growing, whose last prose block re-parses only its end (`LiveMarkdown`)."""

    linkHovered = Signal(str)  # noqa: N815 (as QLabel's): a link of any block, "" when off it

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = theme
        self.colours = {"code_bg": theme.code_bg, "muted": theme.muted}
        self.markdown = ""
        self._blocks: list[Block] = []
        self._widgets: list[QWidget] = []
        self._live_drawn: set[int] = set()  # ids of prose widgets drawn from a partial parse
        self._live: LiveMarkdown | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        # Sized once by hand, so showing it never makes Qt measure it at a guessed width first
        # (a long answer would be laid out twice); its layout gives it its real size.
        self.resize(parent.width() if parent is not None else 800, self.height())
        self._nesting = nesting_for_width(self.width())  # levels of quotes and lists drawn

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        # A column too narrow for the quotes and lists drawn draws them again, less deep (a
        # Compare column); one wider draws more only well past the step, so a scroll bar that
        # comes and goes with the new height cannot make it flip back and forth.
        super().resizeEvent(event)
        width = event.size().width()
        nesting = nesting_for_width(width)
        if nesting > self._nesting and nesting_for_width(width - 24) < nesting:
            nesting = self._nesting
        if nesting != self._nesting:
            self._nesting = nesting
            for widget, block in zip(self._widgets, self._blocks, strict=False):
                if not isinstance(widget, CodeBlock):
                    self._draw(widget, block, id(widget) in self._live_drawn)

    @property
    def blocks(self) -> list[QWidget]:
        """The block widgets, top to bottom."""
        return list(self._widgets)

    def labels(self) -> list[QLabel]:
        """The labels of the answer's prose, top to bottom."""
        return [w for w in self._widgets if isinstance(w, QLabel)]

    def code_blocks(self) -> list[CodeBlock]:
        return [w for w in self._widgets if isinstance(w, CodeBlock)]

    def table_blocks(self) -> list[TableBlock]:
        return [w for w in self._widgets if isinstance(w, TableBlock)]

    @property
    def is_live(self) -> bool:
        """Whether the text was last drawn as a growing answer."""
        return self._live is not None

    def text(self) -> str:
        """The rich text of the whole answer as drawn, block after block (code as plain
        preformatted text)."""
        parts = []
        for widget in self._widgets:
            if isinstance(widget, CodeBlock):
                parts.append(f"<pre>{html.escape(widget.code, quote=False)}</pre>")
            else:
                parts.append(widget.text())
        return "".join(parts)

    def set_markdown(self, markdown: str, *, live: bool = False) -> None:
        """Draw `markdown`. Blocks whose text is unchanged keep their widget and drawing; when
        `live` is False, prose drawn from a partial parse while streaming is drawn whole."""
        if live and self._live is None:
            self._live = LiveMarkdown(**self.colours)
        elif not live:
            self._live = None
        self.markdown = markdown
        blocks = split_blocks(markdown)
        layout = self.layout()
        for index, block in enumerate(blocks):
            widget = self._widgets[index] if index < len(self._widgets) else None
            old = self._blocks[index] if index < len(self._blocks) else None
            last_prose = live and index == len(blocks) - 1
            if widget is not None and old == block and not (id(widget) in self._live_drawn and not last_prose):
                continue
            if widget is None or not self._fits(widget, block):
                new = self._make(block)
                if widget is not None:
                    layout.replaceWidget(widget, new)
                    self._forget(widget)
                    self._widgets[index] = new
                else:
                    layout.addWidget(new)
                    self._widgets.append(new)
                widget = new
            self._draw(widget, block, last_prose)
        for widget in self._widgets[len(blocks):]:
            layout.removeWidget(widget)
            self._forget(widget)
        del self._widgets[len(blocks):]
        self._blocks = blocks
        self.updateGeometry()

    def _fits(self, widget: QWidget, block: Block) -> bool:
        if block.kind == CODE:
            return isinstance(widget, CodeBlock)
        if block.kind == TABLE:
            return isinstance(widget, TableBlock)
        return isinstance(widget, LongProse) == (len(block.text) > LONG_PROSE) and isinstance(widget, (QLabel, LongProse))

    def _make(self, block: Block) -> QWidget:
        if block.kind == CODE:
            widget: QWidget = CodeBlock(self.theme)
        elif block.kind == TABLE or len(block.text) > LONG_PROSE:
            widget = TableBlock() if block.kind == TABLE else LongProse()
            # At about the width it will get: laid out first at a new widget's 100 px, a long
            # text makes thousands of lines.
            widget.resize(max(self.width(), 600), 100)
            widget.setParent(self)  # styled (font, colours) before its text is laid out, not after
            widget.ensurePolished()
            widget.link_hovered.connect(self.linkHovered)
        else:
            widget = answer_label()
            widget.setObjectName("AnswerProse")
            widget.linkHovered.connect(self.linkHovered)
        return widget

    def _draw(self, widget: QWidget, block: Block, live: bool) -> None:
        if isinstance(widget, CodeBlock):
            widget.show_block(block)
            return
        if live and self._live is not None and block.kind == PROSE:
            rich = self._live.render(block.text)
            self._live_drawn.add(id(widget))
        else:
            rich = to_html(block.text, **self.colours)
            self._live_drawn.discard(id(widget))
        if self._nesting < MAX_NESTING:  # to_html draws MAX_NESTING levels at most
            rich = cap_nesting(rich, self._nesting)
        if isinstance(widget, (TableBlock, LongProse)):
            widget.set_html(rich)
        else:
            widget.setText(rich)

    def _forget(self, widget: QWidget) -> None:
        self._live_drawn.discard(id(widget))
        widget.hide()
        widget.setParent(None)
        widget.deleteLater()

