"""The conversation list, search, settings panel and first-run states of the real window."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QSignalBlocker, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QMessageBox

from desktop.core.settings import Sampling
from tests.ui.conftest import set_sampling


def _seed_chats(store):
    trip = store.create_conversation(title="Weekend in Lisbon")
    store.add_message(trip.id, "user", "Which trams go to the castle?")
    store.add_message(trip.id, "assistant", "Tram 28 climbs to the castle hill.")
    cooking = store.create_conversation(title="Tomato soup")
    store.add_message(cooking.id, "user", "How long do I simmer the tomatoes?")
    return trip, cooking


def test_search_finds_a_message_in_any_chat_and_opens_it(qtbot, services, model, make_window):
    trip, cooking = _seed_chats(services.store)
    window = make_window()
    qtbot.keyClicks(window.sidebar.search, "tram castle")
    qtbot.waitUntil(lambda: "castle" in window.sidebar.list.item(0).text(), timeout=2_000)
    assert window.sidebar.list.count() == 2
    assert all(window.sidebar.list.item(i).text().startswith("Weekend in Lisbon")
               for i in range(window.sidebar.list.count()))
    item = window.sidebar.list.item(0)
    qtbot.mouseClick(window.sidebar.list.viewport(), Qt.MouseButton.LeftButton,
                     pos=window.sidebar.list.visualItemRect(item).center())
    assert window.current_id == trip.id
    assert "Tram 28" in window.message_list.widgets()[-1].text
    window.sidebar.search.clear()
    titles = lambda: {window.sidebar.list.item(i).text() for i in range(window.sidebar.list.count())}  # noqa: E731
    qtbot.waitUntil(lambda: titles() == {"Weekend in Lisbon", "Tomato soup"}, timeout=2_000)


def test_searching_for_nothing_found_says_so(qtbot, services, model, make_window):
    _seed_chats(services.store)
    window = make_window()
    qtbot.keyClicks(window.sidebar.search, "zeppelin")
    qtbot.waitUntil(lambda: window.sidebar.empty.isVisible(), timeout=2_000)
    assert window.sidebar.empty.text() == "Nothing found."


def test_new_rename_and_delete_a_chat(qtbot, services, model, make_window):
    trip, cooking = _seed_chats(services.store)
    window = make_window()
    assert window.current_id == cooking.id  # the most recent chat opens at start
    window.sidebar.new_button.click()
    fresh = window.current_id
    assert fresh not in (trip.id, cooking.id)
    assert window.stack.currentWidget() is window.empty_state
    window.open_conversation(trip.id)  # an untouched new chat is not left behind
    assert sorted(c.id for c in services.store.conversations()) == sorted([cooking.id, trip.id])

    item = next(window.sidebar.list.item(i) for i in range(window.sidebar.list.count())
                if window.sidebar.list.item(i).text() == "Weekend in Lisbon")
    item.setText("Lisbon, May")
    assert services.store.conversation(trip.id).title == "Lisbon, May"

    def answer_dialog(text: str) -> None:
        box = window.findChild(QMessageBox, "ConfirmDelete")
        assert "Lisbon, May" in box.text()
        button = next(b for b in box.buttons() if b.text().replace("&", "") == text)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.findChild(QMessageBox, "ConfirmDelete") is None, timeout=2_000)

    window.confirm_delete(trip.id)
    answer_dialog("Cancel")
    assert services.store.conversation(trip.id)
    window.confirm_delete(trip.id)
    answer_dialog("Delete")
    assert [c.id for c in services.store.conversations()] == [cooking.id]
    assert services.store.search("tram") == []
    assert window.current_id == cooking.id


def test_a_new_chat_is_listed_under_its_first_message_as_soon_as_it_is_sent(qtbot, services, model, make_window):
    trip, _cooking = _seed_chats(services.store)
    window = make_window()
    window.sidebar.new_button.click()
    fresh = window.current_id

    def listed(conversation_id: int) -> str:
        return next(window.sidebar.list.item(i).text() for i in range(window.sidebar.list.count())
                    if window.sidebar.list.item(i).data(Qt.ItemDataRole.UserRole) == conversation_id)

    assert listed(fresh) == "New chat"
    set_sampling(window, max_tokens=8, seed=1)
    window.composer.input.setPlainText("Why does the sky look blue at noon and red at sunset, and is it the same on Mars?")
    qtbot.keyClick(window.composer.input, Qt.Key.Key_Return)
    title = "Why does the sky look blue at noon and red at s…"
    assert window.answering  # the model is still loading: not a word of the answer yet
    assert listed(fresh) == title
    assert window.windowTitle() == f"{title} — Hearth"
    assert listed(trip.id) == "Weekend in Lisbon"
    qtbot.waitUntil(lambda: not window.answering, timeout=60_000)
    assert listed(fresh) == title
    assert services.store.conversation(fresh).title == title


def test_settings_changed_in_the_panel_belong_to_the_chat(qtbot, services, model, make_window):
    window = make_window()
    window.toggle_settings()
    panel = window.settings_panel
    assert panel.isVisible()
    panel.temperature.setValue(0.25)
    panel.max_tokens.setValue(200)
    panel.system_prompt.setPlainText("Answer like a pirate.")
    panel.flush()
    saved = services.store.conversation(window.current_id)
    assert saved.system_prompt == "Answer like a pirate."
    assert Sampling.from_dict(saved.sampling).temperature == 0.25
    assert Sampling.from_dict(saved.sampling).max_tokens == 200

    panel.default_button.click()
    assert services.settings.sampling.temperature == 0.25
    window.new_chat()
    assert services.store.conversation(window.current_id).system_prompt == "Answer like a pirate."

    panel.n_ctx.setValue(1024)
    assert services.settings.load.n_ctx == 1024
    assert services.settings_file.load().load.n_ctx == 1024


def test_the_window_shows_the_chat_first_and_builds_its_hidden_parts_right_after(qtbot, services, make_window):
    pirate = services.store.create_conversation(title="Pirates", system_prompt="Answer like a pirate.",
                                                sampling={"temperature": 0.3})
    services.store.add_message(pirate.id, "user", "Where is the treasure?")
    window = make_window()  # shown: its first drawing is done
    assert window.current_id == pirate.id
    assert window.message_list.widgets()[0].text == "Where is the treasure?"
    # The settings panel, model manager and Compare page are built on the next turns of the loop,
    # and the panel shows the open chat's own settings, not the defaults.
    qtbot.waitUntil(window.hidden_parts_built, timeout=5_000)
    assert window.settings_panel.system_prompt.toPlainText() == "Answer like a pirate."
    assert window.settings_panel.temperature.value() == 0.3
    assert not window.settings_panel.isVisible()
    window.toggle_settings()
    qtbot.waitUntil(window.settings_panel.isVisible)
    boxes = window.settings_panel.findChildren(QAbstractSpinBox)
    assert len(boxes) >= 8
    for box in boxes:  # every number can be read: its field is as wide as its text at least
        field = box.lineEdit()
        assert box.text() and field.width() >= field.fontMetrics().horizontalAdvance(box.text()), box.text()
    window.show_models()
    assert window.pages.currentWidget() is window.models_page
    window.notify("The hub did not answer.")
    assert window.models_page.banner.label.text() == "The hub did not answer."
    window.show_chat()
    window.notify("The engine stopped.")
    assert window.banner.label.text() == "The engine stopped."


def test_with_no_model_the_window_says_how_to_add_one(qtbot, services, make_window, shots_dir):
    window = make_window()
    assert window.stack.currentWidget() is window.empty_state
    assert window.empty_state.import_button.isVisible()
    assert window.empty_state.title.text() == "Add a model to begin"
    assert not window.model_combo.isEnabled()
    window.send("hello")
    assert "Import a model first" in window.banner.label.text()
    window.grab().save(str(shots_dir / "first-run.png"))


def test_importing_a_model_makes_it_ready_to_chat(qtbot, services, make_window, model_file):
    window = make_window()
    window.spawn(window.import_path(str(model_file)))
    qtbot.waitUntil(lambda: window.model_combo.isEnabled(), timeout=20_000)
    assert window.model_combo.currentText().startswith("SmolLM2-135M-Instruct")
    assert "Added SmolLM2-135M-Instruct" in window.banner.label.text()
    assert window.empty_state.suggestions[0].isVisible()
    qtbot.waitUntil(lambda: "ready" in window.engine_label.text(), timeout=30_000)


def test_dark_mode_draws_a_dark_window(qtbot, services, model, make_window, shots_dir):
    _seed_chats(services.store)
    window = make_window(dark=True)
    image = window.grab().toImage()
    image.save(str(shots_dir / "chat-dark.png"))
    background = image.pixelColor(image.width() // 2, image.height() // 3)
    assert background.lightness() < 60
    text_color = window.palette().color(window.palette().ColorRole.WindowText)
    assert text_color.lightness() > 200


def _long_chat(store, pairs: int):
    chat = store.create_conversation(title="A long chat")
    for i in range(pairs):
        store.add_message(chat.id, "user", f"Question {i}")
        store.add_message(chat.id, "assistant", f"Answer {i}")
    return chat


def test_a_long_chat_opens_with_its_newest_messages_and_shows_earlier_ones_on_request(
        qtbot, services, model, make_window):
    from desktop.ui.main_window import FIRST_PAGE, PAGE

    _long_chat(services.store, 75)  # 150 messages
    window = make_window()
    shown = lambda: [w.text for w in window.message_list.widgets()]  # noqa: E731
    assert len(shown()) == FIRST_PAGE
    assert shown()[-1] == "Answer 74"
    button = window.message_list.earlier_button
    assert button.isVisible() and "130 more" in button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert len(shown()) == FIRST_PAGE + PAGE and "70 more" in button.text()
    bar = window.message_list.verticalScrollBar()
    qtbot.wait(100)  # laid out, as it is by the time anyone scrolls
    reading = window.message_list.widgets()[0]
    at_the_top = reading.mapTo(window.message_list.widget(), QPoint(0, 0)).y()  # where the reader sees it
    bar.setValue(0)  # scrolling to the top brings the next ones, a few at a time...
    qtbot.waitUntil(lambda: len(shown()) > FIRST_PAGE + PAGE and bar.value() >= bar.pageStep(), timeout=5_000)
    # ...above the message being read, which stays where it was: the reader can scroll on up
    assert reading.mapTo(window.message_list.viewport(), QPoint(0, 0)).y() == at_the_top
    assert f"{150 - len(shown())} more" in button.text()
    # At the very top the bar cannot move, yet scrolling up there brings more too.
    with QSignalBlocker(bar):
        bar.setValue(0)
    before = len(shown())
    wheel = QWheelEvent(QPointF(50, 50), QPointF(50, 50), QPoint(0, 0), QPoint(0, 120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(window.message_list.viewport(), wheel)
    assert len(shown()) > before
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # and the button brings a page at once
    assert shown()[0] == "Question 0" and len(shown()) == 150
    assert not button.isVisible()
    assert shown() == [m.content for m in services.store.messages(window.current_id)]


def test_a_search_hit_far_back_in_a_long_chat_is_shown(qtbot, services, model, make_window):
    chat = _long_chat(services.store, 100)
    window = make_window()
    hit = services.store.search("Question 3")[0]
    assert hit.conversation_id == chat.id
    window.open_conversation(chat.id, focus_message=hit.message_id)
    texts = [w.text for w in window.message_list.widgets()]
    assert texts[0] == services.store.message(hit.message_id).content
    assert texts[-1] == "Answer 99"


def test_every_message_shows_all_of_its_text_whatever_the_window_width(qtbot, services, model, make_window):
    # Finished messages keep a fixed height for the column's width (measured once, not on every
    # layout): when the width changes, or messages come in above, each must still fit its text.
    chat = services.store.create_conversation(title="Wrapping")
    for i in range(40):
        services.store.add_message(chat.id, "user", f"Question {i}: " + "why is the sky blue? " * 6)
        services.store.add_message(chat.id, "assistant", f"Answer {i}: " + "light scatters off the air. " * 12)
    window = make_window()
    window.open_conversation(chat.id)
    window.show_earlier()  # some messages in a page above, some in the column

    def cut_or_padded():
        return [w.text[:12] for w in window.message_list.widgets()
                if w.height() != w.layout().totalHeightForWidth(w.width())]

    qtbot.waitUntil(lambda: not cut_or_padded(), timeout=3_000)
    for width in (760, 1400, 980):
        window.resize(width, 720)
        qtbot.waitUntil(lambda: not cut_or_padded(), timeout=3_000)
    window.show_earlier()
    qtbot.waitUntil(lambda: not cut_or_padded(), timeout=3_000)
    assert len(window.message_list.widgets()) == 80
