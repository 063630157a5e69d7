"""Compare & cloud in the real window: add a provider (with the consent question), compare the
local model with a cloud one blind, vote, see the leaderboard and where the words went, export,
chat with a cloud model, offline mode from the status bar. The cloud is the stand-in server on
this machine's network address."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from desktop.core import net, secrets
from desktop.core.chat import LiveAnswer
from desktop.core.settings import Sampling
from tests.cloud_server import ANSWER, CloudServer, network_address

ADDRESS = network_address()
pytestmark = pytest.mark.skipif(ADDRESS is None, reason="this machine has no network address")


@pytest.fixture
def server():
    s = CloudServer(host=ADDRESS)
    net.set_offline(False)
    yield s
    s.stop()
    net.set_offline(False)


def add_standin(qtbot, page, server):
    page.tabs.setCurrentIndex(3)
    page.preset.setCurrentIndex(page.preset.findData("custom"))
    page.provider_name.setText("standin")
    page.provider_url.setText(server.url + "/v1")
    page.provider_key.setText("sk-test-ui")
    qtbot.mouseClick(page.add_provider_button, Qt.MouseButton.LeftButton)
    box = page.findChild(QMessageBox, "ConfirmProvider")
    assert "Words you send to standin leave this computer." == box.text()
    assert f"go to {ADDRESS}:" in box.informativeText()
    assert server.seen == []  # nothing is sent before the user agrees
    qtbot.mouseClick(next(b for b in box.buttons() if b.text() == "Add and allow"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.provider_table.rowCount() == 1 and page.provider_table.item(0, 4).text() == "2",
                    timeout=10_000)


def test_compare_a_local_and_a_cloud_model_blind_then_vote(qtbot, make_window, model, services, server, shots_dir,
                                                             tmp_path):
    window = make_window(sampling=Sampling(temperature=0.0, max_tokens=24, seed=3))
    qtbot.mouseClick(window.cloud_button, Qt.MouseButton.LeftButton)
    page = window.cloud_page
    assert window.pages.currentWidget() is page
    add_standin(qtbot, page, server)
    assert page.provider_table.item(0, 3).text() == ADDRESS and page.provider_table.item(0, 2).text() == "set"
    window.grab().save(str(shots_dir / "cloud-providers.png"))

    page.tabs.setCurrentIndex(4)  # Prices: count the electricity of local answers
    page.watts.setText("60")
    page.kwh_price.setText("0.30")
    page.set_electricity()
    assert (services.settings.electricity_watts, services.settings.electricity_price_kwh) == (60.0, 0.30)

    page.tabs.setCurrentIndex(0)
    page.pickers[0].setCurrentIndex(page.pickers[0].findData(model.id))
    page.pickers[1].setCurrentIndex(page.pickers[1].findData("standin/gpt-4o-mini"))
    page.blind.setChecked(True)
    page._show_columns()
    assert [page.columns[i].title.text() for i in range(2)] == ["A", "B"]
    assert not page.columns[2].isVisible()
    page.composer.input.setPlainText("Name a colour.")
    qtbot.mouseClick(page.composer.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.session is not None and not page.busy, timeout=60_000)
    texts = [page.columns[i].text for i in range(2)]
    assert all("Name a colour." in t for t in texts) and any("".join(ANSWER) in t for t in texts)
    assert [page.columns[i].title.text() for i in range(2)] == ["A", "B"]  # still hidden
    # speed, cost and where the words went would give the models away: hidden until the vote
    assert [page.columns[i].figures.text() for i in range(2)] == ["Figures appear after your vote."] * 2
    assert [page.columns[i].where.text() for i in range(2)] == ["", ""]
    assert page.vote_bar.isVisible() and not page.vote_buttons["C"].isVisible()
    window.grab().save(str(shots_dir / "cloud-compare-blind.png"))

    a_target = page.session.comparison.targets[0]
    qtbot.mouseClick(page.vote_buttons["A"], Qt.MouseButton.LeftButton)
    assert not page.vote_bar.isVisible()
    assert page.banner.label.text().startswith("Thanks. A was ")
    assert page.columns[0].title.text() != "A"  # revealed
    wheres = sorted(page.columns[i].where.text() for i in range(2))
    assert wheres[0].endswith(f"sent to {ADDRESS}") and wheres[1] == "stayed on this machine"
    local = next(i for i in range(2) if page.columns[i].where.text() == "stayed on this machine")
    assert "of electricity" in page.columns[local].figures.text()
    assert page.board.rowCount() == 2 and page.board.item(0, 1).toolTip() == a_target
    assert page.board.item(0, 4).text() == "100%" and page.board.item(1, 4).text() == "0%"
    window.grab().save(str(shots_dir / "cloud-compare-voted.png"))

    page.tabs.setCurrentIndex(2)
    assert f"sent to {ADDRESS}" in page.data_summary.text()
    assert page.left.rowCount() == 1 and page.left.item(0, 1).text() == ADDRESS
    window.grab().save(str(shots_dir / "cloud-data.png"))

    out = tmp_path / "comparison.md"
    page.export_to(out)
    assert "Name a colour." in out.read_text() and "**Vote:** A was better" in out.read_text()

    dark = make_window(dark=True)  # the saved comparison reopens, in dark mode
    dark.show_cloud()
    dark.cloud_page.open_comparison(page.session.comparison.id)
    assert dark.cloud_page.columns[1].text == page.columns[1].text
    dark.grab().save(str(shots_dir / "cloud-compare-dark.png"))


def test_chat_with_a_cloud_model_says_where_the_words_go_and_offline_mode_stops_it(qtbot, make_window, model,
                                                                                  services, server, shots_dir):
    window = make_window()
    window.show_cloud()
    add_standin(qtbot, window.cloud_page, server)
    window.show_chat()
    index = window.model_combo.findData("standin/gpt-4o-mini")
    assert index > 0 and window.model_combo.itemText(index) == "standin   ·   gpt-4o-mini"
    window.model_combo.setCurrentIndex(index)
    window._model_chosen(index)
    assert f"Your words go to {ADDRESS} (standin)" in window.where_note.text()
    assert services.settings.last_model != "standin/gpt-4o-mini"  # new chats stay local
    server.next = ["429:1"]  # the provider says: wait a second
    window.composer.input.setPlainText("What is the capital of France?")
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
    answer = window.message_list.widgets()[-1]
    qtbot.waitUntil(lambda: answer.meta.text() == "Waiting 1 s (rate limit), then trying again…", timeout=10_000)
    qtbot.waitUntil(lambda: not window.answering, timeout=30_000)
    assert answer.text == "".join(ANSWER)
    assert f"sent to {ADDRESS}" in answer.meta.text() and "< $0.0001" in answer.meta.text()  # 21 + 7 tokens
    window.grab().save(str(shots_dir / "cloud-chat.png"))

    qtbot.mouseClick(window.offline_button, Qt.MouseButton.LeftButton)
    assert net.offline() and services.settings.offline and window.offline_button.text() == "Offline"
    assert window.cloud_page.offline.isChecked()
    before = server.connections
    window.composer.input.setPlainText("And of Italy?")
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.answering, timeout=30_000)
    assert "Offline mode is on" in window.banner.label.text() and server.connections == before
    qtbot.mouseClick(window.offline_button, Qt.MouseButton.LeftButton)
    assert not net.offline() and not replace(services.settings).offline


def test_a_password_pasted_into_the_address_never_shows_and_never_reaches_the_providers_file(
        qtbot, make_window, services, server):
    password = "hunter2-in-the-address"
    secrets.forget("standin")  # an earlier test's key lives on in this process's memory (no keyring here)
    window = make_window()
    window.show_cloud()
    page = window.cloud_page
    page.tabs.setCurrentIndex(3)
    page.preset.setCurrentIndex(page.preset.findData("custom"))
    page.provider_name.setText("standin")
    page.provider_url.setText(server.url.replace("://", f"://me:{password}@") + "/v1?api-version=2024-05-01")
    qtbot.mouseClick(page.add_provider_button, Qt.MouseButton.LeftButton)
    box = page.findChild(QMessageBox, "ConfirmProvider")
    assert f"go to {ADDRESS}:" in box.informativeText() and password not in box.informativeText()
    qtbot.mouseClick(next(b for b in box.buttons() if b.text() == "Add and allow"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.provider_table.rowCount() == 1 and page.provider_table.item(0, 4).text() == "2",
                    timeout=10_000)
    assert page.provider_table.item(0, 1).text() == server.url + "/v1?api-version=2024-05-01"
    assert page.provider_table.item(0, 2).text() == "set"  # the password became its key
    assert password not in page.provider_url.text()
    assert server.seen[-1].headers["authorization"] == f"Bearer {password}"
    assert server.seen[-1].path == "/v1/models?api-version=2024-05-01"
    assert password not in (services.paths.config / "providers.json").read_text()


WIDE_TABLE = ("| " + " | ".join(f"column {i}" for i in range(30)) + " |\n"
              "|" + "---|" * 30 + "\n"
              "| " + " | ".join(f"value {i}" for i in range(30)) + " |\n")
CODE = 'def greet(name: str) -> str:\n    return f"Hello, {name}!"  # ' + "a long comment " * 12
ANSWER_WITH_BLOCKS = (f"Here is the code:\n\n```python\n{CODE}\n```\n\nAnd a wide table:\n\n{WIDE_TABLE}\n"
                      "Its area is \\( \\pi r^2 \\), and [the docs](https://example.com/docs) say more.")


def _saved_comparison(services, answers: list[str], prompt: str = "Show me code and a table.", blind: bool = False) -> int:
    """A comparison as the store keeps it once answered: one conversation per column."""
    store = services.store
    conversations = []
    for text in answers:
        conversation = store.create_conversation(prompt)
        store.add_message(conversation.id, "user", prompt)
        store.add_message(conversation.id, "assistant", text, status="complete")
        conversations.append(conversation.id)
    targets = ["standin/gpt-4o-mini", "standin/gpt-4o"][:len(answers)]
    return store.create_comparison(prompt, targets, conversations, blind=blind).id


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_a_compare_column_draws_code_with_its_own_copy_button_and_a_wide_table_that_scrolls(
        qtbot, make_window, services, shots_dir, dark):
    window = make_window(dark=dark)
    window.show_cloud()
    page = window.cloud_page
    page.open_comparison(_saved_comparison(services, [ANSWER_WITH_BLOCKS, "Just **prose** here."]))
    qtbot.wait(50)
    width = window.width()
    column = page.columns[0]
    [answer] = column.answers()
    [code] = answer.code_blocks()
    assert code.language_label.text() == "python" and code.copy_button.isVisible()
    assert code.colours.lines  # coloured by pygments
    assert code.view.horizontalScrollBar().maximum() > 0  # the long line scrolls inside its block

    [table] = answer.table_blocks()
    bar = table.horizontalScrollBar()
    assert bar.maximum() > 0 and table.width() <= column.body.viewport().width()
    bar.setValue(bar.maximum())  # the last column can be reached
    assert bar.value() == bar.maximum()
    assert window.width() == width and column.width() < 600  # nothing widened the window or the column
    assert column.body.horizontalScrollBar().maximum() == 0  # the column itself only scrolls up and down
    assert answer.labels()[-1].text().count('src="data:image/png') == 1  # math typeset
    assert "You: Show me code and a table." in column.text and "Just **prose** here." in page.columns[1].text
    window.grab().save(str(shots_dir / f"compare-code-table-{'dark' if dark else 'light'}.png"))
    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(code.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == CODE  # exactly as written
    assert code.copy_button.text() == "Copied"

    window.resize(800, 720)  # narrower: every answer is measured again, nothing cut off
    qtbot.waitUntil(lambda: all(view.height() >= view.heightForWidth(view.width())
                                for c in page.columns[:2] for view in c.answers()), timeout=2000)
    assert window.width() == 800 and table.horizontalScrollBar().maximum() > 0


def test_a_streaming_compare_answer_draws_only_its_last_block_again(qtbot, make_window, services):
    window = make_window()
    window.show_cloud()
    page = window.cloud_page
    comparison = _saved_comparison(services, ["x"])
    page.open_comparison(comparison)
    column = page.columns[0]
    [prompt, answer] = services.store.messages(services.store.comparison(comparison).conversations[0])
    streaming = replace(answer, status="streaming")
    live = LiveAnswer(message_id=answer.id)
    column.show_turns("A", [prompt, streaming], live)
    assert column.text.endswith("Thinking…")  # waiting for the first words
    live.parser.feed("First paragraph.\n\n```python\nprint(1)\n```\n\nThe end is ")
    column.show_turns("A", [prompt, streaming], live)
    [view] = column.answers()
    first, code, last = view.blocks
    live.parser.feed("coming, word by word.")
    column.show_turns("A", [prompt, streaming], live)
    assert view.blocks[:2] == [first, code] and column.answers() == [view]  # the same widgets, untouched
    assert "word by word" in view.blocks[2].text()
    column.show_turns("A", [prompt, replace(answer, content=live.text)])  # finished: drawn whole
    assert column.answers() == [view] and not view.is_live
    column.show_turns("A", [prompt, replace(answer, content=live.text, thinking="Hm.", thinking_ms=3000.0)])
    assert column.text.startswith("You: Show me code and a table.\n\nThought for 3")
    assert column.answers() == [view]


def test_a_comparison_exports_as_one_web_page_drawn_by_the_same_renderer(qtbot, make_window, services, tmp_path):
    window = make_window()
    window.show_cloud()
    page = window.cloud_page
    page.open_comparison(_saved_comparison(services, [ANSWER_WITH_BLOCKS, "Just **prose** <script>x()</script>"]))
    out = tmp_path / "comparison.html"
    page.export_to(out)
    text = out.read_text(encoding="utf-8")
    assert page.banner.label.text() == f"Saved to {out}."
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text.lower()
    assert '<figure class="code"><figcaption>python</figcaption>' in text and '<span class="k">def</span>' in text
    assert text.count("<th>") == 30 and 'src="data:image/png;base64,' in text
    assert '<a href="https://example.com/docs"' in text and "&lt;script&gt;x()&lt;/script&gt;" in text
    assert "A: standin/gpt-4o-mini" in text and "You" in text and "Show me code and a table." in text
    assert not list(tmp_path.glob("*.part"))

    missing = tmp_path / "no such folder" / "comparison.html"
    page.export_to(missing)  # one clear sentence, no file, no traceback
    assert page.banner.label.text().startswith("Could not write comparison.html: ")
    assert not missing.parent.exists()

    page.open_comparison(_saved_comparison(services, ["Red.", "Blue."], "Name a colour.", blind=True))
    page.export_to(out)  # blind and not yet voted on: the page keeps the models hidden too
    text = out.read_text(encoding="utf-8")
    assert "<h3>A</h3>" in text and "<h3>B</h3>" in text and "gpt-4o" not in text


def test_turning_the_wheel_over_code_or_a_table_in_a_column_scrolls_the_column(qtbot, make_window, services):
    window = make_window()
    window.show_cloud()
    page = window.cloud_page
    long_code = "```python\n" + "".join(f"line_{i} = {i}  # " + "x" * 150 + "\n" for i in range(40)) + "```\n"
    page.open_comparison(_saved_comparison(services, [long_code + "\n" + WIDE_TABLE + "\n" + "More words. " * 300]))
    qtbot.wait(50)
    column = page.columns[0]
    [answer] = column.answers()
    [code] = answer.code_blocks()
    [table] = answer.table_blocks()
    bar = column.body.verticalScrollBar()
    assert bar.maximum() > 0  # taller than the column: it scrolls up and down as a whole
    for view in (code.view, table):
        column.body.ensureWidgetVisible(view, 0, 0)
        qtbot.wait(20)
        before, sideways = bar.value(), view.horizontalScrollBar().value()
        viewport = view.viewport()
        at = QPointF(viewport.rect().center())
        for delta in (QPoint(0, -240), QPoint(-240, 0)):
            QApplication.sendEvent(viewport, QWheelEvent(
                at, QPointF(viewport.mapToGlobal(at.toPoint())), QPoint(), delta, Qt.MouseButton.NoButton,
                Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False))
            if delta.y():
                assert bar.value() > before and view.horizontalScrollBar().value() == sideways, type(view).__name__
        assert view.horizontalScrollBar().value() > sideways  # a sideways turn scrolls the block
