"""The model manager in the real window, against the hub stand-in on 127.0.0.1: discover a model,
see whether it will run here, download it with pause and resume, use it; search; other apps'
models; delete."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QPushButton

from desktop.core import download_queue as dq
from desktop.core.units import human_bytes
from tests.gguf_forge import write_gguf
from tests.hub_server import Hub

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def hub(model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server = Hub().start()
    server.add(REPO, model_file.name, model_file, license="apache-2.0", downloads=5000, likes=120)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


def card_titles(page):
    return page.results.titles()


def choose(qtbot, page, title):
    card = page.results.cards[card_titles(page).index(title)]
    page.results.ensureWidgetVisible(card)
    qtbot.mouseClick(card, Qt.MouseButton.LeftButton)


def variant_row(page, quant):
    for row in range(page.variants.rowCount()):
        if page.variants.item(row, 0).text().startswith(quant):
            return row
    raise AssertionError(f"{quant} not listed")


def test_find_check_download_pause_resume_and_use_a_model(qtbot, hub, services, make_window, shots_dir, model_file):
    window = make_window()
    assert window.empty_state.browse_button.isVisible()  # no model yet: the way to one is offered
    qtbot.mouseClick(window.empty_state.browse_button, Qt.MouseButton.LeftButton)
    page = window.models_page
    assert window.pages.currentWidget() is page
    titles = card_titles(page)
    assert len(titles) >= 12 and "SmolLM2 135M Instruct" in titles

    choose(qtbot, page, "SmolLM2 135M Instruct")
    qtbot.waitUntil(lambda: page.variants.rowCount() == 1, timeout=10_000)
    row = variant_row(page, "Q4_1")
    assert page.variants.item(row, 0).text() == "Q4_1 ★"
    assert "★ Recommended here: Q4_1" in page.detail_meta.text()
    assert page.variants.item(row, 1).text() == "98.4 MB"
    chip = page.variants.cellWidget(row, 3).findChild(QLabel, "Fit")
    assert chip.text() == "fits in RAM" and "weights 98.4 MB" in chip.toolTip()
    window.grab().save(str(shots_dir / "models-discover.png"))

    hub.faults.throttle = 0.004  # slow enough to pause halfway
    button = page.variants.cellWidget(row, 4).findChild(QPushButton)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    [job] = services.downloads.jobs.values()
    page.tabs.setCurrentIndex(2)
    assert page.tabs.tabText(2) == "Downloads (1)"
    download_row = page._rows[job.id]
    qtbot.waitUntil(lambda: job.done > 30_000_000, timeout=30_000)
    assert " of 98.4 MB · " in download_row.status.text() and "left" in download_row.status.text()
    window.grab().save(str(shots_dir / "models-downloading.png"))
    qtbot.mouseClick(download_row.pause, Qt.MouseButton.LeftButton)
    assert job.state == dq.PAUSED and download_row.status.text().startswith("Paused · ")
    part = services.paths.models / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF" / (model_file.name + ".part")
    qtbot.wait(500)  # the transfer has let go of the file
    kept = part.stat().st_size
    assert kept > 30_000_000

    hub.faults.throttle = 0
    qtbot.mouseClick(download_row.resume, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.state == dq.DONE, timeout=60_000)
    ranges = [r for method, path, r in hub.requests if method == "GET" and path.endswith(model_file.name) and r]
    assert ranges[-1] == f"bytes={kept}-"  # what was on disk is not asked for again
    assert download_row.status.text() == "Installed · 98.4 MB"
    assert "Downloaded SmolLM2-135M-Instruct-GGUF · Q4_1" in page.banner.label.text()
    assert page.installed.rowCount() == 1 and page.installed.item(0, 6).text() == REPO
    assert window.model_combo.findData(job.model_id) >= 0
    assert page.variants.cellWidget(row, 4).findChild(QPushButton).text() == "Installed"

    assert download_row.forget.isVisible() and not download_row.cancel.isVisible()
    qtbot.mouseClick(download_row.use, Qt.MouseButton.LeftButton)
    assert window.pages.currentWidget() is window.chat_page
    assert window.selected_model_id() == job.model_id

    window.show_models()  # a finished row can be taken off the list; the model stays
    qtbot.mouseClick(download_row.forget, Qt.MouseButton.LeftButton)
    assert job.id not in page._rows and page.no_downloads.isVisible()
    assert json.loads((services.paths.data / "downloads.json").read_text()) == []
    assert services.library.find_downloaded(REPO, model_file.name) is not None


def test_search_lists_the_hub_and_a_gated_download_says_what_to_do(qtbot, hub, services, make_window, model_file):
    hub.add("meta-llama/Llama-Gated-GGUF", "llama-gated-Q4_K_M.gguf", model_file, gated="manual", downloads=9)
    window = make_window()
    window.show_models()
    page = window.models_page
    qtbot.keyClicks(page.search, "gguf")
    qtbot.keyClick(page.search, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(page.results.cards) == 2, timeout=10_000)
    assert card_titles(page) == [REPO, "meta-llama/Llama-Gated-GGUF"]  # most downloaded first
    assert "gated" in page.results.cards[1].subtitle.text()

    choose(qtbot, page, "meta-llama/Llama-Gated-GGUF")
    qtbot.waitUntil(lambda: "architecture: llama" in page.detail_meta.text(), timeout=10_000)
    assert "gated: accept its licence on the hub and add your hub token" in page.detail_meta.text()
    hub.faults.status = 401
    qtbot.mouseClick(page.variants.cellWidget(0, 4).findChild(QPushButton), Qt.MouseButton.LeftButton)
    [job] = services.downloads.jobs.values()
    qtbot.waitUntil(lambda: job.state == dq.FAILED, timeout=20_000)
    status = page._rows[job.id].status.text()
    assert "gated or private" in status and "hub token" in status
    assert services.library.models() == []


def test_a_model_llama_cpp_cannot_run_cannot_be_downloaded(qtbot, hub, services, make_window, tmp_path):
    odd = write_gguf(tmp_path / "odd-F32.gguf", {"general.architecture": "hearthnet", "hearthnet.block_count": 2},
                     [("token_embd.weight", [64, 64], 0)])
    hub.add("someone/Odd-GGUF", odd.name, odd)
    window = make_window()
    window.show_models()
    page = window.models_page
    page.open_repo("someone/Odd-GGUF")
    qtbot.waitUntil(lambda: "does not know" in page.detail_meta.text(), timeout=10_000)
    assert not page.variants.cellWidget(0, 4).findChild(QPushButton).isEnabled()
    choose(qtbot, page, "SmolLM2 135M Instruct")  # the next model does not inherit this one's architecture
    qtbot.waitUntil(lambda: "★ Recommended here" in page.detail_meta.text(), timeout=10_000)
    assert "hearthnet" not in page.detail_meta.text()
    assert page.variants.cellWidget(0, 4).findChild(QPushButton).isEnabled()


def test_models_other_apps_keep_are_linked_and_deleting_frees_the_disk(qtbot, hub, services, make_window,
                                                                       tmp_path, monkeypatch, model_file):
    home = tmp_path / "user"
    found = home / ".lmstudio" / "models" / "someone" / "Tiny-GGUF" / "tiny-F32.gguf"
    found.parent.mkdir(parents=True)
    write_gguf(found, {"general.architecture": "llama", "general.name": "Tiny"}, [("token_embd.weight", [64, 64], 0)])
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    window = make_window()
    window.show_models()
    page = window.models_page
    page.tabs.setCurrentIndex(1)
    qtbot.mouseClick(page.scan_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.found.count() == 1 and page.found.itemWidget(page.found.item(0)) is not None, timeout=10_000)
    link = page.found.itemWidget(page.found.item(0)).findChild(QPushButton)
    qtbot.mouseClick(link, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.installed.rowCount() == 1, timeout=10_000)
    source = page.installed.item(0, 6)
    assert source.text() == "linked (left where it is)" and source.toolTip() == str(found) and found.exists()

    copied = services.library.import_file(model_file)  # an imported copy: Hearth owns this file
    page.refresh_installed()
    row = next(r for r in range(page.installed.rowCount()) if page.installed.item(r, 1).text() == "Q4_1")
    page.installed.selectRow(row)
    assert "fits in RAM" in page.installed_fit.text()
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    box = page.findChild(QMessageBox, "ConfirmDeleteModel")
    assert "frees 98.4 MB" in box.informativeText()
    delete = next(b for b in box.buttons() if b.text() == "Delete")
    qtbot.mouseClick(delete, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.installed.rowCount() == 1, timeout=10_000)
    assert not __import__("pathlib").Path(copied.path).exists()
    assert "98.4 MB freed" in page.banner.label.text()
    assert json.dumps([m.id for m in services.library.models()]) == json.dumps(["tiny-f32"])


def test_a_model_whose_file_is_gone_is_marked_and_can_be_located_or_removed(qtbot, services, make_window,
                                                                           tmp_path, monkeypatch, shots_dir):
    from PySide6.QtWidgets import QFileDialog

    def forge(path, width):
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_gguf(path, {"general.architecture": "llama", "general.name": path.stem},
                          [("token_embd.weight", [64, width], 0)])

    travels = forge(tmp_path / "here" / "Путник-F32.gguf", 64)
    gone = forge(tmp_path / "here" / "gone-F32.gguf", 65)
    kept = services.library.import_file(travels, link=True)
    lost = services.library.import_file(gone, link=True)
    moved = tmp_path / "elsewhere" / "renamed.gguf"
    moved.parent.mkdir()
    travels.rename(moved)
    gone.unlink()

    window = make_window()
    labels = [window.model_combo.itemText(i) for i in range(window.model_combo.count())]
    assert sorted(labels) == ["gone   ·   F32   ·   File missing", "Путник   ·   F32   ·   File missing"]
    window.use_model(kept.id)  # choosing it to chat: one sentence, no engine started
    qtbot.waitUntil(window.banner.isVisible, timeout=5_000)
    assert window.banner.label.text().startswith("The file of “Путник” is missing: it was at ")
    assert window.banner.label.text().endswith("Open Models (Locate… or Remove).")
    assert window.services.engine.pid is None

    window.show_models()
    page = window.models_page
    page.tabs.setCurrentIndex(1)
    names = {page.installed.item(r, 0).data(Qt.ItemDataRole.UserRole): page.installed.item(r, 0).text()
             for r in range(page.installed.rowCount())}
    assert names == {kept.id: "⚠ Путник", lost.id: "⚠ gone"}
    assert {page.installed.item(r, 6).text() for r in range(2)} == {"File missing"}
    row = next(r for r in range(page.installed.rowCount()) if page.installed.item(r, 0).text() == "⚠ Путник")
    page.installed.selectRow(row)
    assert page.locate_button.isVisible() and not page.use_button.isEnabled()
    assert page.delete_button.text() == "Remove…"
    assert page.installed_fit.text().startswith("The file of “Путник” is missing (it was at ")
    assert page.installed_fit.text().endswith("Locate… picks the same file again; Remove… forgets the model.")
    window.grab().save(str(shots_dir / "models-file-missing-light.png"))
    dark = make_window(dark=True)
    dark.show_models()
    dark.models_page.tabs.setCurrentIndex(1)
    dark.models_page.installed.selectRow(row)
    dark.grab().save(str(shots_dir / "models-file-missing-dark.png"))
    dark.close()

    # Locate…: another file is refused and nothing changes; the same file (renamed) is accepted
    impostor = forge(tmp_path / "impostor.gguf", 80)
    picked = [str(impostor), str(moved)]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (picked.pop(0), ""))
    qtbot.mouseClick(page.locate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "its content differs" in page.banner.label.text(), timeout=10_000)
    assert services.library.get(kept.id).path == str(travels)
    qtbot.mouseClick(page.locate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Found Путник again" in page.banner.label.text(), timeout=10_000)
    assert services.library.get(kept.id).path == str(moved)
    assert "Путник" in [page.installed.item(r, 0).text() for r in range(page.installed.rowCount())]
    picker = [window.model_combo.itemText(i) for i in range(window.model_combo.count())]
    assert [t for t in picker if t.startswith("Путник")] == [f"Путник   ·   F32   ·   {human_bytes(moved.stat().st_size)}"]

    # Remove: the lost one goes from Hearth with one confirmation
    row = next(r for r in range(page.installed.rowCount()) if page.installed.item(r, 0).text() == "⚠ gone")
    page.installed.selectRow(row)
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    box = page.findChild(QMessageBox, "ConfirmDeleteModel")
    assert box.informativeText() == "Its file is missing; only Hearth's entry goes."
    qtbot.mouseClick(next(b for b in box.buttons() if b.text() == "Remove"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.installed.rowCount() == 1, timeout=10_000)
    assert [m.id for m in services.library.models()] == [kept.id]


def test_look_for_them_marks_models_already_in_hearth_and_says_what_it_skipped(qtbot, services, make_window,
                                                                              tmp_path, monkeypatch, shots_dir):
    import os

    home = tmp_path / "user"
    folder = home / ".lmstudio" / "models" / "someone" / "Tiny-GGUF"
    folder.mkdir(parents=True)
    tiny = write_gguf(folder / "tiny-F32.gguf", {"general.architecture": "llama"}, [("token_embd.weight", [64, 64], 0)])
    os.mkfifo(folder / "stuck.gguf")
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "OLLAMA_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    record = services.library.import_file(tiny, link=True)
    window = make_window()
    window.show_models()
    page = window.models_page
    page.tabs.setCurrentIndex(1)
    qtbot.mouseClick(page.scan_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.found.count() == 2, timeout=10_000)
    button = page.found.itemWidget(page.found.item(0)).findChild(QPushButton)
    assert button.text() == "In Hearth" and not button.isEnabled() and record.id in button.toolTip()
    skipped = page.found.item(1)
    assert skipped.text().startswith("1 entry skipped")
    assert skipped.toolTip() == f"{folder / 'stuck.gguf'}: not a regular file: it is a pipe (FIFO)"
    window.grab().save(str(shots_dir / "models-found-skipped.png"))
