"""A person chatting in the real window: typing, streaming, stopping, regenerating, copying,
and what they read when the engine dies or a model file is broken."""

from __future__ import annotations

import gc
import os
import signal
import sys

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from tests.ui.conftest import set_sampling

LONG_WAIT = 60_000


def answers(window):
    return [w for w in window.message_list.widgets() if w.role == "assistant"]


def type_and_send(qtbot, window, text: str) -> None:
    qtbot.keyClicks(window.composer.input, text)
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)


def wait_until_idle(qtbot, window, timeout: int = LONG_WAIT) -> None:
    qtbot.waitUntil(lambda: not window.answering, timeout=timeout)


def test_typing_a_prompt_and_pressing_enter_streams_an_answer_that_is_saved(qtbot, window, shots_dir):
    set_sampling(window, max_tokens=40, seed=1)
    type_and_send(qtbot, window, "What is a hearth?")
    assert window.composer.input.toPlainText() == ""
    assert window.composer.generating
    wait_until_idle(qtbot, window)

    answer = answers(window)[-1]
    assert answer.text.strip()
    assert "tokens/s" in answer.meta.text() and "s to first token" in answer.meta.text()
    saved = window.services.store.messages(window.current_id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
    assert saved[0].content == "What is a hearth?"
    assert saved[1].content == answer.text
    assert window.sidebar.list.item(0).text() == "What is a hearth?"
    assert "ready" in window.engine_label.text()
    assert window.context_label.text().startswith("Context: ")
    assert "of 2,048 tokens" in window.context_label.text()
    assert window.memory_label.text().startswith("Memory: Hearth")
    assert not window.composer.generating
    window.grab().save(str(shots_dir / "chat-light.png"))


def test_shift_enter_starts_a_new_line_instead_of_sending(qtbot, window):
    qtbot.keyClicks(window.composer.input, "first line")
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer.input, "second line")
    assert window.composer.input.toPlainText() == "first line\nsecond line"
    assert window.services.store.messages(window.current_id) == []


def test_stop_ends_the_answer_at_once_and_keeps_what_arrived(qtbot, window):
    set_sampling(window, max_tokens=3000, temperature=0.8, seed=5)
    type_and_send(qtbot, window, "Write a very long story about the sea.")
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 80, timeout=LONG_WAIT)
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)  # the Send button is Stop now
    wait_until_idle(qtbot, window, timeout=5_000)

    saved = window.services.store.messages(window.current_id)[-1]
    assert saved.status == "stopped"
    assert saved.tokens_out < 3000
    assert answers(window)[-1].text == saved.content
    assert "stopped" in answers(window)[-1].meta.text()
    assert window.composer.button.accessibleName() == "Send"


def test_escape_stops_generation_too(qtbot, window):
    set_sampling(window, max_tokens=3000, seed=5)
    type_and_send(qtbot, window, "Count slowly to one thousand.")
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 20, timeout=LONG_WAIT)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    wait_until_idle(qtbot, window, timeout=5_000)
    assert window.services.store.messages(window.current_id)[-1].status == "stopped"


def test_regenerate_writes_the_last_answer_again(qtbot, window):
    set_sampling(window, max_tokens=16, temperature=1.0, seed=-1)
    type_and_send(qtbot, window, "Say something.")
    wait_until_idle(qtbot, window)
    first = window.services.store.messages(window.current_id)[-1]
    button = answers(window)[-1].regenerate_button
    assert button.isVisible()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    wait_until_idle(qtbot, window)
    saved = window.services.store.messages(window.current_id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[-1].id != first.id and saved[-1].status == "complete"
    assert len(answers(window)) == 1
    assert answers(window)[-1].text == saved[-1].content
    assert [v.id for v in window.services.store.versions(first.id)] == [first.id, saved[-1].id]  # kept


def test_an_answer_written_again_switches_between_its_versions(qtbot, window, shots_dir):
    set_sampling(window, max_tokens=16, temperature=1.0, seed=-1)
    type_and_send(qtbot, window, "Say something.")
    wait_until_idle(qtbot, window)
    first = window.services.store.messages(window.current_id)[-1]
    qtbot.mouseClick(answers(window)[-1].regenerate_button, Qt.MouseButton.LeftButton)
    wait_until_idle(qtbot, window)
    second = window.services.store.messages(window.current_id)[-1]
    answer = answers(window)[-1]
    assert answer.version_label.text() == "2 / 2" and answer.version_label.isVisible()
    qtbot.mouseClick(answer._earlier, Qt.MouseButton.LeftButton)
    assert answer.text == first.content and answer.version_label.text() == "1 / 2"
    assert not answer._earlier.isEnabled() and answer._later.isEnabled()
    window.grab().save(str(shots_dir / "chat-versions.png"))
    assert window.services.store.messages(window.current_id)[-1].id == first.id  # shown, and sent next
    window.open_conversation(window.current_id)  # as after a restart
    assert answers(window)[-1].text == first.content and answers(window)[-1].version_label.text() == "1 / 2"
    qtbot.mouseClick(answers(window)[-1]._later, Qt.MouseButton.LeftButton)
    assert answers(window)[-1].text == second.content
    assert window.services.store.messages(window.current_id)[-1].id == second.id


def test_regenerate_with_the_engine_killed_shows_the_complete_answer_again(qtbot, window):
    set_sampling(window, max_tokens=16, seed=1)
    type_and_send(qtbot, window, "Write a very long story about the sea.")
    wait_until_idle(qtbot, window)
    first = window.services.store.messages(window.current_id)[-1]
    set_sampling(window, max_tokens=3000, seed=5)
    qtbot.mouseClick(answers(window)[-1].regenerate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 100, timeout=LONG_WAIT)
    os.kill(window.services.engine.pid, signal.SIGKILL)
    wait_until_idle(qtbot, window)
    assert [a.text for a in answers(window)] == [first.content]
    assert window.services.store.messages(window.current_id)[-1] == first
    assert "killed (SIGKILL)" in window.banner.label.text()
    assert "The earlier answer is kept." in window.banner.label.text()
    assert offering_write_again(window) == [1]


def test_a_chat_left_and_opened_again_while_its_answer_is_written_again_shows_the_new_one(qtbot, window):
    set_sampling(window, max_tokens=16, seed=1)
    type_and_send(qtbot, window, "Write a very long story about the sea.")
    wait_until_idle(qtbot, window)
    chat = window.current_id
    first = window.services.store.messages(chat)[-1]
    set_sampling(window, max_tokens=200, seed=5)
    qtbot.mouseClick(answers(window)[-1].regenerate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 40, timeout=LONG_WAIT)
    window.new_chat()
    window.open_conversation(chat)
    assert len(answers(window)) == 1 and answers(window)[-1].text != first.content  # the one being written
    wait_until_idle(qtbot, window)
    current = window.services.store.messages(chat)[-1]
    assert current.id != first.id and current.replaces == first.id
    assert [a.text for a in answers(window)] == [current.content]


def test_copy_puts_the_answer_on_the_clipboard(qtbot, window):
    set_sampling(window, max_tokens=12, seed=2)
    type_and_send(qtbot, window, "Give me a word.")
    wait_until_idle(qtbot, window)
    answer = answers(window)[-1]
    qtbot.mouseClick(answer.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == answer.text
    assert answer.meta.text() == "Copied"


def test_a_killed_engine_is_explained_and_the_next_message_brings_it_back(qtbot, window):
    set_sampling(window, max_tokens=3000, seed=4)
    type_and_send(qtbot, window, "Tell me everything about volcanoes.")
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 40, timeout=LONG_WAIT)
    os.kill(window.services.engine.pid, signal.SIGKILL)
    wait_until_idle(qtbot, window)

    assert window.banner.isVisible()
    assert "was killed (SIGKILL)" in window.banner.label.text()
    assert "Your conversation is kept" in window.banner.label.text()
    broken = answers(window)[-1]
    assert broken.error.isVisible() and "killed" in broken.error.text()
    assert len(broken.text) > 40  # what arrived before the crash is still there

    set_sampling(window, max_tokens=12, seed=4)
    type_and_send(qtbot, window, "Are you there?")
    wait_until_idle(qtbot, window)
    saved = window.services.store.messages(window.current_id)
    assert [m.content for m in saved if m.role == "user"] == [
        "Tell me everything about volcanoes.", "Are you there?"]
    assert saved[-1].status == "complete" and saved[-1].content
    assert "ready" in window.engine_label.text()


def test_an_engine_that_dies_while_idle_is_noticed(qtbot, window):
    set_sampling(window, max_tokens=8, seed=1)
    type_and_send(qtbot, window, "Hi")
    wait_until_idle(qtbot, window)
    os.kill(window.services.engine.pid, signal.SIGKILL)
    qtbot.waitUntil(window.banner.isVisible, timeout=5_000)
    assert "killed" in window.banner.label.text()
    assert "stopped" in window.engine_label.text()


def test_a_model_file_broken_after_import_gets_a_sentence_not_a_crash(qtbot, window, model_file, tmp_path):
    import shutil
    from dataclasses import replace

    copy = shutil.copy(model_file, tmp_path / "soon-broken.gguf")
    store = window.services.store
    store.remove_model("smollm2-135m-instruct-q4_1")
    store.add_model(replace(window.services.library.resolve(str(copy)), id="soon-broken",
                            origin="linked", sha256="x"))
    with open(copy, "r+b") as fh:
        fh.truncate(20_000_000)
    window.refresh_models(select="soon-broken")
    type_and_send(qtbot, window, "Hello?")
    wait_until_idle(qtbot, window)
    assert "ends early: it is 20.0 MB of 98.4 MB" in window.banner.label.text()
    saved = store.messages(window.current_id)
    assert saved[0].content == "Hello?"
    assert saved[-1].status == "error"
    assert window.isVisible()


def test_importing_broken_files_explains_what_is_wrong(qtbot, window, model_file, tmp_path):
    text = tmp_path / "readme.gguf"
    text.write_text("hello")
    cut = tmp_path / "partial.gguf"
    cut.write_bytes(model_file.read_bytes()[:1_000_000])
    for path, words in ((text, "not a GGUF model file"), (cut, "ends early")):
        window.banner.hide()
        window.spawn(window.import_path(str(path)))
        qtbot.waitUntil(window.banner.isVisible, timeout=10_000)
        assert words in window.banner.label.text()
        assert "Traceback" not in window.banner.label.text()
    assert [m.id for m in window.services.library.models()] == ["smollm2-135m-instruct-q4_1"]


def test_a_full_disk_keeps_the_message_in_the_box_and_says_so(qtbot, window):
    store = window.services.store
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now reports a full disk
    words = "A long message I do not want to lose. " * 200
    window.composer.input.setPlainText(words)
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)
    qtbot.waitUntil(window.banner.isVisible, timeout=5_000)
    assert "The disk is full" in window.banner.label.text()
    assert "still in the box" in window.banner.label.text()
    assert window.composer.input.toPlainText() == words.strip()
    assert window.message_list.widgets() == []
    assert not window.composer.generating
    store._db.execute("PRAGMA max_page_count = 1073741823")  # space freed: sending works again
    set_sampling(window, max_tokens=8, seed=1)
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)
    wait_until_idle(qtbot, window)
    assert store.messages(window.current_id)[0].content == words.strip()


def test_quitting_the_app_stops_the_engine(qtbot, window):
    import psutil

    set_sampling(window, max_tokens=8, seed=1)
    type_and_send(qtbot, window, "Hi")
    wait_until_idle(qtbot, window)
    engine = psutil.Process(window.services.engine.pid)
    window.close()
    engine.wait(timeout=10)
    assert not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE


def test_a_chat_longer_than_the_context_still_answers_and_says_what_no_longer_fits(qtbot, window):
    from dataclasses import replace

    from desktop.core.settings import LoadOptions

    store = window.services.store
    filler = "The quick brown fox jumps over the lazy dog. " * 12
    for _ in range(5):
        store.add_message(window.current_id, "user", filler)
        store.add_message(window.current_id, "assistant", filler)
    window.services.settings = replace(window.services.settings, load=LoadOptions(n_ctx=512, n_threads=2))
    set_sampling(window, max_tokens=24, seed=1)
    type_and_send(qtbot, window, "And in one word?")
    wait_until_idle(qtbot, window)
    assert store.messages(window.current_id)[-1].status == "complete"
    label = window.context_label.text()
    assert "of 512 tokens" in label and "oldest" in label and "no longer fit" in label


def offering_write_again(window) -> list[int]:
    """The places in the chat (0 = the first message) of the answers showing "Write this answer again"
    (or showing it as soon as the message itself is drawn)."""
    return [i for i, w in enumerate(window.message_list.widgets())
            if w.role == "assistant" and not w.regenerate_button.isHidden()]


def test_write_again_is_offered_on_the_last_answer_only_once_it_has_ended(qtbot, window):
    set_sampling(window, max_tokens=12, seed=1)
    type_and_send(qtbot, window, "Say hello.")
    assert offering_write_again(window) == []  # the model is still loading
    wait_until_idle(qtbot, window)
    assert offering_write_again(window) == [1]

    set_sampling(window, max_tokens=3000, seed=5)
    type_and_send(qtbot, window, "Write a very long story about the sea.")
    assert offering_write_again(window) == []
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 40, timeout=LONG_WAIT)
    assert offering_write_again(window) == []  # neither the earlier answer nor the one being written
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    wait_until_idle(qtbot, window, timeout=5_000)
    assert window.services.store.messages(window.current_id)[-1].status == "stopped"
    assert offering_write_again(window) == [3]

    qtbot.mouseClick(answers(window)[-1].regenerate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 40, timeout=LONG_WAIT)
    assert offering_write_again(window) == []
    os.kill(window.services.engine.pid, signal.SIGKILL)
    wait_until_idle(qtbot, window)
    assert window.services.store.messages(window.current_id)[-1].status == "error"
    assert offering_write_again(window) == [3]  # a failed answer can be written again too


def test_a_stopped_or_failed_answer_leaves_nothing_on_the_terminal(qtbot, window, capfd, monkeypatch):
    # Clean-up that Python could not finish (an answer's HTTP stream left open when the answer
    # ended early) is printed on stderr, which a user who started Hearth from a terminal reads.
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # printed, as outside pytest
    set_sampling(window, max_tokens=3000, seed=5)
    type_and_send(qtbot, window, "Write a very long story about the sea.")
    qtbot.waitUntil(lambda: len(answers(window)[-1].text) > 40, timeout=LONG_WAIT)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    wait_until_idle(qtbot, window, timeout=5_000)
    assert window.services.store.messages(window.current_id)[-1].status == "stopped"

    # Far more tokens than letters: the model fails while reading it, after the answer has begun.
    window.composer.input.setPlainText("\U0001d518" * 900)
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)
    wait_until_idle(qtbot, window)
    assert window.services.store.messages(window.current_id)[-1].status == "error"
    gc.collect()
    printed = capfd.readouterr().err
    assert "Exception ignored" not in printed
    assert "Traceback" not in printed
