"""Compare & cloud: put local and cloud models side by side, vote blind, see the leaderboard, see
where your words went, and manage cloud providers and their prices. Everything cloud is off until
the user adds a provider and agrees that words sent there leave the computer."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core import cloud, compare, secrets
from desktop.core.chat import LiveAnswer
from desktop.core.errors import HearthError
from desktop.core.services import Services
from desktop.core.store import THIS_MACHINE, ApiUseTotals, Message
from desktop.core.units import human_bytes
from desktop.ui import export_html
from desktop.ui.answer_view import AnswerView, answer_label
from desktop.ui.chat_view import Composer, money, stats_line, thinking_line, waiting_note, where_line
from desktop.ui.icons import icon
from desktop.ui.theme import Theme
from desktop.ui.widgets import confirm, data_table, muted, page_frame

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]
FLUSH_MS = 33
QWIDGETSIZE_MAX = (1 << 24) - 1  # Qt's largest widget size: no maximum
NONE = ""
CUSTOM = "custom"
MARKDOWN_FILTER = "Markdown (*.md)"
HTML_FILTER = "Web page (*.html)"


APPS_ROWS = 200  # per-day rows of apps' use shown (newest first)
APPS_REFRESH_MS = 250
APP_NAME_CHARS = 48
LOCAL_ADDRESSES = ("127.0.0.1", "::1", "localhost")


def app_name(address: str, user_agent: str) -> str:
    """An app as a person knows it: its user agent without the bracketed details (system,
    build), cut to APP_NAME_CHARS; an app on another computer also by its address."""
    name = " ".join(re.sub(r"\([^)]*\)?", " ", user_agent).split()) or "An app with no name"
    if len(name) > APP_NAME_CHARS:
        name = name[:APP_NAME_CHARS - 1].rstrip() + "…"
    return name if address in LOCAL_ADDRESSES else f"{address} · {name}"


def app_tip(address: str, user_agent: str) -> str:
    where = "this computer" if address in LOCAL_ADDRESSES else "another computer"
    return f"{user_agent or '(no user agent)'}\nfrom {address} ({where})"


def apps_sentence(month: ApiUseTotals, ever: ApiUseTotals) -> str:
    """The ledger's sentence on what apps used this month (`month`) and ever (`ever`)."""
    if not ever.requests:
        return ("No app has used your models yet. When the local server is on, editors, note apps and scripts "
                "can use them, and what they use is counted here by day.")
    if not month.requests:
        return f"No app used your models this month ({ever.requests:,} requests before)."
    apps = "1 app" if month.apps == 1 else f"{month.apps:,} apps"
    times = "once" if month.requests == 1 else f"{month.requests:,} times"
    failed = f" ({month.failed:,} failed)" if month.failed else ""
    if month.hosts:
        where = (f"some were sent to {', '.join(month.hosts)}"
                 + (f" ({human_bytes(month.bytes_sent)})" if month.bytes_sent else ""))
    else:
        where = "everything stayed on this computer"
    return f"{apps} used your models {times} this month{failed}; {where}."


def item(text: str, tip: str = "", align_right: bool = False) -> QTableWidgetItem:
    cell = QTableWidgetItem(text)
    if tip:
        cell.setToolTip(tip)
    if align_right:
        cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return cell


class ColumnView(QFrame):
    """One column of a comparison: who answered (or a letter, while blind), the conversation so
    far, and the figures of the last answer. Answers are drawn by the chat's `AnswerView` (code
    blocks with their own Copy button, tables and long code lines that scroll sideways, typeset
    math, image chips, links that ask first); the conversation scrolls up and down as a whole."""

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("CompareColumn")
        self.theme = theme
        self.muted_color = theme.muted
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(6)
        self.title = QLabel()
        self.title.setObjectName("CardTitle")
        self.where = muted(wrap=True)
        self.body = QScrollArea()
        self.body.setObjectName("CompareText")
        self.body.setWidgetResizable(True)
        self.body.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # blocks scroll sideways
        self.body.setFrameShape(QFrame.Shape.NoFrame)
        self.body.setStyleSheet("QScrollArea#CompareText, #CompareTurns { background: transparent; }")
        self.body.viewport().setAutoFillBackground(False)
        holder = QWidget()
        holder.setObjectName("CompareTurns")
        self._stack = QVBoxLayout(holder)
        self._stack.setContentsMargins(0, 0, 6, 0)
        self._stack.setSpacing(6)
        self._stack.addStretch(1)
        self.body.setWidget(holder)
        self._turns: list[_Turn] = []  # one per message, top to bottom
        # Finished turns get a fixed height for the column's width, so a growing answer does not
        # make Qt measure every earlier one again, 30 times a second (as the chat's MessageList).
        self._live_turn: _Turn | None = None
        self._frozen_at = 0
        self._freeze_timer = QTimer(self, singleShot=True, interval=0)
        self._freeze_timer.timeout.connect(self._freeze_finished)
        self._stick = True  # follow the end of the conversation unless the reader scrolled up
        bar = self.body.verticalScrollBar()
        bar.valueChanged.connect(lambda value: setattr(self, "_stick", value >= bar.maximum() - 24))
        bar.rangeChanged.connect(lambda _low, high: self._stick and bar.setValue(high))
        self.figures = muted(wrap=True)
        self.figures.setMinimumHeight(self.figures.fontMetrics().lineSpacing() * 2 + 4)  # never clipped
        self.body.setMinimumHeight(80)
        layout.addWidget(self.title)
        layout.addWidget(self.where)
        layout.addWidget(self.body, 1)
        layout.addWidget(self.figures)

    def show_turns(self, label: str, messages: list[Message], live: LiveAnswer | None = None, *,
                   hide_figures: bool = False, note: str = "") -> None:
        """Show the conversation of this column. Called up to 30 times a second while answers
        stream: only what changed is drawn again (of a growing answer, its last block)."""
        self.title.setText(label)
        self._live_turn = None
        shown = [m for m in messages if m.role in ("user", "assistant")]
        for index, m in enumerate(shown):
            if index < len(self._turns) and self._turns[index].role == m.role:
                turn = self._turns[index]
            else:
                for old in self._turns[index:]:  # from here on it is another conversation
                    self._stack.removeWidget(old)
                    old.hide()
                    old.deleteLater()
                del self._turns[index:]
                turn = _Turn(m.role, self.theme)
                self._stack.insertWidget(self._stack.count() - 1, turn)
                turn.show()  # now, not after the next turn of the event loop (as a layout would)
                self._turns.append(turn)
            if m.role == "user":
                turn.show_prompt(m.content)
                continue
            streaming = live is not None and m is messages[-1] and m.status == "streaming"
            if streaming:
                self._live_turn = turn
            text = live.text if streaming else m.content
            thought = thinking_line(live.phase, live.thinking_ms) if streaming else (
                thinking_line("done", m.thinking_ms) if m.thinking or m.thinking_ms is not None else "")
            turn.show_answer(text, thought, m.error or "Stopped." if m.status in ("error", "stopped") else "",
                             live=streaming)
        for old in self._turns[len(shown):]:
            self._stack.removeWidget(old)
            old.hide()
            old.deleteLater()
        del self._turns[len(shown):]
        if not shown:
            self._stick = True
        self._freeze_timer.start()
        answers = [m for m in messages if m.role == "assistant"]
        last = answers[-1] if answers else None
        if last is None or last.status == "streaming":
            self.figures.setText((note or "Writing…") if last is not None else "")
            self.where.setText("")
        elif hide_figures:  # speed, cost and where would tell which model this is
            self.figures.setText("Figures appear after your vote.")
            self.where.setText("")
        else:
            self.figures.setText(stats_line(last, with_where=False))
            self.where.setText(where_line(last))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._freeze_timer.start()  # measured again once the width settles

    def _freeze_finished(self) -> None:
        width = self.body.viewport().width() - self._stack.contentsMargins().right()
        if width != self._frozen_at:
            for turn in self._turns:
                turn.thaw()
            self._frozen_at = width
        for turn in self._turns:
            if turn is not self._live_turn:
                turn.freeze(width)

    def answers(self) -> list[AnswerView]:
        """The answers shown, top to bottom."""
        return [turn.answer for turn in self._turns if turn.answer is not None and not turn.answer.isHidden()]

    @property
    def text(self) -> str:
        """What the column shows, as plain text: "You: …" for each prompt, each answer's
        Markdown as written, its thinking line and note, "…" while an answer is awaited."""
        return "\n\n".join(turn.text for turn in self._turns)


class _Turn(QWidget):
    """One message of a Compare column: the prompt ("You: …"), or an answer with its thinking
    line ("Thought for 3 s"), its text (an `AnswerView`; "…" until the first words) and a note
    when it ended early."""

    def __init__(self, role: str, theme: Theme) -> None:
        super().__init__()
        self.role, self.theme = role, theme
        self._shown: dict[str, str] = {}
        self.answer: AnswerView | None = None  # made with the first words
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8 if role == "user" else 0, 0, 0)
        layout.setSpacing(4)
        self.prompt = self._label("ComparePrompt") if role == "user" else None
        self.thought = self._label("CompareThought") if role != "user" else None
        self.waiting = self._label("CompareWaiting") if role != "user" else None
        self.note = self._label("CompareNote") if role != "user" else None
        self._frozen_width = 0  # >0: its height is fixed for this width (see freeze)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return not self._frozen_width and super().hasHeightForWidth()

    def freeze(self, width: int) -> None:
        """Fix the height for `width`: it stops being measured on every layout of the column."""
        if width > 0 and width != self._frozen_width:
            self.thaw()
            self._frozen_width = width
            self.setFixedHeight(self.layout().totalHeightForWidth(width))

    def thaw(self) -> None:
        if self._frozen_width:
            self._frozen_width = 0
            self.setMinimumHeight(0)
            self.setMaximumHeight(QWIDGETSIZE_MAX)

    def _label(self, name: str) -> QLabel:
        label = answer_label()  # selectable, copies clean
        label.setObjectName(name)
        label.hide()
        self.layout().addWidget(label)
        return label

    def _set(self, label: QLabel, key: str, rich: str, text: str) -> None:
        if self._shown.get(key) != text:
            self.thaw()
            self._shown[key] = text
            label.setText(rich)
        label.setVisible(bool(text))

    def show_prompt(self, text: str) -> None:
        assert self.prompt is not None
        escaped = html.escape(text).replace("\n", "<br>")
        self._set(self.prompt, "you", f"<span style='color:{self.theme.muted}'><b>You:</b> {escaped}</span>", text)

    def show_answer(self, text: str, thought: str, note: str, *, live: bool) -> None:
        assert self.thought is not None and self.waiting is not None and self.note is not None
        muted = self.theme.muted
        self._set(self.thought, "thought", f"<span style='color:{muted}'><i>{html.escape(thought)}</i></span>", thought)
        waiting = "…" if not text and not thought else ""
        self._set(self.waiting, "waiting", "<i>…</i>", waiting)
        if text and self.answer is None:
            self.answer = AnswerView(self.theme, self)
            self.answer.setObjectName("CompareAnswer")
            self.layout().insertWidget(self.layout().indexOf(self.waiting), self.answer)
        if self.answer is not None:
            if self.answer.markdown != text or self.answer.is_live != live:
                self.thaw()
                self.answer.set_markdown(text, live=live)
            self.answer.setVisible(bool(text))
        self._shown["answer"] = text
        self._set(self.note, "note", f"<i>{html.escape(note)}</i>", note)

    @property
    def text(self) -> str:
        if self.role == "user":
            return f"You: {self._shown.get('you', '')}"
        return "\n\n".join(v for k in ("thought", "answer", "waiting", "note") if (v := self._shown.get(k)))


class CloudPage(QWidget):
    back_requested = Signal()
    message = Signal(str, str)  # text, level
    providers_changed = Signal()
    offline_changed = Signal(bool)

    def __init__(self, services: Services, theme: Theme, spawn: Spawn) -> None:
        super().__init__()
        self.services, self.theme, self.spawn = services, theme, spawn
        self.session: compare.CompareSession | None = None
        self._live: dict[int, LiveAnswer] = {}
        self._waits: dict[int, str] = {}  # a column's provider asked to wait: what to say meanwhile
        self._running = False  # a prompt is being answered

        _, top, self.banner, self.tabs = page_frame(self, theme, "Compare & cloud", self.back_requested.emit)
        self.offline = QCheckBox("Offline mode")
        self.offline.setToolTip("Connect to nothing but this computer: no cloud models, no model downloads.")
        self.offline.setChecked(services.settings.offline)
        self.offline.toggled.connect(self.offline_changed.emit)
        top.addWidget(self.offline)
        self.tabs.addTab(self._build_compare(), "Compare")
        self.tabs.addTab(self._build_leaderboard(), "Leaderboard")
        self.tabs.addTab(self._build_data(), "Your data")
        self.tabs.addTab(self._build_providers(), "Providers")
        self.tabs.addTab(self._build_prices(), "Prices")
        self.tabs.currentChanged.connect(lambda _: self.refresh())

        self._flush_timer = QTimer(self, interval=FLUSH_MS)
        self._flush_timer.timeout.connect(self._flush)
        self.refresh()

    def notify(self, text: str, level: str = "error") -> None:
        self.banner.show_text(text, level)

    def refresh(self) -> None:
        self.refresh_targets()
        self.refresh_saved()
        self.refresh_leaderboard()
        self.refresh_data()
        self.refresh_providers()
        self.refresh_prices()

    def set_offline(self, on: bool) -> None:
        self.offline.blockSignals(True)
        self.offline.setChecked(on)
        self.offline.blockSignals(False)
        self.refresh_data()

    # -- compare ----------------------------------------------------------------------------------
    def _build_compare(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 10, 0, 0)
        pick = QHBoxLayout()
        self.pickers: list[QComboBox] = []
        for i in range(compare.MAX_TARGETS):
            combo = QComboBox()
            combo.setObjectName(f"Target{i}")
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
            combo.activated.connect(lambda _: self._show_columns())
            self.pickers.append(combo)
            pick.addWidget(combo, 1)
        layout.addLayout(pick)

        options = QHBoxLayout()
        self.blind = QCheckBox("Blind")
        self.blind.setToolTip("Show the answers as A, B, … with their figures hidden, and say which model wrote "
                              "which after you vote.")
        self.blind.toggled.connect(lambda _: self._show_columns())
        options.addWidget(self.blind)
        self.new_button = QPushButton(icon("new", self.theme.text), "New comparison")
        self.new_button.clicked.connect(self.new_comparison)
        options.addWidget(self.new_button)
        options.addSpacing(16)
        self.saved = QComboBox()
        self.saved.setObjectName("SavedComparisons")
        self.saved.activated.connect(lambda _: self.open_comparison(self.saved.currentData()))
        options.addWidget(self.saved, 1)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export)
        self.delete_button = QPushButton(icon("trash", self.theme.text), "Delete…")
        self.delete_button.clicked.connect(self._delete_comparison)
        options.addWidget(self.export_button)
        options.addWidget(self.delete_button)
        layout.addLayout(options)

        self.columns_row = QHBoxLayout()
        self.columns_row.setSpacing(10)
        self.columns: list[ColumnView] = []
        for _ in range(compare.MAX_TARGETS):
            view = ColumnView(self.theme)
            self.columns.append(view)
            self.columns_row.addWidget(view, 1)
        layout.addLayout(self.columns_row, 1)
        self.empty_hint = muted("Choose two to four models above, local or cloud, and ask them the same thing. "
                                "Cloud models appear here once you add a provider.")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.empty_hint)

        self.vote_bar = QFrame()
        self.vote_bar.setObjectName("VoteBar")
        votes = QHBoxLayout(self.vote_bar)
        votes.setContentsMargins(0, 4, 0, 4)
        votes.addWidget(QLabel("Which answer is better?"))
        self.vote_buttons: dict[str, QPushButton] = {}
        for outcome in (*compare.LETTERS, "tie", "bad"):
            text = {"tie": "Tie", "bad": "All bad"}.get(outcome, f"{outcome} is better")
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, o=outcome: self.vote(o))
            self.vote_buttons[outcome] = button
            votes.addWidget(button)
        votes.addStretch(1)
        layout.addWidget(self.vote_bar)

        self.composer = Composer(self.theme)
        self.composer.input.setPlaceholderText("Ask every column the same thing…")
        self.composer.send_requested.connect(self.ask)
        self.composer.stop_requested.connect(self.stop)
        layout.addWidget(self.composer)
        self._show_columns()
        return page

    def refresh_targets(self) -> None:
        options = [(f"{m.name} · {m.quantization}", m.id, "Runs on this computer")
                   for m in self.services.library.chat_models()]  # embedding models cannot answer
        options += [(t.title, t.id,
                     f"Sends your words to {t.provider.processed_on}") for t in self.services.providers.targets()]
        for i, combo in enumerate(self.pickers):
            wanted = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            if i >= compare.MIN_TARGETS:
                combo.addItem("—", NONE)
            for label, data, tip in options:
                combo.addItem(label, data)
                combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            index = combo.findData(wanted) if wanted else -1
            if index < 0 and i < compare.MIN_TARGETS:
                index = min(i, combo.count() - 1)
            combo.setCurrentIndex(max(index, 0))
            combo.blockSignals(False)

    def chosen_targets(self) -> list[str]:
        return [c.currentData() for c in self.pickers if c.currentData()]

    def new_comparison(self) -> None:
        if self.busy:
            return
        self.session = None
        self._show_columns()
        self.composer.input.setFocus()

    @property
    def busy(self) -> bool:
        return self._running

    def ask(self, text: str) -> None:
        if self.busy or not text.strip():
            return
        if self.session is None:
            try:
                self.session = compare.CompareSession.create(self.services, self.chosen_targets(),
                                                             blind=self.blind.isChecked())
            except HearthError as exc:
                self.notify(str(exc))
                return
        self.composer.input.clear()
        self.banner.hide()
        self._live = {}
        self._running = True
        self.spawn(self._ask(self.session, text))

    async def _ask(self, session: compare.CompareSession, text: str) -> None:
        def arrived(column: int, live: LiveAnswer) -> None:
            self._live[column] = live
            self._waits.pop(column, None)

        def waiting(column: int) -> Callable[[float, str], None]:
            def say(seconds: float, why: str) -> None:
                self._waits[column] = waiting_note(seconds, why)
            return say

        for i, chat in enumerate(session.chats):
            chat.on_wait = waiting(i)

        self.composer.set_generating(True)
        self._set_controls(False)
        self._flush_timer.start()
        try:
            task = asyncio.ensure_future(session.ask(text, on_text=arrived))
            await asyncio.sleep(0)  # the user's words are saved: show them with empty answers
            self._show_columns()
            answers = await task
        finally:
            self._running = False
            self._flush_timer.stop()
            self._live, self._waits = {}, {}
            self.composer.set_generating(False)
            self._set_controls(True)  # and the finished answers are shown
        failed = [f"{session.label(i)}: {a.error}" for i, a in enumerate(answers) if a.status == "error"]
        if failed:
            self.notify(" ".join(failed))
        self.refresh_saved()
        self.refresh_leaderboard()
        self.refresh_data()

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()

    def _set_controls(self, enabled: bool) -> None:
        """While answers stream, the comparison cannot be changed, left, exported or deleted."""
        for widget in (self.new_button, self.saved, self.export_button, self.delete_button):
            widget.setEnabled(enabled)
        self._show_columns()

    def _flush(self) -> None:
        if self.session is not None and self._live:
            self._show_columns()

    def _show_columns(self) -> None:
        session = self.session
        if session is None:
            targets = self.chosen_targets()
            for i, view in enumerate(self.columns):
                view.setVisible(i < len(targets))
                if i < len(targets):
                    label = compare.LETTERS[i] if self.blind.isChecked() else self._target_label(targets[i])
                    view.show_turns(label, [])
            self.empty_hint.show()
        else:
            store = self.services.store
            revealed = session.revealed  # one look at the votes per drawing, not two per column
            for i, view in enumerate(self.columns):
                view.setVisible(i < len(session.comparison.targets))
                if i < len(session.comparison.targets):
                    label = self._target_label(session.comparison.targets[i]) if revealed else session.label(i)
                    view.show_turns(label, store.messages(session.comparison.conversations[i]), self._live.get(i),
                                    hide_figures=not revealed, note=self._waits.get(i, ""))
            self.empty_hint.hide()
        choosing = session is None and not self.busy  # the models are fixed once a comparison has begun
        for widget in (*self.pickers, self.blind):
            widget.setEnabled(choosing)
        self._update_vote_bar()

    def _target_label(self, target: str) -> str:
        remote = self.services.providers.target(target)
        if remote is not None:
            return remote.title
        try:
            return self.services.library.resolve(target).name
        except HearthError:
            return target

    def _update_vote_bar(self) -> None:
        session = self.session
        votable = (session is not None and not self.busy and session.comparison.blind  # cheap checks first:
                   and not session.revealed and session.turns > 0)  # this runs with every streamed frame
        self.vote_bar.setVisible(votable)
        if session is not None:
            for outcome, button in self.vote_buttons.items():
                button.setVisible(outcome not in compare.LETTERS
                                  or compare.LETTERS.index(outcome) < len(session.comparison.targets))

    def vote(self, outcome: str) -> None:
        if self.session is None:
            return
        try:
            self.session.vote(outcome)
        except HearthError as exc:
            self.notify(str(exc))
            return
        names = ", ".join(f"{compare.LETTERS[i]} was {self._target_label(t)}"
                          for i, t in enumerate(self.session.comparison.targets))
        self.notify(f"Thanks. {names}.", "info")
        self._show_columns()
        self.refresh_leaderboard()

    # -- saved comparisons ------------------------------------------------------------------------
    def refresh_saved(self) -> None:
        current = self.session.comparison.id if self.session else None
        self.saved.blockSignals(True)
        self.saved.clear()
        comparisons = self.services.store.comparisons()
        for c in comparisons:
            when = time.strftime("%d %b %Y", time.localtime(c.updated_at))
            self.saved.addItem(f"{c.title}  ·  {len(c.targets)} models  ·  {when}", c.id)
        if not comparisons:
            self.saved.addItem("No comparisons yet", None)
        self.saved.setPlaceholderText("Open a saved comparison…")
        self.saved.setCurrentIndex(self.saved.findData(current) if current else -1 if comparisons else 0)
        self.saved.blockSignals(False)
        self.export_button.setEnabled(self.session is not None)
        self.delete_button.setEnabled(self.session is not None)

    def open_comparison(self, comparison_id: int | None) -> None:
        if comparison_id is None or self.busy:
            return
        self.session = compare.CompareSession.open(self.services, comparison_id)
        self.blind.setChecked(self.session.comparison.blind)
        self._show_columns()
        self.refresh_saved()

    def export(self) -> None:
        if self.session is None:
            return
        name = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in self.session.comparison.title)[:60]
        path, chosen = QFileDialog.getSaveFileName(self, "Export comparison", str(Path.home() / f"{name}.md"),
                                                   f"{MARKDOWN_FILTER};;{HTML_FILTER}")
        if path:
            target = Path(path)
            if chosen == HTML_FILTER and target.suffix.lower() not in (".html", ".htm"):
                target = target.with_suffix(".html")
            self.export_to(target)

    def export_to(self, path: Path) -> None:
        """Write the open comparison to `path`: a web page when it ends in .html or .htm (one
        self-contained file, answers drawn as in the window: `export_html.page`), else Markdown.
        Written to a temporary file first, so a failed write leaves no half-written file."""
        assert self.session is not None
        comparison_id = self.session.comparison.id
        if path.suffix.lower() in (".html", ".htm"):
            text = self.comparison_html(comparison_id)
        else:
            text = compare.export_markdown(self.services.store, comparison_id)
        part = path.with_name(path.name + ".part")
        try:
            part.write_text(text, encoding="utf-8")
            part.replace(path)
        except OSError as exc:
            part.unlink(missing_ok=True)
            self.notify(f"Could not write {path.name}: {exc.strerror}.")
            return
        self.notify(f"Saved to {path}.", "info")

    def comparison_html(self, comparison_id: int) -> str:
        """A saved comparison as one HTML page: each prompt, then every column's answer under its
        letter and model, with its figures and where the words went, and the vote."""
        store = self.services.store
        comparison = store.comparison(comparison_id)
        columns = [store.messages(c) for c in comparison.conversations]
        votes = {v.turn: v.outcome for v in store.votes(comparison_id)}
        hidden = comparison.blind and not votes  # a blind comparison not yet voted on stays blind
        sections = []
        prompts = [m for m in columns[0] if m.role == "user"]
        for turn, prompt in enumerate(prompts):
            entries = [export_html.Entry("You", prompt.content, plain=True)]
            for i, messages in enumerate(columns):
                answers = [m for m in messages if m.role == "assistant"]
                if turn >= len(answers):
                    continue
                a = answers[turn]
                who = compare.LETTERS[i] if hidden else f"{compare.LETTERS[i]}: {self._target_label(comparison.targets[i])}"
                thought = thinking_line("done", a.thinking_ms) if a.thinking or a.thinking_ms is not None else ""
                text = a.content or f"*({a.status}: {a.error or 'no answer'})*"
                figures = () if hidden else (stats_line(a, with_where=False), where_line(a))
                note = " · ".join(p for p in (thought, *figures) if p)
                entries.append(export_html.Entry(who, text, note=note))
            verdict = ""
            if turn in votes:
                outcome = votes[turn]
                verdict = "Vote: " + {"tie": "a tie", "bad": "all bad"}.get(outcome, f"{outcome} was better")
            sections.append(export_html.Section(f"Prompt {turn + 1}", entries, note=verdict))
        when = time.strftime("%d %b %Y", time.localtime(comparison.updated_at))
        return export_html.page(comparison.title, sections,
                                subtitle=f"A comparison of {len(comparison.targets)} models, exported from Hearth · {when}")

    def _delete_comparison(self) -> None:
        if self.session is None:
            return
        comparison = self.session.comparison
        confirm(self, "ConfirmDeleteComparison", "Delete comparison", f"Delete “{comparison.title}”?",
                "Its answers go; your votes stay in the leaderboard.", "Delete",
                lambda: self._delete(comparison.id), destructive=True)

    def _delete(self, comparison_id: int) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.spawn(session.close())
        self.services.store.delete_comparison(comparison_id)
        self._show_columns()
        self.refresh_saved()

    def halt(self) -> None:
        """The app is closing: stop the answers and the engines of the open comparison now."""
        if self.session is not None:
            self.session.stop()
            for engine in self.session.engines:
                engine.stop_now()

    # -- leaderboard ------------------------------------------------------------------------------
    def _build_leaderboard(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 10, 0, 0)
        layout.addWidget(muted("Your own ranking, from your votes (Elo: a win against a strong model counts for "
                               "more). Cost, speed and first words are averages over each model's answers in "
                               "comparisons."))
        self.board = data_table(["#", "Model", "Rating", "Votes", "Win rate", "Ties", "Cost per answer",
                                 "Tokens/s", "First words"], "Leaderboard", stretch=1)
        layout.addWidget(self.board, 1)
        return page

    def refresh_leaderboard(self) -> None:
        standings = compare.leaderboard(self.services.store)
        self.board.setRowCount(len(standings))
        for row, s in enumerate(standings):
            cells = [str(row + 1), self._target_label(s.target), f"{s.rating:.0f}", str(s.games),
                     f"{s.win_rate:.0%}" if s.games else "–", str(s.ties),
                     money(s.avg_cost) if s.avg_cost is not None else "unknown",
                     f"{s.avg_tokens_per_s:.1f}" if s.avg_tokens_per_s else "–",
                     f"{s.avg_ttft_ms / 1000:.2f} s" if s.avg_ttft_ms else "–"]
            for col, text in enumerate(cells):
                self.board.setItem(row, col, item(text, s.target if col == 1 else "", align_right=col not in (1,)))

    # -- your data --------------------------------------------------------------------------------
    def _build_data(self) -> QWidget:
        page = self.data_tab = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 10, 0, 0)
        self.data_summary = QLabel()
        self.data_summary.setObjectName("CardTitle")
        self.data_summary.setWordWrap(True)
        layout.addWidget(self.data_summary)
        self.usage = data_table(["Month", "Where", "Answers", "Tokens in", "Tokens out", "Sent", "Cost"],
                                "UsageTable", stretch=1)
        layout.addWidget(self.usage, 2)
        title = QLabel("Conversations that left this computer")
        title.setObjectName("CardTitle")
        layout.addWidget(title)
        self.left = data_table(["Conversation", "Sent to", "Sent", "Cost"], "LeftTable")
        layout.addWidget(self.left, 1)
        layout.addWidget(self._build_apps(), 2)
        return page

    def _build_apps(self) -> QWidget:
        """"Used by apps on this computer": what other programs used through the local server."""
        box = QWidget()
        box.setObjectName("AppsSection")
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 6, 0, 0)
        title = QLabel("Used by apps on this computer")
        title.setObjectName("CardTitle")
        layout.addWidget(title)
        self.apps_summary = muted()
        self.apps_summary.setObjectName("AppsSummary")
        layout.addWidget(self.apps_summary)
        self.apps = data_table(["Day", "App", "Model", "Requests", "Tokens in", "Tokens out", "Where"],
                               "AppsTable", stretch=1)
        self.apps.setTextElideMode(Qt.TextElideMode.ElideRight)
        # App and model names can be long: they share the spare width, cut at their end (whole on hover).
        self.apps.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.apps, 1)
        self.apps_prompts = muted()
        self.apps_prompts.setObjectName("AppsPrompts")
        layout.addWidget(self.apps_prompts)
        # Requests come in bursts (an editor asks several times a second): one read per burst.
        self._apps_timer = QTimer(self, singleShot=True, interval=APPS_REFRESH_MS)
        self._apps_timer.timeout.connect(self.refresh_apps)
        return box

    def api_request_arrived(self, _record: object = None) -> None:
        """An app used a model through the local server (the window's ServerSwitch.request, on
        the GUI thread, once the ledger has it): the Data tab shows it if it is open."""
        if self.isVisible() and self.tabs.currentWidget() is self.data_tab:
            self._apps_timer.start()

    def refresh_apps(self) -> None:
        """The section's sentence, its per-day rows (newest first, APPS_ROWS at most) and what is
        said of prompts kept, from the store."""
        store = self.services.store
        month = time.strftime("%Y-%m-01")
        totals, ever = store.api_use_totals(since=month), store.api_use_totals()
        self.apps_summary.setText(apps_sentence(totals, ever))
        rows = store.api_use(limit=APPS_ROWS)
        self.apps.setRowCount(len(rows))
        for row, r in enumerate(rows):
            where = "this computer" if r.processed_on == THIS_MACHINE else r.processed_on
            requests = f"{r.requests:,}" + (f" ({r.failed:,} failed)" if r.failed else "")
            cells = [(r.day, ""), (app_name(r.address, r.user_agent), app_tip(r.address, r.user_agent)),
                     (r.model or "–", r.model or "No model was named, or the request failed before."),
                     (requests, ""), (f"{r.tokens_in:,}", ""), (f"{r.tokens_out:,}", ""),
                     (where + (f" ({human_bytes(r.bytes_sent)})" if r.bytes_sent else ""), "")]
            for col, (text, tip) in enumerate(cells):
                self.apps.setItem(row, col, item(text, tip, align_right=col in (3, 4, 5)))
        self.apps.setVisible(bool(rows))
        kept, on = store.count_api_requests(), self.services.settings.server.log_bodies
        requests = f"{kept:,} request is" if kept == 1 else f"{kept:,} requests are"
        if on:
            self.apps_prompts.setText(f"Log prompts and answers is on (Local server page): {requests} kept with what "
                                      "the app sent and got back.")
        elif kept:
            self.apps_prompts.setText(f"{requests} still kept with the prompt and answer from when the log was on: "
                                      "turning the log off keeps them until you delete them on the Local server page.")
        else:
            self.apps_prompts.setText("Prompts and answers are not kept: only which app asked, which model and how "
                                      "many tokens.")

    def refresh_data(self) -> None:
        store = self.services.store
        rows = store.usage_by_month()
        outside = [r for r in rows if r.processed_on != "this machine"]
        answers = sum(r.answers for r in rows)
        offline = " Offline mode is on: nothing can leave." if self.services.settings.offline else ""
        if not outside:
            self.data_summary.setText(f"All {answers:,} answers were written on this computer; nothing left it.{offline}"
                                      if answers else f"No answers yet. Local answers never leave this computer.{offline}")
        else:
            sent = sum(r.bytes_sent for r in outside)
            cost = sum(r.cost for r in outside)
            hosts = ", ".join(sorted({r.processed_on for r in outside}))
            self.data_summary.setText(f"{sum(r.answers for r in outside):,} of {answers:,} answers came from outside "
                                      f"this computer: {human_bytes(sent)} sent to {hosts}, {money(cost)} in API fees."
                                      f"{offline}")
        self.usage.setRowCount(len(rows))
        for row, r in enumerate(rows):
            where = "this computer" if r.processed_on == "this machine" else f"{r.provider} ({r.processed_on})"
            cells = [r.month, where, f"{r.answers:,}", f"{r.tokens_in:,}", f"{r.tokens_out:,}",
                     human_bytes(r.bytes_sent) if r.bytes_sent else "–", money(r.cost)]
            for col, text in enumerate(cells):
                self.usage.setItem(row, col, item(text, align_right=col >= 2))
        left = store.conversations_that_left()
        self.left.setRowCount(len(left))
        for row, (conversation, hosts, sent, cost) in enumerate(left):
            self.left.setItem(row, 0, item(conversation.title))
            self.left.setItem(row, 1, item(hosts.replace(",", ", ")))
            self.left.setItem(row, 2, item(human_bytes(sent), align_right=True))
            self.left.setItem(row, 3, item(money(cost), align_right=True))
        self.refresh_apps()

    # -- providers --------------------------------------------------------------------------------
    def _build_providers(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 10, 0, 0)
        layout.addWidget(muted("Hearth sends nothing anywhere until you add a provider here. A provider's key is "
                               "kept in your system's keyring, never in a file."))
        self.provider_table = data_table(["Provider", "Address", "Key", "Your words go to", "Models"], "Providers",
                                         stretch=1)
        self.provider_table.itemSelectionChanged.connect(self._provider_selected)
        layout.addWidget(self.provider_table, 1)
        actions = QHBoxLayout()
        self.provider_note = muted()
        actions.addWidget(self.provider_note, 1)
        self.list_models_button = QPushButton("Test and list models")
        self.list_models_button.clicked.connect(lambda: self._selected_provider() and self.spawn(
            self.list_models(self._selected_provider())))
        self.remove_provider_button = QPushButton(icon("trash", self.theme.text), "Remove…")
        self.remove_provider_button.clicked.connect(self._remove_provider)
        actions.addWidget(self.list_models_button)
        actions.addWidget(self.remove_provider_button)
        layout.addLayout(actions)

        form = QFrame()
        form.setObjectName("Card")
        rows = QVBoxLayout(form)
        heading = QLabel("Add a provider")
        heading.setObjectName("CardTitle")
        rows.addWidget(heading)
        line = QHBoxLayout()
        self.preset = QComboBox()
        self.preset.setObjectName("Preset")
        for p in cloud.presets():
            self.preset.addItem(p.label, p.name)
        self.preset.addItem("Another OpenAI-compatible server…", CUSTOM)
        self.preset.currentIndexChanged.connect(self._preset_chosen)
        line.addWidget(self.preset)
        self.provider_name = QLineEdit()
        self.provider_name.setPlaceholderText("name (e.g. my-server)")
        self.provider_url = QLineEdit()
        self.provider_url.setPlaceholderText("address, e.g. http://192.168.1.20:8000/v1")
        line.addWidget(self.provider_name)
        line.addWidget(self.provider_url, 2)
        rows.addLayout(line)
        line = QHBoxLayout()
        self.provider_key = QLineEdit()
        self.provider_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.provider_key.setPlaceholderText("API key (kept in the keyring)")
        line.addWidget(self.provider_key, 2)
        self.key_link = muted(wrap=False)
        self.key_link.setOpenExternalLinks(True)
        line.addWidget(self.key_link, 1)
        self.add_provider_button = QPushButton("Add…")
        self.add_provider_button.setObjectName("Primary")
        self.add_provider_button.clicked.connect(self.ask_to_add_provider)
        line.addWidget(self.add_provider_button)
        rows.addLayout(line)
        layout.addWidget(form)
        self._preset_chosen()
        return page

    def _preset_chosen(self, _index: int = 0) -> None:
        name = self.preset.currentData()
        preset = cloud.preset(name) if name != CUSTOM else None
        self.provider_name.setVisible(preset is None)
        self.provider_url.setText(preset.base_url if preset else "")
        self.provider_url.setReadOnly(preset is not None)
        self.key_link.setText(f'<a href="{preset.keys_at}">Get a key</a>' if preset and preset.keys_at else "")

    def refresh_providers(self) -> None:
        providers = self.services.providers.all()
        self.provider_table.setRowCount(len(providers))
        for row, p in enumerate(providers):
            key = "set" if p.key else ("not needed" if p.on_this_machine or p.own else "missing")
            where = "this computer" if p.on_this_machine else p.host + (" (your own server)" if p.own else "")
            cells = [secrets.redact(p.label), secrets.redact(p.base_url), key, where,
                     f"{len(p.models)}" if p.models else "–"]
            for col, text in enumerate(cells):
                self.provider_table.setItem(row, col, item(text, ", ".join(p.models[:30]) if col == 4 else ""))
            self.provider_table.item(row, 0).setData(Qt.ItemDataRole.UserRole, p.name)
        self._provider_selected()

    def _selected_provider(self) -> cloud.Provider | None:
        rows = self.provider_table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.services.providers.find(self.provider_table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole))

    def _provider_selected(self) -> None:
        chosen = self._selected_provider()
        self.list_models_button.setEnabled(chosen is not None)
        self.remove_provider_button.setEnabled(chosen is not None)

    def ask_to_add_provider(self) -> None:
        name = self.preset.currentData()
        if name == CUSTOM:
            name = self.provider_name.text().strip().lower()
        url = self.provider_url.text().strip()
        try:
            host = urlsplit(url).netloc.rpartition("@")[2] or "its server"  # never the user:password@ before it
        except ValueError:
            host = "its server"
        label = self.preset.currentText() if self.preset.currentData() != CUSTOM else name
        confirm(self, "ConfirmProvider", "Add a provider",
                f"Words you send to {label} leave this computer.",
                f"Prompts, earlier messages of the chat and your system prompt go to {host} when you choose one "
                f"of its models; {label}'s own terms decide what happens to them there. Local models are not "
                "affected, and nothing is sent until you pick one of its models.",
                "Add and allow", lambda: self.spawn(self.add_provider(name, url, self.provider_key.text().strip())))

    async def add_provider(self, name: str, url: str, key: str) -> None:
        url = url if self.preset.currentData() == CUSTOM else ""
        try:
            carried = cloud.clean_address(url).carried
            provider = self.services.providers.add(name, base_url=url, key=key)
        except HearthError as exc:
            self.notify(str(exc))
            return
        self.provider_key.clear()
        if carried:
            self.provider_url.setText(provider.base_url)  # the key is in the keyring now, not in the field
        if (key or carried) and secrets.in_memory_only(provider.name):
            self.notify("This computer has no keyring, so the key is kept in memory only: Hearth will ask again "
                        f"after it restarts (or set {secrets.env_name(provider.name)}).", "warning")
        self.refresh_providers()
        self.providers_changed.emit()
        await self.list_models(provider)

    async def list_models(self, provider: cloud.Provider) -> None:
        self.provider_note.setText(f"Asking {provider.label} for its models…")
        try:
            names = await cloud.list_models(provider)
        except HearthError as exc:
            self.provider_note.setText("")
            self.notify(str(exc))
            return
        self.services.providers.set_models(provider.name, names)
        self.provider_note.setText(f"{provider.label} answered: {len(names)} models.")
        self.refresh_providers()
        self.refresh_targets()
        self.providers_changed.emit()

    def _remove_provider(self) -> None:
        provider = self._selected_provider()
        if provider is None:
            return
        confirm(self, "ConfirmRemoveProvider", "Remove provider", f"Remove {provider.label}?",
                "Its key is deleted from the keyring. Chats that used it stay, and say where they went.",
                "Remove", lambda: self._remove(provider.name), destructive=True)

    def _remove(self, name: str) -> None:
        self.services.providers.remove(name)
        self.refresh_providers()
        self.refresh_targets()
        self.providers_changed.emit()

    # -- prices -----------------------------------------------------------------------------------
    def _build_prices(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 10, 0, 0)
        self.prices_note = muted()
        layout.addWidget(self.prices_note)
        self.prices = data_table(["Model", "Input $ per million tokens", "Output $ per million tokens", "Source"],
                                 "Prices")
        self.prices.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.prices, 1)
        row = QHBoxLayout()
        self.price_model = QLineEdit()
        self.price_model.setPlaceholderText("model name (e.g. gpt-4o-mini, or claude-sonnet-4*)")
        self.price_in = QLineEdit()
        self.price_in.setPlaceholderText("input $/M")
        self.price_out = QLineEdit()
        self.price_out.setPlaceholderText("output $/M")
        save = QPushButton("Set price")
        save.clicked.connect(self.set_price)
        reset = QPushButton("Back to built-in")
        reset.clicked.connect(self.reset_price)
        for w in (self.price_model, self.price_in, self.price_out):
            row.addWidget(w, 2 if w is self.price_model else 1)
        row.addWidget(save)
        row.addWidget(reset)
        layout.addLayout(row)
        self.prices.itemSelectionChanged.connect(self._price_selected)

        power = QHBoxLayout()
        power.addWidget(muted("Local answers: count the electricity of a computer drawing", wrap=False))
        self.watts = QLineEdit(f"{self.services.settings.electricity_watts:g}")
        self.watts.setMaximumWidth(70)
        power.addWidget(self.watts)
        power.addWidget(muted("W at $", wrap=False))
        self.kwh_price = QLineEdit(f"{self.services.settings.electricity_price_kwh:g}")
        self.kwh_price.setMaximumWidth(70)
        power.addWidget(self.kwh_price)
        power.addWidget(muted("per kWh (0 W: not counted)", wrap=False))
        save_power = QPushButton("Save")
        save_power.clicked.connect(self.set_electricity)
        power.addWidget(save_power)
        power.addStretch(1)
        layout.addLayout(power)
        return page

    def set_electricity(self) -> None:
        try:
            watts, price = float(self.watts.text() or 0), float(self.kwh_price.text() or 0)
        except ValueError:
            self.notify("Give the power in watts and the price per kWh as numbers, like 45 and 0.30.")
            return
        if watts < 0 or price < 0:
            self.notify("The power and the price cannot be negative.")
            return
        from dataclasses import replace

        self.services.save_settings(replace(self.services.settings, electricity_watts=watts,
                                            electricity_price_kwh=price))
        self.notify(f"Local answers now count {watts:g} W at ${price:g} per kWh." if watts and price else
                    "Local answers count no electricity.", "info")

    def refresh_prices(self) -> None:
        pricing = self.services.pricing
        mine = pricing.user_table()
        table = pricing.table()
        self.prices_note.setText(f"Prices per million tokens as the providers listed them on {pricing.as_of}. "
                                 "They change: set your own here (kept in pricing.json in Hearth's settings folder). "
                                 "Local models cost nothing in API fees.")
        self.prices.setRowCount(len(table))
        for row, (name, price) in enumerate(sorted(table.items())):
            cells = [name, f"{price.input_per_m:.2f}", f"{price.output_per_m:.2f}", "yours" if name in mine else "built-in"]
            for col, text in enumerate(cells):
                self.prices.setItem(row, col, item(text, align_right=col in (1, 2)))

    def _price_selected(self) -> None:
        rows = self.prices.selectionModel().selectedRows()
        if rows:
            r = rows[0].row()
            self.price_model.setText(self.prices.item(r, 0).text())
            self.price_in.setText(self.prices.item(r, 1).text())
            self.price_out.setText(self.prices.item(r, 2).text())

    def set_price(self) -> None:
        name = self.price_model.text().strip()
        try:
            values = float(self.price_in.text()), float(self.price_out.text())
        except ValueError:
            self.notify("A price is a number of dollars per million tokens, like 0.15.")
            return
        if not name or min(values) < 0:
            self.notify("Give the model's name and two prices of zero or more.")
            return
        self.services.pricing.set(name, *values)
        self.refresh_prices()

    def reset_price(self) -> None:
        name = self.price_model.text().strip()
        if name:
            self.services.pricing.reset(name)
            self.refresh_prices()
