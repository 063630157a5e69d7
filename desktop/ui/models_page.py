"""The model manager: discover (curated catalog and hub search), what will run here, downloads,
and the models installed or kept by other apps on this computer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core import catalog, fit, model_kinds, runtime, secrets
from desktop.core import download_queue as dq
from desktop.core.errors import HearthError
from desktop.core.hub import RepoFiles, RepoSummary, Variant
from desktop.core.library import ModelFileMissing, file_problem
from desktop.core.services import Services
from desktop.core.store import ModelRecord
from desktop.core.text import shown
from desktop.core.units import human_bytes, human_count
from desktop.ui.icons import icon, tool_button
from desktop.ui.theme import Theme
from desktop.ui.widgets import confirm, data_table, muted, page_frame

Spawn = Callable[[Coroutine[Any, Any, Any]], Any]
CONTEXTS = (2048, 4096, 8192, 16384, 32768)
SORTS = (("downloads", "Most downloaded"), ("likes", "Most liked"), ("lastModified", "Recently updated"))
ARCHITECTURE_COLUMN = 3  # of the Installed table
LEVELS = {fit.FITS_GPU: "ok", fit.FITS_RAM: "ok", fit.TIGHT: "tight", fit.TOO_LARGE: "no"}


def fit_chip(result: fit.Fit | None, text: str | None = None) -> QLabel:
    chip = QLabel(text or (result.label if result else "size unknown"))
    chip.setObjectName("Fit")
    chip.setProperty("level", LEVELS.get(result.label, "unknown") if result else "unknown")
    chip.setToolTip(result.explain() if result else "")
    return chip


def kind_chip(theme: Theme) -> QLabel:
    """The "Embeddings" chip of an embedding model (a catalog entry or an installed model): it
    turns text into vectors for search and cannot chat (model_kinds.EMBEDDING_USE on hover)."""
    chip = QLabel(model_kinds.EMBEDDING_LABEL)
    chip.setObjectName("KindChip")
    chip.setToolTip(model_kinds.EMBEDDING_USE)
    chip.setStyleSheet(f"QLabel#KindChip {{ border-radius: 8px; padding: 1px 8px; font-size: 8.5pt; "
                       f"font-weight: 600; color: {theme.accent}; border: 1px solid {theme.accent}; }}")
    return chip


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ModelCard(QFrame):
    """One line of the Discover list: a catalog entry or a hub search result."""

    clicked = Signal()

    def __init__(self, title: str, subtitle: str, detail: str, chip: QLabel | None, data: object,
                 kind: QLabel | None = None) -> None:
        super().__init__()
        self.setObjectName("ModelCard")
        self.data = data
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 9, 12, 9)
        layout.setSpacing(2)
        top = QHBoxLayout()
        name = QLabel(title)
        name.setObjectName("CardTitle")
        name.setWordWrap(True)
        top.addWidget(name, 1)
        self.kind = kind
        if chip is not None:
            top.addWidget(chip, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(top)
        self.title = name
        self.subtitle = muted(subtitle)
        if kind is None:
            layout.addWidget(self.subtitle)
        else:  # what the model is for, first on the line under its name
            line = QHBoxLayout()
            line.setSpacing(8)
            line.addWidget(kind, 0, Qt.AlignmentFlag.AlignTop)
            line.addWidget(self.subtitle, 1)
            layout.addLayout(line)
        if detail:
            body = QLabel(detail)
            body.setWordWrap(True)
            layout.addWidget(body)

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.clicked.emit()
        super().mousePressEvent(event)

    def set_selected(self, selected: bool) -> None:
        self.setProperty("selected", selected)
        self.style().unpolish(self)
        self.style().polish(self)


class CardList(QScrollArea):
    """A column of cards that wrap their text to the width available; one can be chosen."""

    chosen = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("ChatArea")
        self.column = QVBoxLayout(body)
        self.column.setContentsMargins(0, 0, 6, 0)
        self.column.setSpacing(2)
        self.column.addStretch(1)
        body.setMinimumWidth(1)
        self.setWidget(body)
        self.cards: list[ModelCard] = []

    def clear(self) -> None:
        for card in self.cards:
            card.deleteLater()
        self.cards = []

    def add(self, card: ModelCard) -> None:
        self.cards.append(card)
        self.column.insertWidget(self.column.count() - 1, card)
        card.clicked.connect(lambda c=card: self.choose(c))

    def choose(self, card: ModelCard) -> None:
        for other in self.cards:
            other.set_selected(other is card)
        self.chosen.emit(card.data)

    def titles(self) -> list[str]:
        return [c.title.text() for c in self.cards]


class DownloadRow(QFrame):
    """A download: progress, bytes, speed, time left, and what can be done with it."""

    def __init__(self, job: dq.Job, theme: Theme, page: "ModelsPage") -> None:
        super().__init__()
        self.setObjectName("Card")
        self.job_id = job.id
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 10, 10)
        top = QHBoxLayout()
        self.title = QLabel(job.title)
        self.title.setObjectName("CardTitle")
        top.addWidget(self.title, 1)
        self.pause = tool_button("pause", "Pause", lambda: page.queue.pause(job.id), theme.text)
        self.resume = tool_button("play", "Resume", lambda: page.queue.resume(job.id), theme.text)
        self.cancel = tool_button("close", "Cancel and delete what arrived", lambda: page.cancel_download(job.id),
                                  theme.text)
        self.forget = tool_button("close", "Remove from the list (the model stays installed)",
                                  lambda: page.queue.forget(job.id), theme.text)
        self.use = QPushButton("Use")
        self.use.clicked.connect(lambda: page.use_requested.emit(page.queue.jobs[job.id].model_id))
        for w in (self.use, self.pause, self.resume, self.cancel, self.forget):
            top.addWidget(w)
        layout.addLayout(top)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        self.bar.setRange(0, 1000)
        layout.addWidget(self.bar)
        self.status = muted()
        layout.addWidget(self.status)
        self.update_from(job)

    def update_from(self, job: dq.Job) -> None:
        self.bar.setValue(int(job.done * 1000 / max(job.total, 1)))
        amount = f"{human_bytes(job.done)} of {human_bytes(job.total)}"
        if job.state == dq.RUNNING:
            text = amount
            if job.speed:
                text += f" · {human_bytes(job.speed)}/s"
            if job.eta_s is not None:
                text += f" · {human_duration(job.eta_s)} left"
            if job.notice:  # e.g. the file changed on the hub since the pause: why it starts over
                text = f"{job.notice}\n{text}"
        elif job.state == dq.QUEUED:
            text = f"Waiting for a free slot · {amount}"
        elif job.state == dq.PAUSED:
            text = f"Paused · {amount}"
        elif job.state == dq.DONE:
            text = f"Installed · {human_bytes(job.total)}"
        else:
            text = job.error
        self.status.setText(text)
        self.status.setObjectName("ErrorText" if job.state == dq.FAILED else "Muted")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        self.pause.setVisible(job.state in (dq.RUNNING, dq.QUEUED))
        self.resume.setVisible(job.state in (dq.PAUSED, dq.FAILED))
        self.cancel.setVisible(job.state != dq.DONE)
        self.forget.setVisible(job.state == dq.DONE)
        self.use.setVisible(job.state == dq.DONE)


class TokenDialog(QDialog):
    """The hub token for gated models, kept in the system keyring."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hugging Face token")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Gated models (Llama, Gemma, …) need a free Hugging Face account that has\n"
                                "accepted the model's licence, and a read token from that account."))
        self.field = QLineEdit()
        self.field.setEchoMode(QLineEdit.EchoMode.Password)
        self.field.setPlaceholderText("hf_…")
        layout.addWidget(self.field)
        source = secrets.hub_token_source()
        where = ("It is kept in the system keyring, never in a file." if secrets.keyring_available() else
                 "This computer has no keyring: the token is kept in memory until Hearth closes.")
        self.note = muted(f"{'A token is set, ' + source + '. ' if source else ''}{where}")
        layout.addWidget(self.note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.forget = buttons.addButton("Forget token", QDialogButtonBox.ButtonRole.DestructiveRole)
        self.forget.setEnabled(bool(secrets.get(secrets.HUB)))
        buttons.accepted.connect(self._save)
        buttons.rejected.connect(self.reject)
        self.forget.clicked.connect(self._forget)
        layout.addWidget(buttons)

    def _save(self) -> None:
        token = self.field.text().strip()
        if token:
            secrets.put(secrets.HUB, token)
        self.accept()

    def _forget(self) -> None:
        secrets.forget(secrets.HUB)
        self.accept()


class ModelsPage(QWidget):
    back_requested = Signal()
    use_requested = Signal(str)  # a model id
    models_changed = Signal()
    message = Signal(str, str)  # text, level

    def __init__(self, services: Services, theme: Theme, spawn: Spawn) -> None:
        super().__init__()
        self.services, self.theme, self.spawn = services, theme, spawn
        self.queue = services.downloads
        self.queue.on_change = self._job_changed
        self.queue.on_installed = self._job_installed
        self.machine = fit.Machine.here()
        self.repo: RepoFiles | None = None
        self.entry: catalog.Entry | None = None
        self.head_kv: int | None = None  # context memory per token of the open repo, when known
        self.head_arch = ""
        self.head_pooling = ""  # the pooling the open repo's file declares (model_kinds.pooling_of)
        self._search_serial = 0
        self._repo_serial = 0
        self._rows: dict[int, DownloadRow] = {}
        self._found: list = []
        self.catalog_error = ""
        try:
            self.catalog = catalog.load()
        except HearthError as exc:
            self.catalog, self.catalog_error = [], str(exc)

        column, top, self.banner, self.tabs = page_frame(self, theme, "Models", self.back_requested.emit)
        top.addWidget(muted("Estimates for a context of", wrap=False))
        self.context = QComboBox()
        for n in CONTEXTS:
            self.context.addItem(f"{n:,} tokens", n)
        wanted = services.settings.load.n_ctx or 4096
        self.context.setCurrentIndex(max(0, self.context.findData(wanted)))
        self.context.currentIndexChanged.connect(self._relabel)
        top.addWidget(self.context)
        self.tabs.addTab(self._build_discover(), "Discover")
        self.tabs.addTab(self._build_installed(), "Installed")
        self.tabs.addTab(self._build_downloads(), "Downloads")

        footer = QHBoxLayout()
        gpu = (f" · GPU: {human_bytes(self.machine.vram_free)} free" if self.machine.vram_free else
               " · no GPU in use" if runtime.backend() == "CPU" else " · no GPU found")
        self.runtime_label = muted(f"llama.cpp from llama-cpp-python {runtime.llama_cpp_version()} · "
                                   f"{runtime.backend()} build{gpu} · RAM {human_bytes(self.machine.ram_free)} "
                                   f"free of {human_bytes(self.machine.ram_total)}", wrap=False)
        footer.addWidget(self.runtime_label, 1)
        token = QPushButton(icon("key", theme.text), "Hub token…")
        token.clicked.connect(self.edit_token)
        footer.addWidget(token)
        column.addLayout(footer)

        self.show_catalog()
        self.refresh_installed()
        for job in self.queue.jobs.values():
            self._job_changed(job)

    # -- building ---------------------------------------------------------------------------
    def _build_discover(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 10, 0, 0)
        row = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search the Hugging Face hub for GGUF models (e.g. qwen, llama 3b, phi)")
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self.run_search)
        self.search.textChanged.connect(lambda t: self.show_catalog() if not t.strip() else None)
        row.addWidget(self.search, 1)
        self.sort = QComboBox()
        for key, label in SORTS:
            self.sort.addItem(label, key)
        self.sort.currentIndexChanged.connect(lambda _: self.run_search() if self.search.text().strip() else None)
        row.addWidget(self.sort)
        layout.addLayout(row)

        split = QSplitter()
        split.setChildrenCollapsible(False)
        left = QWidget()
        lcol = QVBoxLayout(left)
        lcol.setContentsMargins(0, 4, 0, 0)
        self.list_title = muted()
        lcol.addWidget(self.list_title)
        self.results = CardList()
        self.results.chosen.connect(self._result_chosen)
        lcol.addWidget(self.results, 1)
        split.addWidget(left)

        self.detail = QWidget()
        dcol = QVBoxLayout(self.detail)
        dcol.setContentsMargins(12, 4, 0, 0)
        self.detail_title = QLabel("Choose a model")
        self.detail_title.setObjectName("PageTitle")
        self.detail_title.setWordWrap(True)
        dcol.addWidget(self.detail_title)
        self.detail_meta = muted("Pick one on the left to see its files, their sizes and whether they "
                                 "will run on this computer.")
        dcol.addWidget(self.detail_meta)
        self.variants = QTableWidget(0, 5)
        self.variants.setHorizontalHeaderLabels(["Quantization", "Size", "Needs", "Here", ""])
        self.variants.verticalHeader().hide()
        self.variants.setShowGrid(False)
        self.variants.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.variants.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.variants.setWordWrap(False)
        self.variants.verticalHeader().setDefaultSectionSize(42)
        header = self.variants.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Fixed)
        self.variants.setColumnWidth(3, 104)
        self.variants.setColumnWidth(4, 100)
        self.variants.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        dcol.addWidget(self.variants, 1)
        self.variants.hide()
        split.addWidget(self.detail)
        split.setSizes([330, 670])
        split.setStretchFactor(1, 1)
        layout.addWidget(split, 1)
        return page

    def _build_installed(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 10, 0, 0)
        row = QHBoxLayout()
        self.installed_title = muted(wrap=False)
        row.addWidget(self.installed_title, 1)
        import_button = QPushButton(icon("import", self.theme.text), "Import a .gguf file…")
        import_button.clicked.connect(self._import_file)
        row.addWidget(import_button)
        layout.addLayout(row)
        self.installed = data_table(["Model", "Quantization", "Size", "Architecture", "Context", "License", "From",
                                     "Last used"], "InstalledModels")
        self.installed.itemSelectionChanged.connect(self._installed_selection)
        self.installed.doubleClicked.connect(lambda _: self._use_selected())
        layout.addWidget(self.installed, 2)
        actions = QHBoxLayout()
        self.installed_fit = muted()
        self.installed_fit.setMinimumHeight(self.installed_fit.fontMetrics().lineSpacing() * 3 + 4)  # wraps to 3 lines
        actions.addWidget(self.installed_fit, 1)
        self.use_button = QPushButton("Use in chat")
        self.use_button.setObjectName("Primary")
        self.use_button.clicked.connect(self._use_selected)
        self.locate_button = QPushButton(icon("search", self.theme.text), "Locate…")
        self.locate_button.setToolTip("Pick the model's file where it is now: only the same file is accepted")
        self.locate_button.clicked.connect(self._locate_selected)
        self.locate_button.hide()
        self.delete_button = QPushButton(icon("trash", self.theme.text), "Delete…")
        self.delete_button.clicked.connect(self._delete_selected)
        actions.addWidget(self.use_button)
        actions.addWidget(self.locate_button)
        actions.addWidget(self.delete_button)
        layout.addLayout(actions)

        found_row = QHBoxLayout()
        found_title = QLabel("Found on this computer")
        found_title.setObjectName("CardTitle")
        found_row.addWidget(found_title)
        found_row.addWidget(muted("GGUF models kept by LM Studio, GPT4All, Jan, Ollama or the Hugging Face "
                                  "cache. Linking uses them where they are, without a copy.", wrap=True), 1)
        self.scan_button = QPushButton("Look for them")
        self.scan_button.clicked.connect(lambda: self.spawn(self.scan_elsewhere()))
        found_row.addWidget(self.scan_button)
        layout.addLayout(found_row)
        self.found = QListWidget()
        self.found.setObjectName("ModelList")
        layout.addWidget(self.found, 1)
        return page

    def _build_downloads(self) -> QWidget:
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        body.setObjectName("ChatArea")
        self.download_column = QVBoxLayout(body)
        self.download_column.setContentsMargins(0, 10, 8, 0)
        self.download_column.setSpacing(8)
        self.no_downloads = muted("No downloads. Find a model under Discover; two download at a time and "
                                  "the rest wait. A paused download continues where it stopped, even "
                                  "after Hearth or the computer restarts.")
        self.download_column.addWidget(self.no_downloads)
        self.download_column.addStretch(1)
        scroll.setWidget(body)
        return scroll

    # -- discover ---------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return int(self.context.currentData())

    def show_catalog(self) -> None:
        self._search_serial += 1
        self.results.clear()
        self.list_title.setText(self.catalog_error or "Good models to start with, picked by the Hearth team")
        for entry in self.catalog:
            quant = entry.default_quantization
            size = entry.approx_size(quant)
            result = fit.assess(size, entry.kv_cache_bytes(self.n_ctx), self.machine)
            subtitle = (f"{human_count(int(entry.parameters_b * 1e9))} parameters · {entry.license} · "
                        f"about {human_bytes(size)} at {quant}")
            self.results.add(ModelCard(entry.name, subtitle, entry.good_for, fit_chip(result), entry,
                                       kind_chip(self.theme) if entry.is_embedding else None))

    def run_search(self) -> None:
        query = self.search.text().strip()
        if not query:
            self.show_catalog()
            return
        self._search_serial += 1
        serial = self._search_serial
        self.results.clear()
        self.list_title.setText(f"Searching the hub for “{query}”…")
        self.spawn(self._search(query, serial))

    async def _search(self, query: str, serial: int) -> None:
        from desktop.core import hub

        try:
            found = await hub.search(query, endpoint_url=hub.endpoint(), token=await asyncio.to_thread(secrets.hub_token),
                                     sort=str(self.sort.currentData()), limit=30)
        except HearthError as exc:
            if serial == self._search_serial:
                self.list_title.setText(str(exc))
            return
        if serial != self._search_serial:
            return  # the user has typed something else since
        self.list_title.setText(f"{len(found)} GGUF repositories on the hub for “{query}”" if found else
                                f"No GGUF models on the hub for “{query}”. Try fewer or other words.")
        for r in found:
            subtitle = f"{human_count(r.downloads)} downloads · {human_count(r.likes)} likes"
            self.results.add(ModelCard(r.id, subtitle + (" · gated" if r.gated else ""), "", None, r))

    def _result_chosen(self, data: object) -> None:
        if isinstance(data, catalog.Entry):
            self.open_repo(data.repo, entry=data)
        elif isinstance(data, RepoSummary):
            self.open_repo(data.id)

    def open_repo(self, repo: str, entry: catalog.Entry | None = None) -> None:
        self.entry, self.repo, self.head_kv, self.head_arch, self.head_pooling = entry, None, None, "", ""
        self._repo_serial += 1
        self.detail_title.setText(entry.name if entry else repo.split("/")[-1])
        self.detail_meta.setText(f"{repo} · reading its files from the hub…")
        self.variants.setRowCount(0)
        self.spawn(self._load_repo(repo, entry, self._repo_serial))

    async def _load_repo(self, repo: str, entry: catalog.Entry | None, serial: int) -> None:
        from desktop.core import hub

        endpoint, token = hub.endpoint(), await asyncio.to_thread(secrets.hub_token)  # the keyring can be slow
        try:
            files = await hub.repo_files(repo, endpoint_url=endpoint, token=token)
        except HearthError as exc:
            if serial == self._repo_serial:
                self.detail_meta.setText(str(exc))
            return
        if serial != self._repo_serial:
            return  # another model was chosen meanwhile
        self.repo = files
        self._show_repo()
        if files.variants and entry is None:  # the attention shape, from the first bytes of one file
            try:
                head = await hub.read_head(endpoint, files.repo, files.revision, files.variants[0].files[0].name,
                                           token=token)
            except HearthError:
                return
            if serial == self._repo_serial and head is not None:
                self.head_arch = head.architecture
                self.head_pooling = model_kinds.pooling_of(head.metadata)
                self.head_kv = head.kv_cache_bytes(1) or None
                self._show_repo()

    def kv_for_open_repo(self) -> int | None:
        if self.entry is not None:
            return self.entry.kv_cache_bytes(self.n_ctx)
        return self.head_kv * self.n_ctx if self.head_kv else None

    def _show_repo(self) -> None:
        files, architecture = self.repo, self.head_arch
        if files is None:
            return
        known = runtime.knows_architecture(architecture) if architecture else None
        bits = [files.repo, f"licence: {files.license or 'not stated'}"]
        if architecture:
            bits.append(f"architecture: {architecture}")
        if files.gated:
            bits.append("gated: accept its licence on the hub and add your hub token")
        text = " · ".join(bits)
        if known is False:
            text += "\n" + runtime.unknown_architecture_reason(architecture, files.repo)
        if (self.entry is not None and self.entry.is_embedding) or (
                architecture and model_kinds.for_embeddings(architecture, self.head_pooling)):
            text += f"\nAn embedding model. {model_kinds.EMBEDDING_USE}"
        if not files.variants:
            text += "\nThis repository has no GGUF files; Hearth runs models in GGUF format."
        kv = self.kv_for_open_repo()
        fits, best = fit.assess_variants(files.variants, kv, self.machine)
        if best and known is not False:
            text += f"\n★ Recommended here: {best}, the best quality that runs well on this computer."
        elif files.variants and known is not False:
            text += "\nNone of these will run well on this computer; a smaller model will."
        self.detail_meta.setText(text)
        self.variants.setRowCount(len(files.variants))
        self.variants.show()
        for row, variant in enumerate(files.variants):
            size, result = fits[variant.quantization]
            parts = f" ({len(variant.files)} files)" if len(variant.files) > 1 else ""
            name = QTableWidgetItem(variant.quantization + parts + (" ★" if variant.quantization == best else ""))
            if variant.quantization == best:
                name.setToolTip("Recommended: the best quality that runs well on this computer")
            self.variants.setItem(row, 0, name)
            self.variants.setItem(row, 1, QTableWidgetItem(human_bytes(size)))
            needs = QTableWidgetItem(("" if kv is not None else "≥ ") + human_bytes(result.memory.total))
            needs.setToolTip(result.explain())
            self.variants.setItem(row, 2, needs)
            cell = QWidget()
            line = QHBoxLayout(cell)
            line.setContentsMargins(6, 2, 6, 2)
            line.addWidget(fit_chip(result), 0, Qt.AlignmentFlag.AlignVCenter)
            line.addStretch(1)
            self.variants.setCellWidget(row, 3, cell)
            holder = QWidget()
            line = QHBoxLayout(holder)
            line.setContentsMargins(2, 3, 4, 3)
            line.addWidget(self._download_button(files, variant, refuse=known is False))
            self.variants.setCellWidget(row, 4, holder)

    def _download_button(self, files: RepoFiles, variant: Variant, refuse: bool) -> QPushButton:
        button = QPushButton("Download")
        installed = self.services.library.find_downloaded(files.repo, variant.files[0].name)
        queued = any(j.repo == files.repo and j.quantization == variant.quantization and j.state != dq.DONE
                     for j in self.queue.jobs.values())
        if installed is not None:
            button.setText("Installed")
            button.setEnabled(False)
        elif queued:
            button.setText("In downloads")
            button.setEnabled(False)
        elif refuse:
            button.setEnabled(False)
            button.setToolTip("llama.cpp in this version of Hearth cannot run this model.")
        button.clicked.connect(lambda: self.start_download(files, variant))
        return button

    def start_download(self, files: RepoFiles, variant: Variant) -> None:
        try:
            self.queue.add(files, variant)
        except HearthError as exc:
            self.message.emit(str(exc), "error")
            return
        self._show_repo()
        self.tabs.setTabText(2, self._downloads_tab_text())

    def _relabel(self) -> None:
        if not self.search.text().strip():
            self.show_catalog()
        self._show_repo()
        self._installed_selection()

    # -- downloads --------------------------------------------------------------------------
    def _downloads_tab_text(self) -> str:
        active = sum(1 for j in self.queue.jobs.values() if j.state in (dq.RUNNING, dq.QUEUED))
        return f"Downloads ({active})" if active else "Downloads"

    def _job_changed(self, job: dq.Job) -> None:
        row = self._rows.get(job.id)
        if job.id not in self.queue.jobs:  # cancelled or forgotten
            if row is not None:
                row.deleteLater()
                del self._rows[job.id]
        elif row is None:
            row = DownloadRow(job, self.theme, self)
            self._rows[job.id] = row
            self.download_column.insertWidget(0, row)
        else:
            row.update_from(job)
        self.no_downloads.setVisible(not self._rows)
        self.tabs.setTabText(2, self._downloads_tab_text())

    def _job_installed(self, job: dq.Job) -> None:
        self.refresh_installed()
        self._show_repo()
        self.models_changed.emit()
        self.message.emit(f"Downloaded {job.title}, checked and ready to use.", "info")

    def cancel_download(self, job_id: int) -> None:
        async def cancel() -> None:
            freed = await self.queue.cancel(job_id)
            if freed:
                self.message.emit(f"Download cancelled; {human_bytes(freed)} deleted.", "info")
            self._show_repo()
        self.spawn(cancel())

    # -- installed ---------------------------------------------------------------------------
    def refresh_installed(self) -> None:
        models = self.services.library.models()
        total = sum(m.size for m in models)
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self.installed_title.setText(f"{count} · {human_bytes(total)} on disk" if models else
                                     "No models yet: download one under Discover, or import a .gguf file.")
        self.installed.setRowCount(len(models))
        for row, m in enumerate(models):
            origin = {"downloaded": m.repo or "the hub", "linked": "linked (left where it is)",
                      "imported": "imported"}.get(m.origin, m.origin)
            used = time.strftime("%d %b %Y", time.localtime(m.last_used_at)) if m.last_used_at else "never"
            problem = file_problem(m)
            name = f"⚠ {shown(m.name)}" if problem else shown(m.name)
            cells = [name, shown(m.quantization), human_bytes(m.size), shown(m.architecture),
                     f"{m.context_length:,}" if m.context_length else "?", shown(m.license) or "—",
                     problem or origin, used]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, m.id)
                item.setToolTip(shown(m.path) if col in (0, 6) else text)
                if problem and col in (0, 6):
                    item.setForeground(QColor(self.theme.error))
                    item.setToolTip(f"{problem} ({origin}): {shown(m.path)}. Locate… picks it again; Remove… "
                                    "forgets it.")
                self.installed.setItem(row, col, item)
            self._set_kind_cell(row, m)
        self._installed_selection()

    def _set_kind_cell(self, row: int, record: ModelRecord) -> None:
        """An embedding model's Architecture cell shows the "Embeddings" chip instead (the
        architecture on hover and in the line below): narrower than a chip beside the name, so
        the name keeps its room. A chat model's cell keeps its text. A replaced chip is hidden at
        once (Qt deletes it only later)."""
        item = self.installed.item(row, ARCHITECTURE_COLUMN)
        if record.for_embeddings:  # the chip is drawn over an empty cell
            item.setText("")
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{model_kinds.EMBEDDING_LABEL} ({record.architecture})")
        old = self.installed.cellWidget(row, ARCHITECTURE_COLUMN)
        if old is not None and record.for_embeddings and old.property("model") == record.id:
            item.setData(Qt.ItemDataRole.SizeHintRole, old.sizeHint())
            return
        if old is not None:
            old.hide()
            self.installed.removeCellWidget(row, ARCHITECTURE_COLUMN)
        if not record.for_embeddings:
            return
        cell = QWidget()
        cell.setProperty("model", record.id)
        line = QHBoxLayout(cell)
        line.setContentsMargins(2, 0, 6, 0)
        chip = kind_chip(self.theme)
        chip.setToolTip(f"{shown(record.architecture)}: {model_kinds.EMBEDDING_USE}")
        line.addWidget(chip, 0, Qt.AlignmentFlag.AlignVCenter)
        line.addStretch(1)
        item.setData(Qt.ItemDataRole.SizeHintRole, cell.sizeHint())  # the column fits the chip
        cell.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)  # clicks select the row beneath
        self.installed.setCellWidget(row, ARCHITECTURE_COLUMN, cell)

    def selected_installed(self) -> ModelRecord | None:
        items = self.installed.selectedItems()
        if not items:
            return None
        try:
            return self.services.library.get(items[0].data(Qt.ItemDataRole.UserRole))
        except HearthError:
            return None

    def _installed_selection(self) -> None:
        record = self.selected_installed()
        problem = file_problem(record) if record is not None else ""
        embedding = record is not None and record.for_embeddings
        self.use_button.setEnabled(record is not None and not problem and not embedding)
        self.use_button.setToolTip(model_kinds.EMBEDDING_USE if embedding else "")
        self.delete_button.setEnabled(record is not None)
        self.delete_button.setText("Remove…" if problem else "Delete…")
        self.locate_button.setVisible(bool(problem))
        if record is None:
            self.installed_fit.setText("")
            return
        if problem:
            where = self.installed_fit.fontMetrics().elidedText(shown(record.path), Qt.TextElideMode.ElideMiddle, 240)
            what = "is missing" if problem == "File missing" else "cannot be read"
            self.installed_fit.setText(f"The file of “{shown(record.name)}” {what} (it was at {where}). Locate… "
                                       "picks the same file again; Remove… forgets the model.")
            self.installed_fit.setToolTip(str(ModelFileMissing(record, problem)))
            return
        self.installed_fit.setToolTip("")
        from desktop.core import gguf, templates

        if embedding:
            try:
                info = gguf.read_info(record.path)
                result = fit.assess(info.file_size, info.kv_cache_bytes(min(self.n_ctx, info.context_length or
                                                                            self.n_ctx)), self.machine)
                fits, problem = f", {result.label}", ""
            except HearthError as exc:
                fits, problem = "", f" {exc}"
            self.installed_fit.setText(f"{record.name} ({record.architecture}): {model_kinds.EMBEDDING_LABEL}{fits}. "
                                       f"{model_kinds.EMBEDDING_USE}{problem}")
            return

        try:
            info = gguf.read_info(record.path)
            result = fit.assess(info.file_size, info.kv_cache_bytes(min(self.n_ctx, info.context_length or self.n_ctx)),
                                self.machine)
            prompt = templates.describe(info.chat_template, info.architecture, info.markup_tokens,
                                        record.chat_format)
            self.installed_fit.setText(f"{record.name}: {result.label}. {result.explain()}\nChat format: {prompt}.")
        except HearthError as exc:
            self.installed_fit.setText(str(exc))

    def _use_selected(self) -> None:
        record = self.selected_installed()
        if record is not None and record.for_embeddings:  # a double click on it: say why not
            self.message.emit(model_kinds.not_for_chat(record.name), "info")
        elif record is not None:
            self.use_requested.emit(record.id)

    def _locate_selected(self) -> None:
        record = self.selected_installed()
        if record is None:
            return
        start = Path(record.path).parent
        path, _ = QFileDialog.getOpenFileName(self, f"Locate the file of {shown(record.name)}",
                                              str(start if start.is_dir() else Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.spawn(self.locate_model(record.id, path))

    async def locate_model(self, model_id: str, path: str) -> None:
        """Point a model whose file went missing at `path` (hashed off the GUI thread); a different
        file is refused with a sentence and nothing changes."""
        self.locate_button.setEnabled(False)
        try:
            record = await asyncio.to_thread(self.services.library.locate, model_id, path)
        except HearthError as exc:
            self.message.emit(str(exc), "error")
            return
        finally:
            self.locate_button.setEnabled(True)
        self.refresh_installed()
        self.models_changed.emit()
        self.message.emit(f"Found {shown(record.name)} again; it is ready to use.", "info")

    def _delete_selected(self) -> None:
        record = self.selected_installed()
        if record is None:
            return
        linked = record.origin == "linked" or bool(file_problem(record))
        confirm(self, "ConfirmDeleteModel", "Delete model",
                f"Remove “{shown(record.name)}” ({record.quantization}) from Hearth?",
                "Its file is missing; only Hearth's entry goes." if file_problem(record) else
                "Its file stays where it is (it was linked)." if linked else
                f"This deletes its file and frees {human_bytes(record.size)}.",
                "Remove" if file_problem(record) else "Delete", lambda: self.spawn(self.delete_model(record.id)),
                destructive=True)

    async def delete_model(self, model_id: str) -> None:
        engine = self.services.engine
        if engine.model is not None and engine.model.id == model_id:
            await engine.stop()  # its memory and its file handle go first
        record, freed = self.services.library.remove(model_id)
        self.refresh_installed()
        self.models_changed.emit()
        self.message.emit(f"Deleted {shown(record.name)}; {human_bytes(freed)} freed." if freed else
                          f"Removed {shown(record.name)} from Hearth; its file was left where it is.", "info")

    def _import_file(self) -> None:
        window = self.window()
        if hasattr(window, "import_model"):
            window.import_model()

    async def scan_elsewhere(self) -> None:
        """"Look for them": other apps' models, each with Link (or "In Hearth"), and a line saying
        how many entries were skipped, whose tooltip says which and why."""
        from desktop.core import elsewhere

        self.scan_button.setEnabled(False)
        self.found.clear()
        known = {Path(m.path): m.id for m in self.services.library.models()}
        try:
            scan = await asyncio.to_thread(elsewhere.scan, known)
        finally:
            self.scan_button.setEnabled(True)
        self._found = scan.found
        if not scan.found:
            self.found.addItem("No GGUF models from other apps were found on this computer.")
        for f in scan.found:
            card = QWidget()
            row = QHBoxLayout(card)
            row.setContentsMargins(10, 6, 6, 6)
            label = QLabel()
            label.setTextFormat(Qt.TextFormat.PlainText)  # names come from other programs' folders
            label.setText(f"{shown(f.name)}  ·  {f.app} · {shown(f.architecture)} · {shown(f.quantization)} · "
                          f"{human_bytes(f.size)}")
            label.setToolTip(shown(str(f.path)))
            row.addWidget(label, 1)
            link = QPushButton(icon("link", self.theme.text), "Link")
            link.setToolTip("Use this file where it is: nothing is copied")
            link.clicked.connect(lambda _=False, f=f, b=link: self.spawn(self.link_found(f, b)))
            if f.in_hearth:
                link.setText("In Hearth")
                link.setEnabled(False)
                link.setToolTip(f"Already in Hearth as “{f.in_hearth}”")
            row.addWidget(link)
            item = QListWidgetItem()
            item.setSizeHint(card.sizeHint())
            self.found.addItem(item)
            self.found.setItemWidget(item, card)
        if scan.skipped:
            count = len(scan.skipped)
            item = QListWidgetItem(f"{count} entr{'ies' if count > 1 else 'y'} skipped (not a model file, or not "
                                   "readable): point here to see which and why.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            item.setToolTip("\n".join(f"{shown(str(s.path))}: {s.reason}" for s in scan.skipped[:30])
                            + (f"\n… and {count - 30} more" if count > 30 else ""))
            self.found.addItem(item)

    async def link_found(self, found, button: QPushButton) -> None:
        button.setEnabled(False)
        button.setText("Linking…")
        label = found.name if found.app == "Ollama" else None
        try:
            record = await asyncio.to_thread(self.services.library.import_file, found.path, link=True, label=label)
        except HearthError as exc:
            button.setText("Not linked")
            self.message.emit(str(exc), "error")
            return
        button.setText("Linked")
        self.refresh_installed()
        self.models_changed.emit()
        self.message.emit(f"Linked {shown(record.name)} from {found.app}; nothing was copied.", "info")

    def edit_token(self) -> None:
        TokenDialog(self).exec()
