"""The real main window, offscreen, on a qasync loop that pytest-qt's waiting drives."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, replace

import pytest

from desktop.core.settings import LoadOptions, Sampling


@pytest.fixture(scope="session", autouse=True)
def collect_on_the_gui_thread(qapp):
    """As the app does (desktop/ui/collector.py): cyclic garbage holding widgets is freed on the
    GUI thread, never in a stand-in server's or a worker's thread."""
    from desktop.ui.collector import MainThreadCollector

    collector = MainThreadCollector(qapp)
    yield
    collector.stop()


@pytest.fixture
def qt_loop(qapp):
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    # Not loop.stop(): qasync's stop calls QApplication.exit(), which leaves Qt's "quit now" flag
    # set, so every later QEventLoop.exec() (pytest-qt's waits) returns at once. Mark it stopped
    # by hand, then close it so its executor threads end before Qt is torn down.
    asyncio.events._set_running_loop(None)
    loop._QEventLoop__is_running = False
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def make_window(qtbot, qt_loop, qapp, services):
    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    windows = []

    def make(*, dark: bool = False, preload: bool = False, sampling: Sampling | None = None):
        services.settings = replace(services.settings, load=LoadOptions(n_ctx=2048, n_threads=2),
                                    sampling=sampling or services.settings.sampling)
        theme = apply_theme(qapp, dark=dark)
        window = MainWindow(services, theme, preload_model=preload)
        qtbot.addWidget(window)
        window.resize(1100, 720)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        qtbot.waitUntil(lambda w=window: not w._tasks, timeout=10_000)
    import gc

    gc.collect()  # the closed window's cycles, here on the GUI thread
    # Closing the window ends every download at once: a transfer thread that outlived its event loop
    # would post to a dead loop, which crashed Qt in a later test.
    import threading

    assert not [t.name for t in threading.enumerate() if t.name.startswith("download ")]


@pytest.fixture
def window(make_window, model):
    return make_window()


def set_sampling(window, **changes) -> None:
    """Give the open conversation these sampling settings, as the settings panel would."""
    store = window.services.store
    conversation = store.conversation(window.current_id)
    sampling = replace(Sampling.from_dict(conversation.sampling), **changes)
    store.update_conversation(window.current_id, sampling=asdict(sampling))
    window.open_conversation(window.current_id)


STANDIN = "standin/gpt-4o-mini"  # the scripted stand-in's model, as the model picker names it


@pytest.fixture
def standin(services):
    """A scripted OpenAI-compatible server on 127.0.0.1, added as a provider of the user's own
    (no key needed), its models listed as "List models" leaves them."""
    from tests.cloud_server import CloudServer

    server = CloudServer()
    services.providers.add("standin", base_url=server.url + "/v1", own=True)
    services.providers.set_models("standin", list(server.models))
    yield server
    server.stop()


def window_on_standin(make_window, dark: bool = False):
    """The real window with the stand-in's model chosen in the picker."""
    window = make_window(dark=dark)
    window.refresh_models()
    index = window.model_combo.findData(STANDIN)
    assert index >= 0
    window.model_combo.setCurrentIndex(index)
    window._model_chosen(index)
    return window


def send(qtbot, window, text: str):
    """Type `text` and click Send; returns the answer's widget."""
    from PySide6.QtCore import Qt

    window.composer.input.setPlainText(text)
    qtbot.mouseClick(window.composer.button, Qt.MouseButton.LeftButton)
    return window.message_list.widgets()[-1]


def formula_sources(html: str) -> list[str]:
    """The LaTeX of each typeset formula in the rich text `html` (its pictures' alt text), in
    the order they are drawn: what a reader's copy of each formula gives."""
    from PySide6.QtGui import QTextDocument, QTextFormat

    document = QTextDocument()
    document.setHtml(html)
    found, block = [], document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isImageFormat():
                found.append(fmt.stringProperty(QTextFormat.Property.ImageAltText))
            it += 1
        block = block.next()
    return found
