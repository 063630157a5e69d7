"""The right-hand panel: this chat's system prompt and sampling, and how the model is loaded."""

from __future__ import annotations

from dataclasses import asdict

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.core import templates
from desktop.core.settings import LoadOptions, Sampling


def _arrowless(box: QAbstractSpinBox) -> None:
    box.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)  # type, or scroll over it
    # The style sheet's left padding does not reach a spin box's text field (the right one does).
    box.lineEdit().setTextMargins(7, 0, 0, 0)


def _double(low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    _arrowless(box)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def _int(low: int, high: int, step: int = 1, special: str = "") -> QSpinBox:
    box = QSpinBox()
    _arrowless(box)
    box.setRange(low, high)
    box.setSingleStep(step)
    if special:
        box.setSpecialValueText(special)
    return box


class SettingsPanel(QScrollArea):
    chat_settings_changed = Signal(str, dict)  # system prompt, sampling as a dict
    load_options_changed = Signal(object)  # LoadOptions
    reload_requested = Signal()
    make_default_requested = Signal()
    chat_format_changed = Signal(str)  # templates.AUTO or a templates.FORMATS name, for the chosen model

    def __init__(self, cores: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SettingsPanel")
        self.setWidgetResizable(True)
        self.setMinimumWidth(280)
        self.setMaximumWidth(340)
        body = QFrame()
        body.setObjectName("SettingsPanel")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(16, 12, 16, 16)
        layout.setSpacing(6)
        self._filling = False

        layout.addWidget(self._section("This chat"))
        layout.addWidget(QLabel("System prompt"))
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("How the model should behave in this chat")
        self.system_prompt.setFixedHeight(96)
        layout.addWidget(self.system_prompt)
        self.system_hint = QLabel("This model's chat template has no system role, so Hearth puts the "
                                  "system prompt at the start of your first message.")
        self.system_hint.setObjectName("SettingsHint")
        self.system_hint.setWordWrap(True)
        self.system_hint.hide()
        layout.addWidget(self.system_hint)

        layout.addWidget(self._section("Sampling"))
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setHorizontalSpacing(12)
        self.temperature = _double(0.0, 2.0, 0.05)
        self.top_p = _double(0.0, 1.0, 0.05)
        self.top_k = _int(0, 200, special="Off")
        self.min_p = _double(0.0, 1.0, 0.01)
        self.repeat_penalty = _double(0.5, 2.0, 0.05)
        self.max_tokens = _int(16, 32768, 64)
        self.seed = _int(-1, 2_147_483_647, special="Random")
        for label, box, tip in (
            ("Temperature", self.temperature, "Higher is more varied, lower more focused."),
            ("Top-p", self.top_p, "Sample only from the most likely tokens making up this share."),
            ("Top-k", self.top_k, "Sample only from this many most likely tokens."),
            ("Min-p", self.min_p, "Drop tokens less likely than this share of the best one."),
            ("Repeat penalty", self.repeat_penalty, "Above 1 discourages repeating words."),
            ("Max tokens", self.max_tokens, "The longest an answer may be."),
            ("Seed", self.seed, "A fixed seed gives the same answer to the same question."),
        ):
            box.setToolTip(tip)
            form.addRow(label, box)
            box.valueChanged.connect(self._chat_changed)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        self.default_button = QPushButton("Use for new chats")
        self.default_button.setToolTip("New chats start with this system prompt and sampling")
        self.default_button.clicked.connect(self.make_default_requested.emit)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to Hearth's defaults")
        self.reset_button.clicked.connect(self._reset_sampling)
        buttons.addWidget(self.default_button)
        buttons.addWidget(self.reset_button)
        layout.addLayout(buttons)

        layout.addWidget(self._section("Model loading"))
        load_form = QFormLayout()
        load_form.setHorizontalSpacing(12)
        self.n_ctx = _int(256, 131072, 256)
        self.n_ctx.setToolTip("How many tokens of the conversation the model can see at once. "
                              "Longer uses more memory.")
        self.n_gpu_layers = _int(-1, 999, special="All")
        self.n_gpu_layers.setToolTip("Layers to run on the GPU, when Hearth has a GPU backend. "
                                     "0 keeps everything on the CPU.")
        self.n_threads = _int(0, max(1, cores * 2), special=f"Auto ({cores})")
        self.n_threads.setToolTip("CPU threads for generating. Auto uses one per physical core.")
        self.chat_format = QComboBox()
        for name in (templates.AUTO, *templates.FORMATS):
            self.chat_format.addItem(templates.choice_label(name), name)
            self.chat_format.setItemData(self.chat_format.count() - 1, templates.choice_hint(name),
                                         Qt.ItemDataRole.ToolTipRole)
        self.chat_format.setToolTip("How this model's conversations are written out for it (its chat "
                                    "template). Automatic uses the one in the model's file.")
        self.chat_format.currentIndexChanged.connect(self._chat_format_chosen)
        # The box takes the column's width rather than widening the panel past the window.
        self.chat_format.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        load_form.addRow("Chat format", self.chat_format)
        load_form.addRow("Context length", self.n_ctx)
        load_form.addRow("GPU layers", self.n_gpu_layers)
        load_form.addRow("CPU threads", self.n_threads)
        for box in (self.n_ctx, self.n_gpu_layers, self.n_threads):
            box.valueChanged.connect(self._load_changed)
        layout.addLayout(load_form)
        self.format_in_use = QLabel()
        self.format_in_use.setObjectName("SettingsHint")
        self.format_in_use.setWordWrap(True)
        self.format_in_use.hide()
        layout.addWidget(self.format_in_use)
        hint = QLabel("Changes apply the next time the model loads.")
        hint.setObjectName("SettingsHint")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.reload_button = QPushButton("Reload model now")
        self.reload_button.clicked.connect(self.reload_requested.emit)
        layout.addWidget(self.reload_button)
        layout.addStretch(1)
        self.setWidget(body)

        self._debounce = QTimer(self, singleShot=True, interval=400)
        self._debounce.timeout.connect(self._emit_chat)
        self.system_prompt.textChanged.connect(self._chat_changed)

    @staticmethod
    def _section(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("SectionTitle")
        return label

    # -- filling from saved values --------------------------------------------------------------
    def show_chat(self, system_prompt: str, sampling: Sampling) -> None:
        self._filling = True
        if self.system_prompt.toPlainText() != system_prompt:
            self.system_prompt.setPlainText(system_prompt)
        self._set_sampling(sampling)
        self._filling = False

    def _set_sampling(self, s: Sampling) -> None:
        self.temperature.setValue(s.temperature)
        self.top_p.setValue(s.top_p)
        self.top_k.setValue(s.top_k)
        self.min_p.setValue(s.min_p)
        self.repeat_penalty.setValue(s.repeat_penalty)
        self.max_tokens.setValue(s.max_tokens)
        self.seed.setValue(s.seed)

    def show_load(self, options: LoadOptions) -> None:
        self._filling = True
        self.n_ctx.setValue(options.n_ctx)
        self.n_gpu_layers.setValue(options.n_gpu_layers)
        self.n_threads.setValue(options.n_threads)
        self._filling = False

    def show_chat_format(self, choice: str | None) -> None:
        """The chosen local model's format choice; None (no local model chosen) disables the box."""
        self._filling = True
        index = self.chat_format.findData(choice or templates.AUTO)
        self.chat_format.setCurrentIndex(max(index, 0))
        self.chat_format.setEnabled(choice is not None)
        self._filling = False

    def set_prompt_info(self, info: dict) -> None:
        """What the loaded engine said of its prompts (Engine.prompt_info)."""
        self.system_hint.setVisible(bool(info.get("system_folded")))
        label = info.get("format_label", "")
        self.format_in_use.setText(f"In use: {label}." if label else "")
        self.format_in_use.setVisible(bool(label))

    def _chat_format_chosen(self, _index: int) -> None:
        if not self._filling:
            self.chat_format_changed.emit(str(self.chat_format.currentData()))

    # -- reading what the user set ---------------------------------------------------------------
    def sampling(self) -> Sampling:
        return Sampling(temperature=self.temperature.value(), top_p=self.top_p.value(),
                        top_k=self.top_k.value(), min_p=self.min_p.value(),
                        repeat_penalty=self.repeat_penalty.value(), max_tokens=self.max_tokens.value(),
                        seed=self.seed.value())

    def load_options(self) -> LoadOptions:
        return LoadOptions(n_ctx=self.n_ctx.value(), n_gpu_layers=self.n_gpu_layers.value(),
                           n_threads=self.n_threads.value())

    def _chat_changed(self) -> None:
        if not self._filling:
            self._debounce.start()

    def flush(self) -> None:
        """Emit a pending change now (before switching chats, say)."""
        if self._debounce.isActive():
            self._debounce.stop()
            self._emit_chat()

    def _emit_chat(self) -> None:
        self.chat_settings_changed.emit(self.system_prompt.toPlainText(), asdict(self.sampling()))

    def _load_changed(self) -> None:
        if not self._filling:
            self.load_options_changed.emit(self.load_options())

    def _reset_sampling(self) -> None:
        self._set_sampling(Sampling())
        self.flush()
