"""The conversation itself: message bubbles, the scrolling list, the empty state, the composer."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core.reasoning import thinking_phrase
from desktop.core.store import Message
from desktop.core.units import human_bytes
from desktop.ui.answer_view import AnswerView
from desktop.ui.icons import app_icon, icon, tool_button
from desktop.ui.links import guard_label
from desktop.ui.markdown import breakable, drawn_text
from desktop.ui.sources import SourceDialog, SourcesList, elide_middle
from desktop.ui.theme import Theme

QWIDGETSIZE_MAX = (1 << 24) - 1
COLUMN_WIDTH = 820  # the widest the text column gets: long lines are hard to read
USER_BUBBLE_WIDTH = int(COLUMN_WIDTH * 0.75)
BUBBLE_PAD = 14
MAX_INPUT_LINES = 8


def stats_line(message: Message, *, with_where: bool = True) -> str:
    """The figures under an answer: tokens, time to first token, speed, where the words went, cost."""
    parts = []
    if message.tokens_out:
        parts.append(f"{'≈' if message.usage_estimated else ''}{message.tokens_out} tokens")
    if message.ttft_ms is not None:
        parts.append(f"{message.ttft_ms / 1000:.2f} s to first token")
    if message.tokens_per_s:
        parts.append(f"{message.tokens_per_s:.1f} tokens/s")
    if with_where:
        parts.append(where_line(message))
    if message.provider and message.provider != "local":
        parts.append("cost unknown" if message.cost_unknown else money(message.cost))
    elif message.cost:
        parts.append(f"{money(message.cost)} of electricity")
    if message.status == "stopped":
        parts.append("stopped")
    if message.stop_reason == "length":
        parts.append("stopped at the length limit")
    return " · ".join(p for p in parts if p)


def thinking_line(phase: str, thinking_ms: float | None) -> str:
    """The heading of a reasoning model's thinking: "Thinking…" while it thinks, then
    "Thought for 12 s"."""
    return "Thinking…" if phase in ("thinking", "waiting") else thinking_phrase(thinking_ms)


def waiting_note(seconds: float, why: str) -> str:
    """What an answer being written says while a cloud provider makes Hearth wait."""
    return f"Waiting {seconds:.0f} s ({why}), then trying again…"


def where_line(message: Message) -> str:
    if message.left_the_machine:
        return f"{human_bytes(message.bytes_sent)} sent to {message.processed_on}"
    return "stayed on this machine" if message.processed_on else ""


def money(dollars: float) -> str:
    if dollars == 0:
        return "$0"
    if dollars < 0.0001:
        return "< $0.0001"
    return f"${dollars:.4f}" if dollars < 0.01 else f"${dollars:.2f}"


def _text_label(rich: bool = True, cls: type[QLabel] = QLabel) -> QLabel:
    label = cls()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                  | Qt.TextInteractionFlag.TextSelectableByKeyboard
                                  | Qt.TextInteractionFlag.LinksAccessibleByMouse)
    guard_label(label)  # links ask before they open; copies carry no zero-width spaces
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    return label


class _BubbleLabel(QLabel):
    """A wrapping label that asks for its text's natural width (up to the bubble's limit) but
    may shrink with the window. A plain wrapping QLabel asks for far too little."""

    natural_width = 0

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(min(self.natural_width, USER_BUBBLE_WIDTH - 2 * BUBBLE_PAD), super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(min(self.natural_width, 120), super().minimumSizeHint().height())


class MessageWidget(QFrame):
    """One message. An answer being generated grows with `set_text` and ends with `finish`."""

    regenerate_requested = Signal()
    version_requested = Signal(int)  # -1: the earlier version of this answer, +1: the later one

    def __init__(self, role: str, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.theme = theme
        self.message: Message | None = None
        self._text = ""
        self._live = False  # while the answer is being written: only its last block is drawn again
        self.on_thaw: Callable[[MessageWidget], None] | None = None  # the list's, once in one
        self._frozen_width = 0  # >0: height fixed for this column width (see freeze)
        # A question is the user's own plain text; an answer is a stack of blocks (prose, code
        # that scrolls sideways with its own copy button, tables that scroll sideways).
        self.body: _BubbleLabel | AnswerView = (_text_label(rich=False, cls=_BubbleLabel) if role == "user"
                                                else AnswerView(theme))
        self.body.setObjectName("MessageBody")
        # As wide as the column usually is (not a new widget's 640 px), so a long answer
        # measured before it is placed is laid out at the width it will get, once.
        self.resize(COLUMN_WIDTH, self.height())
        self.body.resize(COLUMN_WIDTH, self.body.height())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 6, 0, 6)
        outer.setSpacing(4)
        self.copy_button = self._tool("copy", "Copy this message", self.copy_text)
        if role == "user":
            row = QHBoxLayout()
            row.setSpacing(6)
            row.addStretch(1)
            row.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignVCenter)
            bubble = QFrame()
            bubble.setObjectName("UserBubble")
            bubble.setMaximumWidth(USER_BUBBLE_WIDTH)
            inner = QVBoxLayout(bubble)
            inner.setContentsMargins(BUBBLE_PAD, 10, BUBBLE_PAD, 10)
            inner.addWidget(self.body)
            row.addWidget(bubble)
            outer.addLayout(row)
            self.author = None
        else:
            self.author = QLabel()
            self.author.setObjectName("MessageAuthor")
            outer.addWidget(self.author)
            outer.addWidget(self.body)
        self._thinking: ThinkingSection | None = None  # built when an answer has thinking
        self._error: QLabel | None = None  # built when a message ended in an error
        self._regenerate: QToolButton | None = None  # built for the last answer
        self._versions: QWidget | None = None  # "‹ 1 / 2 ›", built for an answer written again
        self._sources: SourcesList | None = None  # built for an answer that cites documents
        self.meta_row = QWidget()
        meta = QHBoxLayout(self.meta_row)
        meta.setContentsMargins(0, 0, 0, 0)
        meta.setSpacing(2)
        self.meta = QLabel()
        self.meta.setObjectName("MessageMeta")
        self.meta.setWordWrap(True)
        meta.addWidget(self.meta, 1)
        if role != "user":
            meta.addWidget(self.copy_button)
        outer.addWidget(self.meta_row)
        self.meta_row.setVisible(role != "user")

    def _tool(self, name: str, tip: str, slot) -> QToolButton:
        return tool_button(name, tip, slot, self.theme.muted)

    # A long chat builds thousands of these as the reader scrolls up: parts that few messages
    # show (an error, the button to write the last answer again) are built when first needed.
    @property
    def error(self) -> QLabel:
        if self._error is None:
            self._error = QLabel()
            self._error.setObjectName("MessageError")
            self._error.setWordWrap(True)
            self._error.hide()
            layout = self.layout()
            layout.insertWidget(layout.indexOf(self.meta_row), self._error)
        return self._error

    @property
    def sources(self) -> SourcesList:
        """The answer's Sources (built when it first cites documents), under its text."""
        if self._sources is None:
            self._sources = SourcesList()
            self._sources.opened.connect(self.open_source)
            layout = self.layout()
            layout.insertWidget(layout.indexOf(self.meta_row), self._sources)
        return self._sources

    def show_sources(self, sources: list[dict]) -> None:
        if sources:
            self.sources.set_sources(sources)
        elif self._sources is not None:
            self._sources.set_sources([])

    def open_source(self, source: dict) -> None:
        """The whole passage of a source, in a dialog of its own (no file is opened)."""
        dialog = SourceDialog(source, self.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    @property
    def thinking_section(self) -> ThinkingSection:
        if self._thinking is None:
            self._thinking = ThinkingSection(self.theme)
            layout = self.layout()
            layout.insertWidget(layout.indexOf(self.body), self._thinking)
        return self._thinking

    @property
    def thinking(self) -> str:
        return self._thinking.text if self._thinking is not None else ""

    def set_thinking(self, thinking: str, phase: str, thinking_ms: float | None) -> None:
        """Show a reasoning model's thinking above its answer: open while it thinks, folded to
        "Thought for 12 s" once the answer begins (the reader can open it again)."""
        if not thinking and phase != "thinking":
            if self._thinking is not None:
                self._thinking.hide()
            return
        self.thaw()
        section = self.thinking_section
        section.show_thinking(thinking, phase, thinking_ms, live=self._live)
        section.show()

    @property
    def regenerate_button(self) -> QToolButton:
        if self._regenerate is None:
            self._regenerate = self._tool("regenerate", "Write this answer again", self.regenerate_requested.emit)
            self._regenerate.setVisible(False)
            self.meta_row.layout().addWidget(self._regenerate)
        return self._regenerate

    # -- size -----------------------------------------------------------------------------------
    # Qt asks every wrapped label in the list for its height-for-width on each layout pass, and a
    # rich-text label lays its whole document out again to answer. With the answer growing 30
    # times a second that cost grew with the length of the chat and starved the model of CPU.
    # A finished message therefore keeps a fixed height for the column's width instead.
    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return not self._frozen_width and super().hasHeightForWidth()

    def freeze(self, width: int) -> None:
        """Fix this message's height for `width`; it stops being measured on every layout."""
        if width <= 0 or width == self._frozen_width:
            return
        self.thaw()
        height = self.layout().totalHeightForWidth(width)
        self._frozen_width = width
        self.setFixedHeight(height)

    def thaw(self) -> None:
        if self._frozen_width:
            if self.on_thaw is not None:
                self.on_thaw(self)  # to be measured again once its content settles
            self._frozen_width = 0
            self.setMinimumHeight(0)
            self.setMaximumHeight(QWIDGETSIZE_MAX)

    # -- content --------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self._text

    def set_text(self, text: str) -> None:
        self.thaw()
        self._text = text
        if self.role == "user":
            self.body.setText(breakable(text))
            metrics = self.body.fontMetrics()
            widest = max((metrics.horizontalAdvance(line) for line in text.splitlines()), default=0)
            self.body.natural_width = widest + 4
            self.body.updateGeometry()
        else:
            self.body.set_markdown(text, live=self._live)
        self.body.setVisible(bool(text))

    def write_live(self) -> None:
        """The text will grow a few words at a time until `show_message`: render only its end."""
        self._live = True

    def start_streaming(self, model_name: str, note: str = "Thinking…") -> None:
        self.thaw()
        if self.author:
            self.author.setText(model_name)
        self.meta.setText(note)
        self.copy_button.setVisible(False)

    def show_message(self, message: Message) -> None:
        """Show a saved message with its figures and how it ended."""
        self.thaw()
        self._live = False  # the finished text is rendered whole
        self.message = message
        self.set_thinking(message.thinking, "done", message.thinking_ms)
        self.set_text(message.content)
        if self.author:
            self.author.setText(message.model or "Assistant")
        if message.role == "assistant":
            self.meta.setText(stats_line(message) if message.status != "streaming" else "Writing…")
        else:
            self.meta.setText("")
        self.copy_button.setVisible(bool(message.content))
        if self.role == "assistant":
            self.show_sources(list(getattr(message, "sources", None) or []))
        if message.error:
            self.error.setText(message.error)
            self.error.show()
        elif self._error is not None:
            self._error.hide()

    def set_versions(self, index: int, count: int) -> None:
        """Which of an answer's `count` versions this is (from 0), with buttons to the others;
        nothing for an answer written once."""
        if count < 2:
            if self._versions is not None:
                self._versions.hide()
            return
        if self._versions is None:
            self._versions = QWidget()
            row = QHBoxLayout(self._versions)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(0)
            self._earlier = self._tool("earlier", "Earlier version", lambda: self.version_requested.emit(-1))
            self._later = self._tool("later", "Later version", lambda: self.version_requested.emit(1))
            self.version_label = QLabel()
            self.version_label.setObjectName("MessageMeta")
            for part in (self._earlier, self.version_label, self._later):
                row.addWidget(part)
            self.meta_row.layout().insertWidget(1, self._versions)
        self.version_label.setText(f"{index + 1} / {count}")
        self._earlier.setEnabled(index > 0)
        self._later.setEnabled(index < count - 1)
        self._versions.show()

    def set_regenerate_visible(self, visible: bool) -> None:
        if visible and self.role == "assistant":
            self.regenerate_button.setVisible(True)
        elif self._regenerate is not None:
            self._regenerate.setVisible(False)
        # (a button in the row under the text changes no height: no need to thaw)

    def copy_text(self) -> None:
        """The Copy button: the message as written (an answer's Markdown), without the characters
        that would disguise it where it is pasted (markdown.drawn_text: bidi overrides, piles of
        accents)."""
        QGuiApplication.clipboard().setText(drawn_text(self._text) if self.role == "assistant" else self._text)
        previous = self.meta.text()
        self.meta.setText("Copied")
        QTimer.singleShot(1200, self.meta, lambda: self.meta.setText(previous))


class ThinkingSection(QFrame):
    """A reasoning model's thinking: a heading that folds and unfolds it, and the thoughts in a
    muted style, drawn by the same renderer as answers."""

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ThinkingSection")
        self.theme = theme
        self._text = ""
        self._phase = ""
        self._opened_by_reader: bool | None = None  # the reader's own choice wins over the automatic one
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 6)
        layout.setSpacing(4)
        self.toggle = QToolButton()
        self.toggle.setObjectName("ThinkingToggle")
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setCursor(Qt.CursorShape.PointingHandCursor)
        self.toggle.setCheckable(True)
        self.toggle.clicked.connect(self._toggled)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        self.body = AnswerView(theme)
        self.body.setObjectName("ThinkingBody")
        self.body.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)  # for its border
        self.body.layout().setContentsMargins(12, 0, 0, 0)
        layout.addWidget(self.body)

    @property
    def text(self) -> str:
        return self._text

    @property
    def is_open(self) -> bool:
        return self.body.isVisibleTo(self)

    def show_thinking(self, text: str, phase: str, thinking_ms: float | None, *, live: bool) -> None:
        self.toggle.setText(thinking_line(phase, thinking_ms))
        if text != self._text or (not live and self.body.is_live):
            self._text = text
            self.body.set_markdown(text, live=live)
        if phase != self._phase:
            self._phase = phase
            self._set_open(self._opened_by_reader if self._opened_by_reader is not None else phase == "thinking")

    def _set_open(self, opened: bool) -> None:
        self.toggle.setChecked(opened)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if opened else Qt.ArrowType.RightArrow)
        self.body.setVisible(opened and bool(self._text))
        self.toggle.setToolTip("Hide the thinking" if opened else "Show what the model thought before answering")

    def _toggled(self, checked: bool) -> None:
        self._opened_by_reader = checked
        parent = self.parentWidget()
        if isinstance(parent, MessageWidget):
            parent.thaw()  # its height changes
        self._set_open(checked)


class EmptyState(QWidget):
    """What a new conversation shows: what Hearth is, and a few things to try."""

    suggestion_chosen = Signal(str)
    import_requested = Signal()
    browse_requested = Signal()

    SUGGESTIONS = (
        "Explain what a GGUF file is, in two sentences.",
        "Write a haiku about a quiet evening by the fire.",
        "Give me three ideas for a short weekend trip.",
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 48, 24, 24)
        layout.setSpacing(10)
        layout.addStretch(1)
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(72, 72))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(logo)
        self.title = QLabel("Start a private chat")
        self.title.setObjectName("EmptyTitle")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.title)
        self.text = QLabel()
        self.text.setObjectName("EmptyText")
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setMinimumWidth(420)  # wide enough that the text wraps to two or three full lines
        self.text.setMaximumWidth(560)
        text_row = QHBoxLayout()  # centred by stretches: an aligned item would not get its wrapped height
        text_row.addStretch(1)
        text_row.addWidget(self.text)
        text_row.addStretch(1)
        layout.addLayout(text_row)
        layout.addSpacing(12)
        self.suggestions: list[QPushButton] = []
        for prompt in self.SUGGESTIONS:
            button = QPushButton(prompt)
            button.setObjectName("SuggestionButton")
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.clicked.connect(lambda _=False, p=prompt: self.suggestion_chosen.emit(p))
            self.suggestions.append(button)
            row = QHBoxLayout()
            row.addStretch(1)
            button.setMinimumWidth(380)
            row.addWidget(button)
            row.addStretch(1)
            layout.addLayout(row)
        self.browse_button = QPushButton("Find a model…")
        self.browse_button.setObjectName("Primary")
        self.browse_button.clicked.connect(self.browse_requested.emit)
        self.import_button = QPushButton("Import a .gguf file…")
        self.import_button.clicked.connect(self.import_requested.emit)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.browse_button)
        row.addWidget(self.import_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(2)

    def set_model(self, model_name: str | None) -> None:
        has_model = bool(model_name)
        for button in self.suggestions:
            button.setVisible(has_model)
        self.import_button.setVisible(not has_model)
        self.browse_button.setVisible(not has_model)
        if has_model:
            self.title.setText("Start a private chat")
            self.text.setText(f"You are talking to {model_name}, running on this computer. "
                              "Nothing you write here leaves it.")
        else:
            self.title.setText("Add a model to begin")
            self.text.setText("Hearth runs open models in GGUF format on your own computer. "
                              "Download one (the list says which will run well here), or import "
                              "a .gguf file you already have.")


EARLIER_PAGE = 60  # messages added by "Show earlier messages", and held in one widget
SCROLL_BATCH = 2  # messages added per turn of the event loop while the reader nears the top


class MessageList(QScrollArea):
    """The messages of one conversation, newest at the bottom, following the answer as it grows
    unless the reader has scrolled up. Long chats show their newest messages first and load
    earlier ones on request."""

    earlier_requested = Signal(int)  # how many earlier messages to add: a page (the button) or a few (scrolling)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        holder = QWidget()
        holder.setObjectName("ChatArea")
        outer = QHBoxLayout(holder)
        outer.setContentsMargins(24, 12, 24, 12)
        outer.addStretch(1)
        self.column = QWidget()
        self.column.setObjectName("MessageColumn")
        self.column.setMaximumWidth(COLUMN_WIDTH)
        self.column.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.layout_ = QVBoxLayout(self.column)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setSpacing(8)
        self.layout_.addStretch(1)
        self.earlier_button = QPushButton()
        self.earlier_button.setObjectName("EarlierButton")
        self.earlier_button.clicked.connect(lambda: self.earlier_requested.emit(EARLIER_PAGE))
        self.earlier_button.hide()
        self.layout_.addWidget(self.earlier_button, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addWidget(self.column, 100)
        outer.addStretch(1)
        self.setWidget(holder)
        self._widgets: list[MessageWidget] = []
        self._pages: list[QWidget] = []  # earlier messages, a page to a widget (see prepend)
        self.live: MessageWidget | None = None  # the answer being written, if any
        self._frozen_at = 0  # the column width finished messages were last measured for
        self._unfrozen: list[MessageWidget] = []  # added since, or still being written
        self._freeze_timer = QTimer(self, singleShot=True, interval=0)
        self._freeze_timer.timeout.connect(self.freeze_finished)
        self._stick = True
        self._anchor: int | None = None  # after earlier messages came in: the reader's distance from the bottom
        self._restoring = False
        # Scrolling near the top brings earlier messages a few at a time, one batch per turn of
        # the event loop, so the window keeps answering while they are built and laid out.
        self._more_timer = QTimer(self, singleShot=True, interval=0)
        self._more_timer.timeout.connect(lambda: self.earlier_requested.emit(SCROLL_BATCH))
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._freeze_timer.start()  # re-measure finished messages once the width settles

    def freeze_finished(self) -> None:
        """Give every message that is not being written a fixed height for the column's width.
        Only the messages added since the last pass, unless the width changed: a long chat
        scrolled up gains two messages at a time, and walking all 5,000 each time grew into
        stalls."""
        width = self.column.width()
        widgets = self._widgets if width != self._frozen_at else self._unfrozen
        for widget in widgets:
            if widget is not self.live:
                widget.freeze(width)
        self._frozen_at = width
        self._unfrozen = []

    def _on_scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        if not self._restoring:
            self._anchor = None  # the reader moved: stop holding the place
        self._stick = value >= bar.maximum() - 24
        self._more_if_near_the_top()

    def _more_if_near_the_top(self) -> None:
        bar = self.verticalScrollBar()
        if bar.maximum() > 0 and bar.value() < self.viewport().height() and self.earlier_button.isVisible():
            self._more_timer.start()  # the earlier messages come on their own

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        # At the very top the bar cannot move, so scrolling up again sends no valueChanged.
        if (self.verticalScrollBar().value() == 0 and event.angleDelta().y() > 0
                and self.earlier_button.isVisible()):
            self.earlier_requested.emit(SCROLL_BATCH)
        super().wheelEvent(event)

    def _on_range_changed(self, _min: int, maximum: int) -> None:
        bar = self.verticalScrollBar()
        if self._anchor is not None:
            # Earlier messages were put above: keep the ones being read where they were, whenever
            # the layout gets round to growing the list.
            self._restoring = True
            bar.setValue(maximum - self._anchor)
            self._restoring = False
            self._more_if_near_the_top()
        elif self._stick:
            bar.setValue(maximum)

    def widgets(self) -> list[MessageWidget]:
        # Our own list: walking the layout makes PySide6 hand back None for the stretch item,
        # which (in 6.12) eventually corrupts None's reference count.
        return list(self._widgets)

    def add(self, widget: MessageWidget) -> None:
        # Measured first at the column's width, not a new widget's 640 px: a long answer is
        # then laid out once, at the width it gets.
        widget.resize(self.column.width(), widget.height())
        self.layout_.insertWidget(self.layout_.count(), widget)
        self._widgets.append(widget)
        self._refreeze(widget)

    def _refreeze(self, widget: MessageWidget) -> None:
        widget.on_thaw = self._refreeze
        self._unfrozen.append(widget)
        self._freeze_timer.start()

    def prepend(self, widgets: list[MessageWidget]) -> None:
        """Put earlier messages above the ones shown, keeping the reader where they were.

        Earlier messages are held EARLIER_PAGE to a widget: the column's layout then moves and
        measures one item per page rather than every message above the reader, which made each
        page of a 5,000-message chat cost more than the one before (tests/bench/smooth.py)."""
        bar = self.verticalScrollBar()
        from_bottom = bar.maximum() - bar.value()
        page = self._pages[-1] if self._pages and self._pages[-1].layout().count() + len(widgets) <= EARLIER_PAGE else None
        if page is None:
            page = QWidget()
            page.setObjectName("MessagePage")
            lines = QVBoxLayout(page)
            lines.setContentsMargins(0, 0, 0, 0)
            lines.setSpacing(self.layout_.spacing())
            self.layout_.insertWidget(self.layout_.indexOf(self.earlier_button) + 1, page)
            self._pages.append(page)
        for offset, widget in enumerate(widgets):
            widget.resize(self.column.width(), widget.height())
            page.layout().insertWidget(offset, widget)
        self._widgets[:0] = widgets
        for widget in widgets:
            self._refreeze(widget)
        # Thousands of message widgets are thousands of Python objects that live as long as the
        # chat is open: Python's full garbage collection walked them all, an 85 ms stall while
        # scrolling a 5,000-message chat. They are set aside from collection until the chat is
        # closed (freed objects still go at once; only reference cycles wait).
        gc.freeze()
        self._stick = False
        self._anchor = from_bottom
        self._freeze_timer.start()

    def set_earlier(self, count: int) -> None:
        """How many earlier messages are not shown yet (0 hides the button)."""
        self.earlier_button.setText(f"Show earlier messages ({count:,} more)")
        self.earlier_button.setVisible(count > 0)

    def set_live(self, widget: MessageWidget | None) -> None:
        """Mark the message being written (it keeps measuring itself); None when it is done."""
        if widget is not None:
            widget.thaw()
        if self.live is not None and self.live in self._widgets:
            self._refreeze(self.live)  # done: its height is fixed from now on
        self.live = widget
        self._freeze_timer.start()

    def remove(self, widget: MessageWidget) -> None:
        if widget is self.live:
            self.live = None
        self._widgets.remove(widget)
        if widget in self._unfrozen:
            self._unfrozen.remove(widget)
        widget.on_thaw = None
        widget.parentWidget().layout().removeWidget(widget)  # the column's, or a page's
        widget.deleteLater()

    def clear(self) -> None:
        gc.unfreeze()  # what prepend set aside is collected as usual again
        self._unfrozen = []
        for widget in list(self._widgets):
            self.remove(widget)
        for page in self._pages:
            self.layout_.removeWidget(page)
            page.deleteLater()
        self._pages = []
        self.live = None
        self._stick = True
        self._anchor = None

    def scroll_to_bottom(self) -> None:
        self._stick = True
        self._anchor = None
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def scroll_to(self, widget: MessageWidget) -> None:
        self._stick = False
        QTimer.singleShot(0, lambda: self.ensureWidgetVisible(widget, 0, 40))


class ComposerInput(QPlainTextEdit):
    """Enter sends; Shift+Enter starts a new line. Grows with its text up to a few lines.

    A very long run of characters with no space (a pasted minified file, a base64 blob, a 100,000-
    character line) is broken anywhere rather than at word ends: Qt's word wrapping searches such a
    run for a break on every layout, so each key typed after it held the window for a second or
    more. The text stays in the box, editable, and is sent exactly as it is."""

    submitted = Signal()
    # Characters without a space past which lines break anywhere; far longer than any word.
    LONG_RUN = 1_000

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ComposerInput")
        self.setPlaceholderText("Message the model…   (Enter sends, Shift+Enter for a new line)")
        self.setTabChangesFocus(True)
        self._fit: tuple[int, bool] | None = None
        self.document().contentsChange.connect(self._watch_long_runs)
        self.document().contentsChanged.connect(self._fit_height)
        self._fit_height()

    def insertFromMimeData(self, source) -> None:  # noqa: N802 (Qt's name)
        """A paste: a long run is known before Qt lays it out, so it is laid out once, not twice."""
        from PySide6.QtGui import QTextOption

        if source.hasText() and _has_long_run(source.text(), self.LONG_RUN):
            self.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        super().insertFromMimeData(source)

    def _watch_long_runs(self, position: int, _removed: int, added: int) -> None:
        from PySide6.QtGui import QTextOption

        document = self.document()
        anywhere = self.wordWrapMode() == QTextOption.WrapMode.WrapAnywhere
        if anywhere:
            if document.characterCount() <= self.LONG_RUN:  # the long run is gone (sent, cleared)
                self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
            return
        if added < self.LONG_RUN and document.findBlock(position).length() <= self.LONG_RUN:
            return  # a key typed in an ordinary line: nothing to look at
        block, end = document.findBlock(position), document.findBlock(position + added)
        while block.isValid():
            if block.length() > self.LONG_RUN and _has_long_run(block.text(), self.LONG_RUN):
                self.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
                return
            if block == end:
                return
            block = block.next()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def _fit_height(self) -> None:
        wanted = int(self.document().size().height())  # in lines, for a plain-text document
        lines = max(1, min(MAX_INPUT_LINES, wanted))
        fit = (lines, wanted > MAX_INPUT_LINES)
        if fit == self._fit:
            return  # the same height as before: no relayout of the window around it
        self._fit = fit
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded if wanted > MAX_INPUT_LINES
                                        else Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        line_height = self.fontMetrics().lineSpacing()
        self.setFixedHeight(lines * line_height + 14)


def _has_long_run(text: str, length: int) -> bool:
    """Whether `text` holds more than `length` characters in a row with no whitespace."""
    run = 0
    for part in text.split():
        run = max(run, len(part))
        if run > length:
            return True
    return False


CHIP_NAME_WIDTH = 170  # a chip's name is elided in the middle past this many pixels


class AttachmentChip(QFrame):
    """A file or collection the chat uses, above the composer: its icon, its name (whole on
    hover) and × to take it off the chat."""

    detach_requested = Signal(str, str)  # "file" or "collection", its path or name

    def __init__(self, kind: str, value: str, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind, self.value = kind, value
        self.setObjectName("Chip")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 2, 2, 2)
        row.setSpacing(4)
        glyph = QLabel()
        glyph.setPixmap(icon("document" if kind == "file" else "books", theme.muted).pixmap(14, 14))
        row.addWidget(glyph)
        name = Path(value).name if kind == "file" else value
        self.label = QLabel(elide_middle(name, self.fontMetrics(), CHIP_NAME_WIDTH))
        self.label.setObjectName("ChipName")
        row.addWidget(self.label)
        self.setToolTip(value if kind == "file" else f"Collection “{value}”: the chat searches it for passages")
        what = "file" if kind == "file" else "collection"
        close = tool_button("close", f"Stop using this {what} in the chat", lambda: self.detach_requested.emit(
            kind, value), theme.muted, size=12)
        close.setObjectName("ChipClose")
        row.addWidget(close)


class Composer(QFrame):
    send_requested = Signal(str)
    stop_requested = Signal()
    attach_requested = Signal()  # the paperclip's "Attach files…"
    collection_toggled = Signal(str, bool)  # a collection ticked (True) or unticked in its menu
    detach_requested = Signal(str, str)  # a chip's ×: "file" or "collection", its path or name
    documents_requested = Signal()  # "Manage documents…": the Documents page

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = theme
        self.setObjectName("Composer")
        self.generating = False
        # What the paperclip's "Use a collection" lists: (name, used by this chat) pairs.
        self.collections: Callable[[], list[tuple[str, bool]]] = list
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 6, 8, 8)
        outer.setSpacing(4)
        self.chips = QWidget()
        self.chips.setObjectName("Chips")
        chip_row = QHBoxLayout(self.chips)
        chip_row.setContentsMargins(2, 0, 0, 0)
        chip_row.setSpacing(6)
        chip_row.addStretch(1)
        self.chips.hide()
        outer.addWidget(self.chips)
        layout = QHBoxLayout()
        layout.setContentsMargins(0, 2, 0, 0)
        layout.setSpacing(6)
        self.clip = tool_button("paperclip", "Attach files or use a collection of documents", lambda: None,
                                theme.muted, size=18)
        self.clip.setObjectName("AttachButton")
        self.clip.setFixedSize(32, 32)
        self.clip.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.clip.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0; }")
        self.menu = QMenu(self.clip)
        self.menu.aboutToShow.connect(self._fill_menu)
        self.clip.setMenu(self.menu)
        layout.addWidget(self.clip, 0, Qt.AlignmentFlag.AlignBottom)
        self.input = ComposerInput()
        self.input.submitted.connect(self._submit)
        layout.addWidget(self.input, 1)
        self.button = QToolButton()
        self.button.setObjectName("SendButton")
        self.button.setFixedSize(32, 32)
        self.button.setIconSize(QSize(18, 18))
        self.button.clicked.connect(self._clicked)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignBottom)
        outer.addLayout(layout)
        self.input.textChanged.connect(self._refresh)
        self._refresh()

    def _fill_menu(self) -> None:
        """The paperclip's menu, made as it opens: the collections are read then."""
        menu = self.menu
        menu.clear()
        menu.addAction(icon("document", self.theme.text), "Attach files…", self.attach_requested.emit)
        use = menu.addMenu(icon("books", self.theme.text), "Use a collection")
        use.setObjectName("UseCollectionMenu")
        collections = self.collections()
        for name, used in collections:
            action = use.addAction(name)
            action.setCheckable(True)
            action.setChecked(used)
            action.toggled.connect(lambda on, n=name: self.collection_toggled.emit(n, on))
        if not collections:
            none = use.addAction("No collections yet")
            none.setEnabled(False)
        use.addSeparator()
        use.addAction("Manage documents…", self.documents_requested.emit)

    def set_attachments(self, files: list[str], collections: list[str]) -> None:
        """The chips above the box: the files attached to this chat, then its collections."""
        row = self.chips.layout()
        while row.count() > 1:
            item = row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for kind, values in (("file", files), ("collection", collections)):
            for value in values:
                chip = AttachmentChip(kind, value, self.theme)
                chip.detach_requested.connect(self.detach_requested.emit)
                row.insertWidget(row.count() - 1, chip)
        self.chips.setVisible(bool(files or collections))

    def chip_values(self) -> list[str]:
        """What the chips stand for, in their order: file paths, then collection names."""
        row = self.chips.layout()
        widgets = [row.itemAt(i).widget() for i in range(row.count())]
        return [w.value for w in widgets if isinstance(w, AttachmentChip)]

    def set_generating(self, generating: bool) -> None:
        self.generating = generating
        self._refresh()

    def _refresh(self) -> None:
        if self.generating:
            self.button.setIcon(icon("stop", self.theme.accent_text))
            self.button.setToolTip("Stop generating (Esc)")
            self.button.setAccessibleName("Stop")
            self.button.setEnabled(True)
        else:
            self.button.setIcon(icon("send", self.theme.accent_text))
            self.button.setToolTip("Send (Enter)")
            self.button.setAccessibleName("Send")
            self.button.setEnabled(bool(self.input.toPlainText().strip()))

    def _clicked(self) -> None:
        if self.generating:
            self.stop_requested.emit()
        else:
            self._submit()

    def _submit(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.generating:
            return
        self.input.clear()
        self.send_requested.emit(text)
