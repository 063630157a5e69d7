"""The Documents page in the real window: what documents are for before any are added, a folder of
real files (text, Markdown, a PDF, one file that cannot be read) added through the collection
question and indexed in the background with its progress line, each file's state, the failed
file's reason in full on hover, removing a collection (the files stay), and files dropped onto
the page. No embedding model is installed: search is keywords alone, and the page says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from desktop.ui.documents_page import KEYWORDS_ONLY, PRIVATE_TEXT, CollectionDialog, progress_line, time_left
from tests.core.test_docs_chat import FACT, FILLER, write_pdf

LONG_NAME = "Quarterly harbour board minutes and appendices, revised after the spring audit (final, signed copy).md"


def folder_of_documents(root: Path, count: int = 24) -> Path:
    """A folder as a user has one: notes in text and Markdown, a ten-page PDF with a fact on page
    3, a file with a very long name, and one 'text' file that is really binary."""
    folder = root / "Harbour records"
    folder.mkdir()
    for i in range(count):
        (folder / f"note-{i:02}.txt").write_text(f"Note {i}. " + FILLER * 6, encoding="utf-8")
    (folder / LONG_NAME).write_text("# Minutes\n\n" + FILLER * 4 + "\n\n## Appendix\n\n" + FILLER * 3, encoding="utf-8")
    pages = [f"Page {n} of the harbour records. " + FILLER * 4 for n in range(1, 11)]
    pages[2] = f"Page 3 of the harbour records. {FILLER} {FACT}"
    write_pdf(folder / "harbour.pdf", pages)
    (folder / "ledger-export.txt").write_bytes(bytes(range(256)) * 64)  # binary, named .txt
    return folder


def open_page(qtbot, window):
    qtbot.mouseClick(window.sidebar.documents_button, Qt.MouseButton.LeftButton)
    assert window.pages.currentWidget() is window.documents_page
    return window.documents_page


def answer_collection_question(qtbot, page, name: str) -> None:
    """Type `name` into the "Add to a collection" question and click Add."""
    def shown_dialogs():
        return [d for d in page.findChildren(CollectionDialog, "CollectionDialog") if d.isVisible()]

    qtbot.waitUntil(lambda: bool(shown_dialogs()))
    dialog = shown_dialogs()[-1]
    dialog.name.setCurrentText(name)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)


def shot(window, path: Path, width: int) -> None:
    window.resize(width, 720)
    QApplication.processEvents()
    window.grab().save(str(path))


def row_of(table, text: str) -> int:
    for row in range(table.rowCount()):
        if table.item(row, 0).text() == text:
            return row
    raise AssertionError(f"{text} is not in the table")


def test_time_left_and_the_progress_line_read_as_a_person_says_them():
    from desktop.core.docs.indexer import Progress

    line = progress_line(Progress(files_done=12, files_total=40, pages=318, passages=2140, failed=0,
                                  seconds_left=70, current="a.pdf"))
    assert line == "12 of 40 files · 318 pages · 2,140 passages · about 1 min left"
    assert time_left(None) == "" and time_left(20) == "less than a minute left"
    assert time_left(3 * 3600 + 600) == "about 3 h 10 min left"


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_before_any_document_the_page_says_what_they_do_and_that_they_stay_here(qtbot, make_window, model,
                                                                                  shots_dir, dark):
    window = make_window(dark=dark)
    page = open_page(qtbot, window)
    assert page.stack.currentWidget() is page.empty
    assert page.empty_private.text() == PRIVATE_TEXT and page.empty_private.isVisible()
    assert page.empty_keywords.isVisible() and page.empty_keywords.text() == KEYWORDS_ONLY
    theme = "dark" if dark else "light"
    for width in (1100, 800):
        shot(window, shots_dir / f"documents-empty-{width}-{theme}.png", width)


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_adding_a_folder_shows_progress_and_ends_with_every_file_indexed(qtbot, make_window, model, tmp_path,
                                                                         shots_dir, dark):
    folder = folder_of_documents(tmp_path)
    window = make_window(dark=dark)
    page = open_page(qtbot, window)
    seen: list[str] = []  # what the progress line said, as it was on screen
    watcher = QTimer(interval=5)
    watcher.timeout.connect(lambda: page.progress_card.isVisible() and seen.append(page.progress_text.text()))
    watcher.start()
    page.ask_collection([str(folder)])
    answer_collection_question(qtbot, page, "Harbour")
    qtbot.waitUntil(lambda: page.indexing, timeout=5_000)
    qtbot.waitUntil(lambda: not page.indexing, timeout=120_000)
    watcher.stop()
    files = 24 + 3
    assert any(line.startswith(f"1 of {files} files") or f" of {files} files ·" in line for line in seen), seen
    assert not page.progress_card.isVisible()  # nothing waits
    table = page.collections_table
    assert table.rowCount() == 1 and table.item(0, 0).text() == "Harbour"
    assert table.item(0, 1).text() == str(files) and int(table.item(0, 2).text().replace(",", "")) > files
    assert table.item(0, 3).text() == "1"  # the binary file
    states = {page.files_table.item(r, 0).text(): page.files_table.item(r, 1).text()
              for r in range(page.files_table.rowCount())}
    assert states["harbour.pdf"] == "Indexed" and states["ledger-export.txt"] == "Failed"
    assert [s for n, s in states.items() if n != "ledger-export.txt"] == ["Indexed"] * (files - 1)
    pdf = row_of(page.files_table, "harbour.pdf")
    assert page.files_table.item(pdf, 2).text() == "10"  # pages
    # The chat can search it now: the paperclip's menu lists it.
    assert window._collections_for_chat() == [("Harbour", False)]
    theme = "dark" if dark else "light"
    for width in (1100, 800):
        shot(window, shots_dir / f"documents-indexed-{width}-{theme}.png", width)


def test_a_failed_file_shows_its_reason_in_full_on_hover(qtbot, make_window, model, tmp_path, shots_dir):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "fine.md").write_text("# Fine\n\n" + FILLER, encoding="utf-8")
    (folder / "scan of the signed lease agreement, all pages, 2019.txt").write_bytes(bytes(range(256)) * 64)
    window = make_window()
    page = open_page(qtbot, window)
    page.add_paths([str(folder)], "Papers")
    qtbot.waitUntil(lambda: not page.indexing, timeout=60_000)
    table = page.files_table
    row = row_of(table, "scan of the signed lease agreement, all pages, 2019.txt")
    reason = page.index.files("Papers")
    [failed] = [f for f in reason if f.state == "failed"]
    assert failed.reason.startswith(f"“{failed.name}” is not text")
    assert table.item(row, 4).text().startswith("Is not text")  # the row already names the file
    assert table.item(row, 4).toolTip() == f"{failed.name}: {' '.join(failed.reason.split())}"
    assert table.item(row, 1).text() == "Failed"
    shot(window, shots_dir / "documents-failed-800-light.png", 800)


def test_stop_keeps_what_is_indexed_and_resume_finishes(qtbot, make_window, model, tmp_path, shots_dir):
    folder = folder_of_documents(tmp_path, count=60)
    window = make_window()
    page = open_page(qtbot, window)
    page.add_paths([str(folder)], "Harbour")
    qtbot.waitUntil(lambda: page.progress_bar.value() >= 2, timeout=60_000)
    assert page.progress_card.isVisible() and page.stop_button.isVisible()
    assert page.progress_title.text() == "Indexing “Harbour”…"
    assert " of 63 files · " in page.progress_text.text()
    window.grab().save(str(shots_dir / "documents-progress-1100-light.png"))
    qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.indexing, timeout=30_000)
    [harbour] = page._collections()
    assert harbour.waiting > 0 and harbour.passages > 0  # stopped part way, and what was read is kept
    assert page.progress_card.isVisible() and page.resume_button.isVisible()
    assert "not indexed yet" in page.progress_text.text()
    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.indexing and not page._collections()[0].waiting, timeout=120_000)
    assert not page.progress_card.isVisible()


def test_removing_a_collection_asks_and_leaves_the_files_on_disk(qtbot, make_window, model, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nSome notes.", encoding="utf-8")
    window = make_window()
    page = open_page(qtbot, window)
    page.add_paths([str(notes)], "Scratch")
    qtbot.waitUntil(lambda: not page.indexing, timeout=60_000)
    qtbot.mouseClick(page.remove_button, Qt.MouseButton.LeftButton)
    box = page.findChild(QMessageBox, "ConfirmRemoveCollection")
    assert box is not None and "Scratch" in box.text() and "stay where they are" in box.informativeText()
    [remove] = [b for b in box.buttons() if b.text() == "Remove"]
    qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)
    assert page.stack.currentWidget() is page.empty
    assert notes.exists()
    assert "untouched" in page.banner.label.text()


def test_files_dropped_onto_the_page_are_added_where_the_user_says(qtbot, make_window, model, tmp_path):
    notes = tmp_path / "trip.txt"
    notes.write_text("Trip notes. " + FACT, encoding="utf-8")
    window = make_window()
    page = open_page(qtbot, window)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(notes))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(page, drop)
    answer_collection_question(qtbot, page, "Travel")
    qtbot.waitUntil(lambda: not page.indexing and page.collection_names() == ["Travel"], timeout=60_000)
    qtbot.waitUntil(lambda: page.files_table.rowCount() == 1 and page.files_table.item(0, 1).text() == "Indexed",
                    timeout=60_000)


def test_files_a_killed_run_left_waiting_are_indexed_from_the_next_launch(qtbot, make_window, model, services,
                                                                          tmp_path):
    from desktop.core.docs.index import DocumentIndex

    folder = folder_of_documents(tmp_path, count=5)
    index = DocumentIndex(services.paths.data / "documents.db")
    index.add([str(folder)], "Harbour")  # registered, then the app was killed before reading them
    index.close()
    window = make_window()  # the Documents page is not opened
    qtbot.waitUntil(lambda: window._documents_page is not None, timeout=10_000)
    page = window.documents_page
    qtbot.waitUntil(lambda: not page.indexing and not page._collections()[0].waiting, timeout=60_000)
    [harbour] = page._collections()
    assert harbour.files == 8 and harbour.failed == 1 and harbour.passages > 0
