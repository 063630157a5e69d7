"""A reasoning model's thinking in the real window, from a standin scripted the way reasoning
models stream (tags split across chunks, reasoning_content, an answer of thoughts only, a cut
at the length limit): what is drawn, copied, stored, and sent back on the next turn."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from tests.ui.conftest import send, window_on_standin


def _sent_turns(standin) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in standin.seen[-1].body["messages"]]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_thinking_shows_apart_folds_when_the_answer_starts_and_is_never_sent_back(qtbot, make_window, standin,
                                                                                 services, shots_dir, dark):
    window = window_on_standin(make_window, dark)
    standin.next = ["drip:0.4"]
    standin.scripts = [[{"content": "<th"}, {"content": "ink>The user wants"}, {"content": " a capital city."},
                       {"content": " France's is Paris.</th"}, {"content": "ink>\n\nParis"},
                       {"content": " is the capital of France."}]]
    answer = send(qtbot, window, "What is the capital of France?")

    qtbot.waitUntil(lambda: answer.thinking.startswith("The user wants a capital"), timeout=10_000)
    section = answer.thinking_section
    assert section.isVisible() and section.is_open
    assert section.toggle.text() == "Thinking…" and answer.meta.text() == ""  # said once, not twice
    assert answer.text == "" and "<th" not in section.body.text()
    window.grab().save(str(shots_dir / f"thinking-live-{'dark' if dark else 'light'}.png"))

    qtbot.waitUntil(lambda: not window.answering, timeout=15_000)
    assert answer.text == "Paris is the capital of France."
    assert section.toggle.text().startswith("Thought for") and not section.is_open
    assert "<think>" not in answer.body.text() and "</th" not in answer.body.text()
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    assert section.is_open
    window.grab().save(str(shots_dir / f"thinking-done-{'dark' if dark else 'light'}.png"))
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    assert not section.is_open
    answer.copy_text()
    assert QGuiApplication.clipboard().text() == "Paris is the capital of France."
    saved = services.store.messages(window.current_id)[-1]
    assert saved.content == "Paris is the capital of France."
    assert saved.thinking == "The user wants a capital city. France's is Paris."
    assert saved.thinking_ms is not None and saved.thinking_ms > 500  # it thought for over a second
    assert services.store.conversation(window.current_id).title == "What is the capital of France?"

    send(qtbot, window, "And of Italy?")
    qtbot.waitUntil(lambda: not window.answering, timeout=15_000)
    sent = _sent_turns(standin)
    assert ("assistant", "Paris is the capital of France.") in sent
    assert not any("user wants" in content or "think>" in content for _, content in sent)

    window.open_conversation(window.current_id)  # reopened from disk: folded, as it was
    reopened = window.message_list.widgets()[1]
    assert reopened.thinking.startswith("The user wants") and not reopened.thinking_section.is_open


def test_reasoning_content_and_an_answer_made_only_of_thinking(qtbot, make_window, standin, services):
    window = window_on_standin(make_window)
    standin.scripts = [[{"role": "assistant", "content": ""}, {"reasoning_content": "Hmm, let me see."},
                       {"reasoning_content": " Nothing more to say."}]]
    answer = send(qtbot, window, "Think about it.")
    qtbot.waitUntil(lambda: not window.answering, timeout=15_000)
    saved = services.store.messages(window.current_id)[-1]
    assert saved.status == "complete" and saved.content == "" and saved.thinking == "Hmm, let me see. Nothing more to say."
    assert answer.thinking_section.isVisible() and answer.thinking_section.toggle.text().startswith("Thought")
    assert not answer.body.isVisible()

    send(qtbot, window, "Well?")
    qtbot.waitUntil(lambda: not window.answering, timeout=15_000)
    sent = _sent_turns(standin)
    roles = [role for role, _ in sent if role != "system"]
    assert roles == ["user"]  # the empty answer is left out, and the two questions go as one turn
    assert sent[-1] == ("user", "Think about it.\n\nWell?")


def test_a_cut_at_the_length_limit_says_so_and_keeps_the_unclosed_thinking(qtbot, make_window, standin, services):
    window = window_on_standin(make_window)
    standin.finish = "length"
    standin.scripts = [[{"content": "<think>I will write"}, {"content": " a very long plan and"}]]
    answer = send(qtbot, window, "Plan my week.")
    qtbot.waitUntil(lambda: not window.answering, timeout=15_000)
    saved = services.store.messages(window.current_id)[-1]
    assert saved.stop_reason == "length" and saved.thinking == "I will write a very long plan and"
    assert "stopped at the length limit" in answer.meta.text()
    assert answer.text == ""


def test_a_think_tag_inside_an_answers_code_stays_code(qtbot, make_window, standin, services):
    window = window_on_standin(make_window)
    text = "Models mark their thoughts like this:\n\n```html\n<think>draft</think>\n```\n"
    standin.scripts = [[{"content": text[:30]}, {"content": text[30:42]}, {"content": text[42:]}]]
    answer = send(qtbot, window, "How do models mark thoughts?")
    qtbot.waitUntil(lambda: not window.answering, timeout=15_000)
    assert answer.text == text and answer.thinking == ""
    assert answer._thinking is None or not answer.thinking_section.isVisible()
    assert "&lt;think&gt;draft&lt;/think&gt;" in answer.body.text()
