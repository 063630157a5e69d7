"""The Local server page in the real window: the switch serves the installed models on the
address it shows, each request lands in the live log, the network needs a key shown once and kept
out of settings.json, web origins are checked, the state outlives the window, and a port in use is
said in one sentence. Requests come from httpx in a thread, as another app's would."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace

import httpx
import psutil
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QCheckBox

from desktop.core import secrets
from desktop.core.server import KEY_NAME, LOOPBACK, RequestRecord
from desktop.ui.server_page import LOG_ROWS, KeyDialog, origin_problem


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def request(qtbot, url: str, method: str = "GET", **kwargs) -> httpx.Response:
    """Ask `url` from another thread (as another app would) while the window's loop keeps turning."""
    box: dict = {}

    def get() -> None:
        try:
            box["response"] = httpx.request(method, url, timeout=120, **kwargs)
        except httpx.HTTPError as exc:
            box["error"] = exc

    thread = threading.Thread(target=get)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=150_000)
    if "error" in box:
        raise box["error"]
    return box["response"]


@pytest.fixture(autouse=True)
def no_key_yet():
    secrets.forget(KEY_NAME)  # an earlier test's key lives on in this process's memory (no keyring here)
    yield
    secrets.forget(KEY_NAME)


@pytest.fixture
def port(services) -> int:
    port = free_port()
    services.save_settings(replace(services.settings, server=replace(services.settings.server, port=port)))
    return port


@pytest.fixture
def server_window(make_window, model, port):
    def make(dark: bool = False):
        return make_window(dark=dark)
    return make


def open_page(qtbot, window):
    qtbot.mouseClick(window.server_button, Qt.MouseButton.LeftButton)
    assert window.pages.currentWidget() is window.server_page
    return window.server_page


def open_settings(qtbot, page) -> None:
    bar = page.tabs.tabBar()
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(1).center())
    assert page.tabs.tabText(page.tabs.currentIndex()) == "Settings"


def turn_on(qtbot, window):
    page = window.server_page
    qtbot.mouseClick(page.power, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.server.busy(), timeout=60_000)


def test_turning_the_server_on_serves_the_models_and_logs_each_request(qtbot, server_window, model, port, services):
    window = server_window()
    assert window.server_status.text() == "Server: off"
    qtbot.waitUntil(lambda: window.server_status.width() >= window.server_status.sizeHint().width())  # laid out
    qtbot.mouseClick(window.server_status, Qt.MouseButton.LeftButton)  # the status bar's entry opens the page
    assert window.pages.currentWidget() is window.server_page
    window.show_chat()
    page = open_page(qtbot, window)
    address = f"http://{LOOPBACK}:{port}"
    assert page.log_stack.currentWidget() is page.empty  # no request yet: how to try it
    assert page.example.text() == f"curl {address}/v1/models"
    assert "Point apps that speak the OpenAI or Ollama API at this address" in page.empty_text.text()

    turn_on(qtbot, window)
    assert window.server.state == "on", window.server.error
    assert page.address.text() == address
    assert window.server_status.text() == f"Server: on {LOOPBACK}:{port}"
    assert json.loads(services.settings_file.path.read_text())["server"]["enabled"] is True

    response = request(qtbot, f"{page.address.text()}/v1/models", headers={"User-Agent": "test-app/1.0"})
    assert response.status_code == 200
    assert model.id in [m["id"] for m in response.json()["data"]]
    answer = request(qtbot, f"{page.address.text()}/v1/chat/completions", "POST",
                     headers={"User-Agent": "test-app/1.0"},
                     json={"model": model.id, "messages": [{"role": "user", "content": "Say hello."}],
                           "max_tokens": 8, "temperature": 0})
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    qtbot.waitUntil(lambda: page.log.rowCount() == 1, timeout=10_000)
    assert page.log_stack.currentWidget() is page.table
    row = [page.log.data(page.log.index(0, c)) for c in range(page.log.columnCount())]
    assert row[2] == "/v1/chat/completions" and row[3] == model.id and row[-1] == "200"
    assert row[4] == f"{usage['prompt_tokens']:,} → {usage['completion_tokens']:,}"
    assert row[1] == "test-app/1.0"  # an app on this computer, by its name (its address in the tooltip)
    assert LOOPBACK in page.log.data(page.log.index(0, 1), Qt.ItemDataRole.ToolTipRole)

    page.show_loaded()  # (the page asks every 2 s)
    assert model.name in page.loaded_label.text()
    engines = window.server.server.pool.engine_pids()
    assert engines  # the model runs in an engine child of the server's own (the window had none loaded)

    qtbot.mouseClick(page.power, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.server.busy(), timeout=30_000)
    assert window.server.state == "off"
    assert window.server_status.text() == "Server: off"
    assert not [pid for pid in engines if psutil.pid_exists(pid)]  # its model was unloaded with it
    with pytest.raises(httpx.ConnectError):
        request(qtbot, f"{address}/v1/models")


def test_the_server_comes_back_with_a_new_window_and_stops_with_the_old(qtbot, server_window, port, services,
                                                                        model):
    from desktop.core.services import open_services
    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    window = server_window()
    page = open_page(qtbot, window)
    page.origin_input.setText("http://localhost:3000")
    page.add_origin()
    page.ttl.setValue(5)
    assert not page.log_bodies.isChecked()  # off unless the user asks
    page.log_bodies.setChecked(True)
    turn_on(qtbot, window)
    assert window.server.state == "on", window.server.error
    answer = request(qtbot, f"http://{LOOPBACK}:{port}/v1/completions", "POST",
                     json={"model": model.id, "prompt": "The sea is", "max_tokens": 4})
    assert answer.status_code == 200, answer.text
    engines = window.server.server.pool.engine_pids()
    window.close()  # the app quits: the server stops (and unloads what it loaded) before the engines
    assert window.server.state == "off"
    assert not [pid for pid in engines if psutil.pid_exists(pid)]
    with pytest.raises(httpx.ConnectError):
        request(qtbot, f"http://{LOOPBACK}:{port}/v1/models")

    again = open_services()  # the same data folder, as the next launch
    try:
        second = MainWindow(again, apply_theme(qtbot_app(), dark=False), preload_model=False)
        qtbot.addWidget(second)
        second.show()
        second.server.start_if_enabled()  # what app.py does once the window is drawn
        qtbot.waitUntil(lambda: second.server.state == "on", timeout=60_000)
        assert request(qtbot, f"http://{LOOPBACK}:{port}/v1/models").status_code == 200
        shown = open_page(qtbot, second)
        assert shown.power.isChecked() and shown.port.value() == port and shown.ttl.value() == 5
        assert shown.log_bodies.isChecked() and second.server.config.log_bodies
        assert second.server.config.ttl_s == 300
        assert [shown.origins.item(i).text() for i in range(shown.origins.count())] == ["http://localhost:3000"]
        second.close()
        qtbot.waitUntil(lambda: not second._tasks, timeout=10_000)
    finally:
        again.close()


def qtbot_app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance()


def test_serving_the_network_shows_a_key_once_and_never_writes_it_to_settings(qtbot, server_window, services, port,
                                                                              shots_dir):
    window = server_window()
    page = open_page(qtbot, window)
    open_settings(qtbot, page)
    assert not page.new_key.isEnabled()
    qtbot.mouseClick(page.network, Qt.MouseButton.LeftButton, pos=QPoint(8, page.network.height() // 2))
    qtbot.waitUntil(lambda: page.key_dialog is not None and page.key_dialog.isVisible())
    dialog: KeyDialog = page.key_dialog
    key = dialog.key.text()
    assert len(key) >= 40 and secrets.get(KEY_NAME) == key
    assert "Keep it: Hearth will not show it again" in dialog.note.text()
    assert "kept in memory until Hearth closes" in dialog.note.text()  # this machine has no keyring
    assert "kept in memory until Hearth closes" in page.key_label.text()
    qtbot.mouseClick(dialog.copy, Qt.MouseButton.LeftButton)
    assert qtbot_app().clipboard().text() == key
    dialog.accept()
    settings_text = services.settings_file.path.read_text()
    assert key not in settings_text and json.loads(settings_text)["server"]["network"] is True

    # Shown once: turning the network off and on again keeps the key and shows nothing.
    page.network.click()
    page.network.click()
    assert page.key_dialog is None and secrets.get(KEY_NAME) == key

    turn_on(qtbot, window)
    assert window.server.state == "on", window.server.error
    address = f"http://{LOOPBACK}:{port}/v1/models"
    assert request(qtbot, address).status_code == 401
    assert request(qtbot, address, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert window.server_status.text() == f"Server: on {LOOPBACK}:{port} and your network"
    window.grab().save(str(shots_dir / "server-page-network-light.png"))

    # A new key: shown once, the old one stops working at once (the server starts again).
    qtbot.mouseClick(page.new_key, Qt.MouseButton.LeftButton)
    new = page.key_dialog.key.text()
    page.key_dialog.accept()
    assert new != key and secrets.get(KEY_NAME) == new
    qtbot.waitUntil(lambda: window.server.state == "on" and window.server.config.api_key == new, timeout=60_000)
    assert request(qtbot, address, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert request(qtbot, address, headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert new not in services.settings_file.path.read_text()


@pytest.mark.parametrize("origin", ["localhost:3000", "http://localhost:3000/app", "*", "ftp://example.org",
                                    "http://localhost:99999", "https://user:pw@example.org", ""])
def test_an_origin_that_is_not_scheme_host_port_is_refused_in_a_sentence(origin):
    problem = origin_problem(origin)
    assert problem and problem.endswith(".") and "\n" not in problem


def test_web_origins_are_checked_before_they_are_kept(qtbot, server_window, services):
    window = server_window()
    page = open_page(qtbot, window)
    open_settings(qtbot, page)
    page.origin_input.setText("localhost:3000")
    qtbot.keyClick(page.origin_input, Qt.Key.Key_Return)
    assert page.origin_error.isVisible() and "http://" in page.origin_error.text()
    assert page.origins.count() == 0 and services.settings.server.origins == ()

    page.origin_input.setText("http://localhost:3000/")  # as a browser's address bar copies it
    qtbot.mouseClick(page.findChild(type(page.remove_origin_button), "AddOrigin"), Qt.MouseButton.LeftButton)
    assert not page.origin_error.isVisible()
    assert services.settings.server.origins == ("http://localhost:3000",)
    page.origin_input.setText("https://notes.example.org:8443")
    page.add_origin()
    page.origin_input.setText("HTTP://localhost:3000")
    page.add_origin()
    assert "already" in page.origin_error.text()
    assert json.loads(services.settings_file.path.read_text())["server"]["origins"] == [
        "http://localhost:3000", "https://notes.example.org:8443"]

    page.origins.setCurrentRow(0)
    qtbot.mouseClick(page.remove_origin_button, Qt.MouseButton.LeftButton)
    assert services.settings.server.origins == ("https://notes.example.org:8443",)
    assert [page.origins.item(i).text() for i in range(page.origins.count())] == ["https://notes.example.org:8443"]


def test_a_port_in_use_is_said_in_one_sentence_and_the_switch_stays_off(qtbot, server_window, port, shots_dir):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, port))
        taken.listen()
        window = server_window()
        page = open_page(qtbot, window)
        turn_on(qtbot, window)
        assert window.server.state == "off"
        assert page.error_label.isVisible()
        sentence = page.error_label.text()
        assert str(port) in sentence and "Traceback" not in sentence and "\n" not in sentence
        assert not page.power.isChecked()
        assert not window.services.settings.server.enabled  # off as the switch shows, at the next launch too
        assert window.server_status.text() == "Server: off"
        window.grab().save(str(shots_dir / "server-page-port-in-use-light.png"))


def test_the_request_log_keeps_the_last_500_requests_newest_first(qtbot, server_window):
    window = server_window()
    page = open_page(qtbot, window)
    for i in range(LOG_ROWS + 120):
        window.server.request.emit(RequestRecord(at=time.time(), client=f"127.0.0.1 app-{i}", method="POST",
                                                 path="/v1/chat/completions", model="m", status=200,
                                                 tokens_in=i, tokens_out=1, duration_ms=5.0))
    assert page.log.rowCount() == LOG_ROWS
    assert page.log.record(0).client.endswith(f"app-{LOG_ROWS + 119}")
    assert page.log.record(LOG_ROWS - 1).client.endswith("app-120")


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_page_looks_right(qtbot, server_window, shots_dir, model, dark):
    window = server_window(dark=dark)
    page = open_page(qtbot, window)
    name = "dark" if dark else "light"
    window.grab().save(str(shots_dir / f"server-page-empty-{name}.png"))
    turn_on(qtbot, window)
    assert window.server.state == "on", window.server.error
    page.origin_input.setText("http://localhost:3000")
    page.add_origin()
    clients = ["127.0.0.1 curl/8.5.0", "127.0.0.1 OpenAI/Python 1.54.3",
               "192.168.1.23 Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "obsidian/1.7.7 Chrome/128.0.6613.186 Electron/32.2.5 Safari/537.36", "127.0.0.1 ollama-python/0.4.7"]
    for i, client in enumerate(clients):
        window.server.request.emit(RequestRecord(
            at=time.time() - 60 * (len(clients) - i), client=client, method="POST", path="/v1/chat/completions",
            model=model.id, status=200 if i != 2 else 400, tokens_in=412 * (i + 1), tokens_out=96 * (i + 1),
            duration_ms=850.0 * (i + 1)))
    qtbot.wait(50)
    window.grab().save(str(shots_dir / f"server-page-{name}.png"))
    assert page.table.isVisible()
    open_settings(qtbot, page)
    window.grab().save(str(shots_dir / f"server-page-settings-{name}.png"))


def test_a_server_left_on_that_cannot_start_at_launch_says_so_over_the_chat(qtbot, server_window, services, port):
    services.save_settings(replace(services.settings, server=replace(services.settings.server, enabled=True)))
    with socket.socket() as taken:
        taken.bind((LOOPBACK, port))
        taken.listen()
        window = server_window()
        window.server.start_if_enabled()  # what app.py does once the window is drawn
        qtbot.waitUntil(lambda: not window.server.busy(), timeout=60_000)
    assert window.pages.currentWidget() is window.chat_page
    assert window.banner.isVisible()
    assert window.banner.label.text().startswith("The local server is off: ") and str(port) in window.banner.label.text()
    assert window.server_status.text() == "Server: off"
    assert services.settings.server.enabled  # the user's choice stands: it starts next time the port is free


def test_cloud_models_are_served_only_for_the_providers_ticked_on_the_page(qtbot, server_window, services, ring,
                                                                         shots_dir):
    from tests.cloud_server import CloudServer

    stand_in = CloudServer()
    try:
        services.providers.add("acme", base_url=stand_in.url + "/v1", label="Acme AI", key="sk-acme")
        services.providers.set_models("acme", ["gpt-4o-mini"])
        window = server_window()
        page = open_page(qtbot, window)
        open_settings(qtbot, page)
        box = page.findChild(QCheckBox, "ServerCloud-acme")
        assert box is not None and not box.isChecked()  # off until the user ticks it
        turn_on(qtbot, window)
        url = page.address.text()
        assert "acme/gpt-4o-mini" not in [m["id"] for m in request(qtbot, f"{url}/v1/models").json()["data"]]

        box.setChecked(True)
        assert services.settings.server.cloud == ("acme",)
        assert page.pending_row.isVisibleTo(page)  # applies when the server starts again
        page.tabs.currentWidget().ensureWidgetVisible(box)
        qtbot.wait(20)
        window.grab().save(str(shots_dir / "server-page-cloud.png"))
        qtbot.mouseClick(page.restart_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not window.server.busy() and window.server.state == "on", timeout=60_000)
        assert "acme/gpt-4o-mini" in [m["id"] for m in request(qtbot, f"{url}/v1/models").json()["data"]]
        answer = request(qtbot, f"{url}/v1/chat/completions", "POST",
                         json={"model": "acme/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        qtbot.waitUntil(lambda: page.log.rowCount() == 1, timeout=10_000)
        assert page.log.record(0).model == "acme/gpt-4o-mini" and page.log.record(0).status == 200

        box = page.findChild(QCheckBox, "ServerCloud-acme")  # (the boxes are made again when the page shows)
        assert box.isChecked()
        box.setChecked(False)  # and off again: saved at once
        assert services.settings.server.cloud == ()
    finally:
        stand_in.stop()
