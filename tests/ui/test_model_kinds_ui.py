"""An embedding model in the real window: never offered to chat with (the model picker, Compare's
columns, Models' "Use in chat"), and marked "Embeddings" on the Models page, installed and in
Discover, with what it is for. The embedding model is a real GGUF (a one-layer BERT, forged)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from desktop.core import model_kinds
from tests.gguf_forge import forge_bert


@pytest.fixture
def bert(services, tmp_path, model):
    """The forged BERT embedding model, installed beside the starter model and used last."""
    record = services.library.import_file(forge_bert(tmp_path / "Nomic-like-embed.gguf"), link=True)
    services.store.touch_model(record.id)
    return record


def combo_data(combo) -> list:
    return [combo.itemData(i) for i in range(combo.count())]


def chips(widget) -> list[str]:
    return [c.text() for c in widget.findChildren(QLabel, "KindChip")]


def test_the_model_picker_and_compare_offer_only_chat_models(make_window, model, bert):
    window = make_window()
    assert combo_data(window.model_combo) == [model.id]
    assert window.selected_model_id() == model.id  # the embedding one was used last, yet not chosen
    window.show_cloud()
    for picker in window.cloud_page.pickers:
        assert bert.id not in combo_data(picker) and model.id in combo_data(picker)


def test_with_only_an_embedding_model_the_picker_says_there_is_no_chat_model(make_window, services, tmp_path):
    services.library.import_file(forge_bert(tmp_path / "alone-embed.gguf"), link=True)
    window = make_window()
    assert [window.model_combo.itemText(i) for i in range(window.model_combo.count())] == ["No chat model installed"]
    window.send("Hello?")
    assert "the models installed are embedding models, which cannot chat" in window.banner.label.text()


def show_installed(window, record):
    window.show_models()
    page = window.models_page
    page.tabs.setCurrentIndex(1)
    row = next(r for r in range(page.installed.rowCount())
               if page.installed.item(r, 0).data(Qt.ItemDataRole.UserRole) == record.id)
    page.installed.selectRow(row)
    return page, row


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_models_page_marks_an_embedding_model_and_says_what_it_is_for(make_window, model, bert, shots_dir, dark,
                                                                           qtbot):
    window = make_window(dark=dark)
    page, row = show_installed(window, bert)
    cell = page.installed.cellWidget(row, 3)  # Architecture: what the model is for, "bert" on hover
    assert cell is not None and chips(cell) == ["Embeddings"]
    assert cell.findChild(QLabel, "KindChip").toolTip() == f"bert: {model_kinds.EMBEDDING_USE}"
    assert page.installed.item(row, 0).text() == bert.name
    assert not page.use_button.isEnabled() and page.use_button.toolTip() == model_kinds.EMBEDDING_USE
    assert page.installed_fit.text().startswith(f"{bert.name} (bert): Embeddings, fits ")
    assert "For document search and apps using /v1/embeddings; not a chat model." in page.installed_fit.text()
    rect = page.installed.visualItemRect(page.installed.item(row, 0))
    with qtbot.waitSignal(page.installed.doubleClicked, timeout=2_000):
        qtbot.mouseClick(page.installed.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(page.installed.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.pages.currentWidget() is page and window.selected_model_id() == model.id  # not used to chat
    assert page.banner.isVisible() and "is an embedding model" in page.banner.label.text()
    theme = "dark" if dark else "light"
    window.grab().save(str(shots_dir / f"models-embedding-installed-{theme}.png"))

    chat_row = next(r for r in range(page.installed.rowCount()) if r != row)
    assert page.installed.cellWidget(chat_row, 3) is None and page.installed.item(chat_row, 3).text() == "llama"
    page.installed.selectRow(chat_row)
    assert page.use_button.isEnabled()

    page.tabs.setCurrentIndex(0)
    marked = {card.title.text(): chips(card) for card in page.results.cards}
    assert marked["Nomic Embed Text v1.5"] == ["Embeddings"] and marked["BGE Small English v1.5"] == ["Embeddings"]
    assert marked["SmolLM2 135M Instruct"] == []
    nomic = page.results.cards[page.results.titles().index("Nomic Embed Text v1.5")]
    page.results.ensureWidgetVisible(nomic)
    window.grab().save(str(shots_dir / f"models-embedding-discover-{theme}.png"))


def test_an_embedding_repo_says_what_it_is_for_before_it_is_downloaded(make_window, tmp_path, monkeypatch, qtbot,
                                                                       shots_dir):
    from tests.hub_server import Hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hub = Hub().start()
    try:
        forged = forge_bert(tmp_path / "forged.gguf")
        hub.add("nomic-ai/nomic-embed-text-v1.5-GGUF", "nomic-embed-text-v1.5.Q4_K_M.gguf", forged,
                license="apache-2.0")
        hub.add("someone/tiny-bert-GGUF", "tiny-bert-F32.gguf", forged, license="mit")  # not in the catalog
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        window = make_window()
        window.show_models()
        page = window.models_page
        said = "An embedding model. For document search and apps using /v1/embeddings; not a chat model."
        page.open_repo("nomic-ai/nomic-embed-text-v1.5-GGUF", entry=next(e for e in page.catalog if e.is_embedding
                                                                           and e.repo.startswith("nomic-ai/")))
        qtbot.waitUntil(lambda: page.variants.rowCount() == 1, timeout=10_000)
        assert said in page.detail_meta.text()
        window.grab().save(str(shots_dir / "models-embedding-repo.png"))
        page.open_repo("someone/tiny-bert-GGUF")  # known from the first bytes of its file: architecture bert
        qtbot.waitUntil(lambda: "architecture: bert" in page.detail_meta.text(), timeout=10_000)
        assert said in page.detail_meta.text()
    finally:
        hub.stop()
