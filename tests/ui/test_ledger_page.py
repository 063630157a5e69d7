"""The data ledger's "Used by apps on this computer" in the real window: an app (the openai SDK
with its own User-Agent) uses a model through the window's local server while the Data tab is
open, and the tab shows it by day, app and model; prompts kept from a log with bodies are said
and can be deleted on the Local server page."""

from __future__ import annotations

import threading
import time

import openai
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from desktop.core.store import ApiRequest, ApiUse
from tests.ui.test_server_page import no_key_yet, port  # noqa: F401 - fixtures (no_key_yet is autouse)

AGENT = "NoteTaker/2.1 (Macintosh; Intel Mac OS X 14_5) Electron/31.0"


def ask(qtbot, address: str, model_id: str, agent: str = AGENT):
    """An app on this computer asks, from its own thread, while the window's loop turns."""
    box: dict = {}

    def run() -> None:
        client = openai.OpenAI(base_url=address + "/v1", api_key="none", max_retries=0,
                               default_headers={"User-Agent": agent})
        try:
            box["answer"] = client.chat.completions.create(model=model_id, max_tokens=6, temperature=0,
                                                           messages=[{"role": "user", "content": "Say hello."}])
        except openai.OpenAIError as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=150_000)
    if "error" in box:
        raise box["error"]
    return box["answer"]


def data_tab(window):
    window.show_cloud()
    page = window.cloud_page
    page.tabs.setCurrentWidget(page.data_tab)
    return page


def cells(page, row: int) -> list[str]:
    return [page.apps.item(row, c).text() for c in range(page.apps.columnCount())]


def test_the_data_tab_shows_an_app_using_a_model_as_it_happens(qtbot, make_window, model, port,  # noqa: F811
                                                                services, shots_dir):
    window = make_window()
    page = data_tab(window)
    assert page.apps_summary.text().startswith("No app has used your models yet.")
    assert not page.apps.isVisible()
    assert page.apps_prompts.text().startswith("Prompts and answers are not kept")

    window.server.set_enabled(True)
    qtbot.waitUntil(lambda: not window.server.busy(), timeout=60_000)
    assert window.server.state == "on", window.server.error
    address = window.server.address
    first = ask(qtbot, address, model.id)
    qtbot.waitUntil(lambda: page.apps.rowCount() == 1, timeout=10_000)  # the tab was open: it showed at once
    second = ask(qtbot, address, model.id)
    qtbot.waitUntil(lambda: cells(page, 0)[3] == "2", timeout=10_000)

    day, name, model_id, requests, tokens_in, tokens_out, where = cells(page, 0)
    assert (day, name, model_id, where) == (time.strftime("%Y-%m-%d"), "NoteTaker/2.1 Electron/31.0", model.id,
                                            "this computer")
    assert tokens_in == f"{first.usage.prompt_tokens + second.usage.prompt_tokens:,}"
    assert tokens_out == f"{first.usage.completion_tokens + second.usage.completion_tokens:,}"
    tip = page.apps.item(0, 1).toolTip()
    assert AGENT in tip and "127.0.0.1 (this computer)" in tip  # the whole user agent on hover
    assert page.apps_summary.text() == "1 app used your models 2 times this month; everything stayed on this computer."
    window.grab().save(str(shots_dir / "ledger-apps.png"))

    window.server.set_enabled(False)
    qtbot.waitUntil(lambda: not window.server.busy(), timeout=30_000)
    dark = make_window(dark=True)  # another window on the same data: the rows are in the database
    dark_page = data_tab(dark)
    assert cells(dark_page, 0)[:4] == [day, name, model_id, "2"]
    dark.grab().save(str(shots_dir / "ledger-apps-dark.png"))


def test_a_long_list_of_apps_and_failures_reads_well(qtbot, make_window, services, shots_dir):
    """Rows as a busy week leaves them (written straight into the store): other computers by
    address, failed requests, a browser's long user agent cut short."""
    now = time.time()
    uses = [ApiUse(day=time.strftime("%Y-%m-%d", time.localtime(now - d * 86400)), address=address, user_agent=agent,
                   model=model_id, requests=n, failed=failed, tokens_in=n * 412, tokens_out=n * 96,
                   last_at=now - d * 86400 - i * 60)
            for i, (d, address, agent, model_id, n, failed) in enumerate([
                (0, "127.0.0.1", "Continue/0.9.210 (vscode 1.95)", "qwen2.5-coder-7b-instruct-q4_k_m", 37, 0),
                (0, "127.0.0.1", "OpenAI/Python 1.54.4", "smollm2-135m-instruct-q4_1", 4, 1),
                (1, "192.168.1.23", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                 "Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "llama-3.2-3b-instruct-q4_k_m", 12, 0),
                (2, "127.0.0.1", "", "smollm2-135m-instruct-q4_1", 1, 1)])]
    services.store.add_api_use(uses)
    window = make_window()
    page = data_tab(window)
    assert page.apps.rowCount() == 4
    assert cells(page, 1)[1:4] == ["OpenAI/Python 1.54.4", "smollm2-135m-instruct-q4_1", "4 (1 failed)"]
    browser = cells(page, 2)[1]
    assert browser.startswith("192.168.1.23 · Mozilla/5.0 AppleWebKit/537.36") and browser.endswith("…")
    assert cells(page, 3)[1] == "An app with no name"
    window.grab().save(str(shots_dir / "ledger-apps-many.png"))
    dark = make_window(dark=True)
    data_tab(dark)
    dark.grab().save(str(shots_dir / "ledger-apps-many-dark.png"))


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_prompts_kept_are_said_in_the_ledger_and_deleted_from_the_local_server_page(qtbot, make_window, services,
                                                                                    shots_dir, dark):
    kept = ApiRequest(at=time.time(), address="127.0.0.1", user_agent="Logged/1", method="POST",
                      path="/v1/chat/completions", model="m", status=200, tokens_in=5, tokens_out=3, duration_ms=80,
                      body='{"prompt": [{"role": "user", "content": "my secret"}], "answer": "ok"}')
    services.store.add_api_use([ApiUse(day=time.strftime("%Y-%m-%d"), address="127.0.0.1", user_agent="Logged/1",
                                       model="m", tokens_in=5, tokens_out=3, last_at=kept.at)], [kept])
    window = make_window(dark=dark)
    page = data_tab(window)
    assert page.apps_prompts.text().startswith("1 request is still kept with the prompt and answer from when the log "
                                               "was on: turning the log off keeps them until you delete them")

    window.show_server()
    server_page = window.server_page
    server_page.tabs.setCurrentIndex(1)  # Settings, down to Privacy
    settings = server_page.tabs.currentWidget()
    settings.ensureWidgetVisible(server_page.forget_prompts)
    qtbot.waitUntil(lambda: not server_page.forget_prompts.visibleRegion().isEmpty())
    window.grab().save(str(shots_dir / f"ledger-forget-prompts-{'dark' if dark else 'light'}.png"))
    qtbot.mouseClick(server_page.forget_prompts, Qt.MouseButton.LeftButton)
    dialog = server_page.forget_dialog
    assert dialog.text() == "Delete the prompts and answers of 1 request?"
    qtbot.mouseClick(next(b for b in dialog.buttons()
                          if dialog.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole), Qt.MouseButton.LeftButton)
    assert services.store.count_api_requests() == 0
    assert server_page.banner.label.text() == "Deleted the prompts and answers of 1 request."
    page = data_tab(window)
    assert page.apps_prompts.text().startswith("Prompts and answers are not kept")
    assert page.apps.rowCount() == 1  # the counts stay
