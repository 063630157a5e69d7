"""Chat formats in the real window: a model file without a template is answered cleanly and the
user is told once; the settings panel names the format in use and lets the user pick another
for that model; the models page says which format a file will get."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.gguf_forge import with_chat_template

LONG_WAIT = 60_000


@pytest.fixture
def bare_model(services, model_file, tmp_path):
    """The starter model with its chat template removed, as some community quantizations ship."""
    path = with_chat_template(model_file, tmp_path / "SmolLM2-no-template.gguf", None)
    return services.library.import_file(path, link=True)


def _send(qtbot, window, text: str):
    window.composer.input.setPlainText(text)
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
    answer = window.message_list.widgets()[-1]
    qtbot.waitUntil(lambda: not window.answering, timeout=LONG_WAIT)
    return answer


def _select(page, model_id: str) -> None:
    page.refresh_installed()
    row = next(r for r in range(page.installed.rowCount())
               if page.installed.item(r, 0).data(Qt.ItemDataRole.UserRole) == model_id)
    page.installed.selectRow(row)


def test_a_model_without_a_template_is_answered_cleanly_and_the_user_is_told_once(qtbot, make_window, bare_model,
                                                                                   services, shots_dir):
    window = make_window()
    window.refresh_models(select=bare_model.id)
    answer = _send(qtbot, window, "Name three colors.")
    assert answer.text.strip() and "<|im" not in answer.text and "[INST]" not in answer.text
    assert window.banner.isVisible()
    assert window.banner.label.text() == ("This file has no chat template; using the ChatML format "
                                          "(found from its special tokens).")
    window.toggle_settings()
    panel = window.settings_panel
    assert panel.format_in_use.text() == "In use: ChatML."
    assert panel.chat_format.currentData() == "auto"
    window.grab().save(str(shots_dir / "chat-format-notice.png"))

    window.show_models()
    page = window.models_page
    _select(page, bare_model.id)
    assert "Chat format: None in this file: ChatML, found from its special tokens." in page.installed_fit.text()


def test_the_user_picks_another_format_for_a_model_and_the_next_message_uses_it(qtbot, make_window, model,
                                                                                services):
    window = make_window()
    _send(qtbot, window, "Hello!")
    window.toggle_settings()
    panel = window.settings_panel
    assert panel.format_in_use.text() == "In use: the model's own chat template."
    assert not panel.system_hint.isVisible()
    panel.chat_format.setCurrentIndex(panel.chat_format.findData("gemma"))
    assert services.store.model(model.id).chat_format == "gemma"
    assert "applies from your next message" in window.banner.label.text()

    answer = _send(qtbot, window, "Name a colour.")
    assert answer.message.status == "complete"
    assert services.engine.prompt_info["chat_format"] == "gemma"
    assert panel.format_in_use.text() == "In use: Gemma."
    assert panel.system_hint.isVisible()  # Gemma has no system role: the panel says where the prompt goes
    window.show_models()
    _select(window.models_page, model.id)
    assert "Chat format: Gemma (chosen)." in window.models_page.installed_fit.text()
