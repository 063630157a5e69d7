"""Documents in the chat, in the real window: files attached with the paperclip or dropped onto the
chat show as chips (× takes them off), a file Hearth cannot read gets a sentence and no chip, a
collection is used from the paperclip's menu, an answer with the real SmolLM2 engine lists its
Sources with the page the fact is on, a source shows its passage on hover and whole in a dialog,
and a cloud model asks before any passage leaves (Not now sends nothing and keeps the question)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from desktop.ui.chat_view import AttachmentChip
from desktop.ui.sources import HOVER_CHARS, SourceDialog, shortened
from tests.core.test_docs_chat import FACT, FILLER, long_pdf
from tests.ui.conftest import STANDIN, send, window_on_standin

LONG_NAME = "Harbour board minutes and appendices, revised after the spring audit (final, signed copy).pdf"


def five_sources(folder: Path) -> list[dict]:
    """Sources as the chat saves them with an answer: a PDF's pages, a Markdown heading, a text
    file with no pages, a file with a very long name (this one exists on disk)."""
    real = folder / "harbour.pdf"
    real.write_bytes(b"%PDF-1.4\n")  # only its path matters here: the dialog offers to open it
    long_text = " ".join([FACT, FILLER * 5])
    return [
        {"n": 1, "path": str(real), "name": "harbour.pdf", "page": 3, "heading": "", "text": long_text},
        {"n": 2, "path": str(real), "name": "harbour.pdf", "page": 7, "heading": "", "text": FILLER},
        {"n": 3, "path": "/home/ana/notes/setup.md", "name": "setup.md", "page": None, "heading": "Setup",
         "text": "Install the quay lights before the winter storms."},
        {"n": 4, "path": "/home/ana/notes/todo.txt", "name": "todo.txt", "page": None, "heading": "",
         "text": "Paint the boathouse."},
        {"n": 5, "path": f"/home/ana/board/{LONG_NAME}", "name": LONG_NAME, "page": 12, "heading": "",
         "text": "The board approved the budget for the new pier. " * 3},
    ]


def drop_files(widget, paths: list[Path]) -> bool:
    """Drag `paths` over `widget` and drop them, as a file manager does; whether it took them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def chips(window) -> list[AttachmentChip]:
    return [c for c in window.composer.chips.findChildren(AttachmentChip) if c.value in window.composer.chip_values()]


def shot(window, path: Path, width: int) -> None:
    window.resize(width, 720)
    QApplication.processEvents()
    window.grab().save(str(path))


def test_a_passage_on_hover_is_cut_at_a_word_with_an_ellipsis():
    text = "word " * 200
    short = shortened(text)
    assert len(short) <= HOVER_CHARS + 1 and short.endswith("word…")
    assert shortened("  a\n\nshort   one ") == "a short one"


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_an_answer_lists_its_five_sources_with_the_passage_on_hover_and_whole_on_a_click(
        qtbot, make_window, model, tmp_path, shots_dir, dark):
    window = make_window(dark=dark)
    store = window.services.store
    chat = store.create_conversation(title="Harbour questions")
    store.add_message(chat.id, "user", "What is the lighthouse keeper's cat named?")
    sources = five_sources(tmp_path)
    store.add_message(chat.id, "assistant", "The cat is named Marmalade Quill [1]. The pier budget was approved [5].",
                      model="SmolLM2", processed_on="this machine", sources=sources)
    window.open_conversation(chat.id)
    answer = window.message_list.widgets()[-1]
    entries = answer.sources.entries
    assert answer.sources.isVisible() and answer.sources.title.text() == "Sources"
    assert [e.full_text for e in entries] == ["[1] harbour.pdf, page 3", "[2] harbour.pdf, page 7",
                                              "[3] setup.md, Setup", "[4] todo.txt", f"[5] {LONG_NAME}, page 12"]
    assert entries[0].toolTip().startswith("harbour.pdf, page 3\n\n" + FACT)
    assert entries[0].toolTip().endswith("…")  # a long passage is shortened on hover
    theme = "dark" if dark else "light"
    for width in (1100, 800):
        shot(window, shots_dir / f"sources-five-{width}-{theme}.png", width)
        long_entry = entries[4]
        assert "…" in long_entry.text() and long_entry.text().endswith(", page 12")  # elided in the middle
    qtbot.mouseClick(entries[0], Qt.MouseButton.LeftButton)
    dialog = window.findChild(SourceDialog, "SourceDialog")
    assert dialog is not None and dialog.isVisible()
    assert dialog.passage.toPlainText() == sources[0]["text"] and dialog.passage.isReadOnly()
    assert dialog.open_button is not None  # a file on this computer: the user may open it
    dialog.grab().save(str(shots_dir / f"sources-dialog-{theme}.png"))
    dialog.close()
    qtbot.mouseClick(entries[2], Qt.MouseButton.LeftButton)
    missing = [d for d in window.findChildren(SourceDialog, "SourceDialog") if d.isVisible()][-1]
    assert missing.open_button is None  # not on this computer (any more): nothing to open
    missing.close()


def test_a_chat_with_an_attached_pdf_answers_with_sources_naming_page_3(qtbot, make_window, model, tmp_path,
                                                                         shots_dir):
    window = make_window()
    pdf = long_pdf(tmp_path)
    window.attach_files([str(pdf)])
    assert window.composer.chip_values() == [str(pdf.resolve())]
    answer = send(qtbot, window, "What is the lighthouse keeper's cat named?")
    qtbot.waitUntil(lambda: not window.answering, timeout=180_000)
    assert answer.message is not None and answer.message.status == "complete", window.banner.label.text()
    entries = answer.sources.entries
    assert entries and entries[0].full_text == "[1] harbour.pdf, page 3"
    assert FACT in " ".join(entries[0].source["text"].split())  # the PDF's lines joined
    shot(window, shots_dir / "sources-real-answer-1100-light.png", 1100)
    # And it is all there again when the chat is opened later.
    window.open_conversation(window.current_id)
    again = window.message_list.widgets()[-1]
    assert [e.full_text for e in again.sources.entries] == [e.full_text for e in entries]


def test_dropping_files_onto_the_chat_attaches_them_and_an_unreadable_one_gets_a_sentence(
        qtbot, make_window, model, tmp_path, shots_dir):
    window = make_window()
    notes = tmp_path / "trip notes for the long weekend at the harbour, with the ferry times.txt"
    notes.write_text("Trip notes. " + FACT, encoding="utf-8")
    binary = tmp_path / "ledger.txt"
    binary.write_bytes(bytes(range(256)) * 64)
    assert drop_files(window.composer.input.viewport(), [notes, binary])
    assert window.composer.chip_values() == [str(notes.resolve())]
    assert window.composer.chips.isVisible()
    assert "ledger.txt" in window.banner.label.text() and window.banner.isVisible()
    assert window.composer.input.toPlainText() == ""  # the path was not typed into the box
    shot(window, shots_dir / "chat-attached-800-light.png", 800)
    # × on the chip takes it off the chat (the file stays where it is)
    [chip] = chips(window)
    close = chip.findChild(type(window.composer.clip), "ChipClose")
    qtbot.mouseClick(close, Qt.MouseButton.LeftButton)
    assert window.composer.chip_values() == [] and not window.composer.chips.isVisible()
    assert notes.exists()
    assert not window.services.chat.documents(window.current_id)
    # Dropped on the messages (the empty page here) works the same.
    assert drop_files(window.empty_state, [notes])
    assert window.composer.chip_values() == [str(notes.resolve())]


def test_the_paperclip_uses_a_collection_and_its_chip_takes_it_off(qtbot, make_window, model, tmp_path, shots_dir):
    window = make_window(dark=True)
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\n" + FACT, encoding="utf-8")
    page = window.documents_page
    page.add_paths([str(notes)], "Harbour records")
    qtbot.waitUntil(lambda: not page.indexing, timeout=60_000)
    window.show_chat()
    window.composer._fill_menu()  # as the menu does when it opens
    [use] = [a.menu() for a in window.composer.menu.actions() if a.menu() is not None]
    [harbour] = [a for a in use.actions() if a.text() == "Harbour records"]
    assert harbour.isCheckable() and not harbour.isChecked()
    harbour.trigger()
    assert window.services.chat.documents(window.current_id).collections == ("Harbour records",)
    assert window.composer.chip_values() == ["Harbour records"]
    window.composer._fill_menu()
    [use] = [a.menu() for a in window.composer.menu.actions() if a.menu() is not None]
    assert [a.isChecked() for a in use.actions() if a.text() == "Harbour records"] == [True]
    menu = window.composer.menu
    menu.popup(window.composer.clip.mapToGlobal(window.composer.clip.rect().topLeft()))
    use.popup(menu.geometry().topRight())
    QApplication.processEvents()
    menu.grab().save(str(shots_dir / "chat-paperclip-menu-dark.png"))
    use.grab().save(str(shots_dir / "chat-paperclip-collections-dark.png"))
    use.hide()
    menu.hide()
    shot(window, shots_dir / "chat-collection-chip-1100-dark.png", 1100)
    [chip] = chips(window)
    qtbot.mouseClick(chip.findChild(type(window.composer.clip), "ChipClose"), Qt.MouseButton.LeftButton)
    assert window.services.chat.documents(window.current_id).collections == ()


@pytest.fixture
def far_standin(services):
    """The stand-in on this machine's network address, so to Hearth it is another host: words sent
    there leave this computer (a provider on 127.0.0.1 is the user's own and needs no asking)."""
    from tests.cloud_server import CloudServer, network_address

    address = network_address()
    if address is None:
        pytest.skip("this machine has no network address to stand in for another host")
    server = CloudServer(host=address)
    services.providers.add("standin", base_url=server.url + "/v1", own=True)
    services.providers.set_models("standin", list(server.models))
    yield server
    server.stop()


def test_a_cloud_model_asks_before_passages_leave_and_not_now_sends_nothing(qtbot, make_window, far_standin,
                                                                            tmp_path, model, shots_dir):
    standin = far_standin
    window = window_on_standin(make_window)
    assert window.selected_model_id() == STANDIN
    notes = tmp_path / "trip.txt"
    notes.write_text("Trip notes. " + FACT, encoding="utf-8")
    window.attach_files([str(notes)])
    window.composer.input.setPlainText("What is the cat's name?")
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
    box = window.findChild(QMessageBox, "DocumentsConsent")
    assert box is not None and box.isVisible()
    assert "Send passages from your documents to" in box.text()
    box.grab().save(str(shots_dir / "documents-consent-light.png"))
    [not_now] = [b for b in box.buttons() if b.text() == "Not now"]
    qtbot.mouseClick(not_now, Qt.MouseButton.LeftButton)
    assert standin.seen == []  # not a byte sent
    assert window.composer.input.toPlainText() == "What is the cat's name?"  # the question waits in the box
    assert "Nothing was sent" in window.banner.label.text()
    assert not [w for w in window.message_list.widgets() if w.role == "user"]
    # Send: the passages go, and this chat is not asked again for this provider.
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
    box = [b for b in window.findChildren(QMessageBox, "DocumentsConsent") if b.isVisible()][-1]
    [send_button] = [b for b in box.buttons() if b.text() == "Send"]
    qtbot.mouseClick(send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(standin.seen) and not window.answering, timeout=60_000)
    assert FACT in str(standin.seen[-1].body)
    assert not window.services.chat.documents_consent_needed(window.current_id)
