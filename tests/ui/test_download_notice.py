"""The download list in the real window says so when a paused model changed on the hub before it
was resumed, and the model it installs is the hub's file as it is now."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from desktop.core import download_queue as dq
from desktop.core import hub as hub_module
from desktop.core.downloads import FILE_CHANGED
from tests.hub_server import Hub

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def hub(model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server = Hub().start()
    server.add(REPO, model_file.name, model_file)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


def uploaded_again(model_file, tmp_path):
    """The same model with other bytes in its last tensor: still a model, with a new sha256."""
    data = bytearray(model_file.read_bytes())
    data[-100:] = bytes(255 - b for b in data[-100:])
    new = tmp_path / "new" / model_file.name
    new.parent.mkdir()
    new.write_bytes(bytes(data))
    return new


@pytest.mark.parametrize("dark", [False, True])
def test_a_download_resumed_after_the_file_changed_on_the_hub_says_so(qtbot, hub, services, make_window, shots_dir,
                                                                      model_file, tmp_path, dark):
    window = make_window(dark=dark)
    page = window.models_page
    looked_up = asyncio.ensure_future(hub_module.repo_files(REPO, endpoint_url=hub.url))
    qtbot.waitUntil(looked_up.done, timeout=10_000)
    files = looked_up.result()
    hub.faults.throttle = 0.004
    job = services.downloads.add(files, files.variants[0])
    window.show_models()
    page.tabs.setCurrentIndex(2)  # Downloads
    qtbot.waitUntil(lambda: job.done > 20_000_000, timeout=30_000)
    services.downloads.pause(job.id)
    qtbot.wait(300)  # the transfer lets go of the file

    new = uploaded_again(model_file, tmp_path)
    hub.replace(REPO, model_file.name, new)
    row = page._rows[job.id]
    services.downloads.resume(job.id)
    qtbot.waitUntil(lambda: FILE_CHANGED in row.status.text(), timeout=30_000)
    assert row.status.text().startswith(FILE_CHANGED + "\n") and " of 98.4 MB" in row.status.text()
    qtbot.waitUntil(lambda: job.done > 5_000_000, timeout=30_000)  # the new file's bytes arrive
    qtbot.wait(50)  # the row has taken its new height
    assert row.status.text().startswith(FILE_CHANGED + "\n")
    window.grab().save(str(shots_dir / f"download-file-changed-{'dark' if dark else 'light'}.png"))

    hub.faults.throttle = 0
    qtbot.waitUntil(lambda: job.state == dq.DONE, timeout=60_000)
    assert row.status.text() == "Installed · 98.4 MB"
    record = services.library.find_downloaded(REPO, model_file.name)
    assert record.sha256 == hashlib.sha256(new.read_bytes()).hexdigest()
    assert open(record.path, "rb").read() == new.read_bytes()
