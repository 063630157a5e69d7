"""Downloading a model file from a hub on 127.0.0.1: resuming, retrying, verifying, and saying
what went wrong. The payload is the real 98 MB starter model."""

import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import threading
import time

import pytest

from desktop.core import downloads
from desktop.core.downloads import DownloadError, HashMismatch, RemoteFile, download, part_paths
from tests.hub_server import Hub, start_download


@pytest.fixture
def hub(model_file):
    server = Hub().start()
    server.url_of_model = server.add("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", model_file.name, model_file)
    yield server
    server.stop()


@pytest.fixture
def remote(hub, model_file):
    f = next(iter(hub.files.values()))
    return RemoteFile(url=hub.url_of_model, size=f.size, sha256=f.sha256, etag=f.etag, revision=hub.revision)


def fetch(remote, dest, **kw):
    kw.setdefault("backoff_s", 0.01)
    return asyncio.run(download(remote, dest, local_only=True, **kw))


def test_a_download_arrives_whole_verified_and_reports_progress(remote, tmp_path, model_file):
    seen = []
    dest = fetch(remote, tmp_path / "m.gguf", on_progress=seen.append)
    assert dest.read_bytes() == model_file.read_bytes()
    part, sidecar = part_paths(dest)
    assert not part.exists() and not sidecar.exists()
    assert seen[-1].done == seen[-1].total == remote.size
    assert all(p.bytes_per_s > 0 for p in seen)


def test_a_dropped_connection_resumes_where_it_stopped(hub, remote, tmp_path):
    hub.faults.drop_after = 30_000_000
    dest = fetch(remote, tmp_path / "m.gguf")
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == remote.sha256
    ranges = [r for m, _, r in hub.requests if m == "GET"]
    assert ranges[0] == "" and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) >= 29_000_000
    assert hub.bytes_served < remote.size + 2_000_000  # what had arrived was not fetched again


def test_a_server_that_ignores_the_range_gives_the_whole_file_again_and_it_is_still_right(hub, remote, tmp_path):
    hub.faults.drop_after, hub.faults.ignore_range = 30_000_000, True
    dest = fetch(remote, tmp_path / "m.gguf")
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == remote.sha256  # not 30 MB hashed twice
    assert dest.stat().st_size == remote.size
    assert hub.bytes_served > remote.size + 20_000_000  # the second answer was the whole file


def test_server_errors_are_retried_with_backoff(hub, remote, tmp_path):
    hub.faults.fail_next = [500, 503, 429]
    assert fetch(remote, tmp_path / "m.gguf").stat().st_size == remote.size
    assert len([r for r in hub.requests if r[0] == "GET"]) == 4


def test_a_stalled_connection_is_reopened(hub, remote, tmp_path):
    hub.faults.stall_after, hub.faults.stall_for = 10_000_000, 5.0
    started = time.monotonic()
    fetch(remote, tmp_path / "m.gguf", stall_timeout=0.5)
    assert time.monotonic() - started < 5.0  # it did not wait for the stalled connection
    assert len([r for r in hub.requests if r[0] == "GET"]) >= 2


def test_pausing_a_silent_connection_stops_at_once_and_keeps_what_arrived(hub, remote, tmp_path):
    hub.faults.stall_after, hub.faults.stall_for = 10_000_000, 8.0
    dest = tmp_path / "m.gguf"
    part, _ = part_paths(dest)

    async def pause_during_the_stall():
        task = asyncio.create_task(download(remote, dest, local_only=True, stall_timeout=30.0))
        while not part.exists() or part.stat().st_size < 10_000_000:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the server is silent now; the read is waiting
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(pause_during_the_stall()) < 1.0  # not the 30 s stall timeout, nor the 8 s stall
    kept = part.stat().st_size
    assert kept >= 10_000_000 and not dest.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("download ")]
    assert fetch(remote, dest).stat().st_size == remote.size  # and it resumes from there
    assert [r for m, _, r in hub.requests if m == "GET"][-1] == f"bytes={kept}-"


def test_damaged_bytes_never_become_a_model(hub, remote, tmp_path):
    hub.faults.corrupt = True
    with pytest.raises(HashMismatch, match="arrived damaged"):
        fetch(remote, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status, words", [(404, "not on the hub any more"), (401, "gated or private")])
def test_permanent_refusals_get_a_sentence_and_leave_nothing(hub, remote, tmp_path, status, words):
    hub.faults.status = status
    with pytest.raises(DownloadError, match=words):
        fetch(remote, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []
    assert len(hub.requests) == 1  # not retried


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_disk_that_fills_up_during_the_download_stops_with_a_sentence(hub, remote, tmp_path):
    # The partial file is /dev/full, where every write fails with the kernel's ENOSPC, as on a
    # disk that filled up after the free-space check.
    dest = tmp_path / "m.gguf"
    part, sidecar = part_paths(dest)
    part.symlink_to("/dev/full")
    sidecar.write_text(json.dumps(dataclasses.asdict(remote)))
    with pytest.raises(DownloadError, match="The disk filled up while downloading “m.gguf”.*free some space and resume"):
        fetch(remote, dest)
    assert not dest.exists() and len([r for r in hub.requests if r[0] == "GET"]) == 1  # not retried


def test_too_little_free_disk_stops_before_the_first_byte(hub, remote, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "free_disk", lambda _path: 60_000_000)  # a nearly full disk
    with pytest.raises(DownloadError, match="Not enough free disk .* needs 98.4 MB more and 60.0 MB is free"):
        fetch(remote, tmp_path / "m.gguf")
    assert hub.requests == [] and list(tmp_path.iterdir()) == []


def test_a_part_of_another_file_is_not_resumed(hub, remote, tmp_path, model_file):
    dest = tmp_path / "m.gguf"
    part, sidecar = part_paths(dest)
    part.write_bytes(b"x" * 1000)
    sidecar.write_text(json.dumps({"url": remote.url, "size": remote.size, "sha256": "0" * 64,
                                   "etag": "", "revision": "old"}))
    assert fetch(remote, dest).read_bytes() == model_file.read_bytes()


def test_a_download_killed_halfway_continues_without_fetching_again(hub, remote, tmp_path):
    hub.faults.throttle = 0.004  # slow enough to stop it halfway
    dest = tmp_path / "m.gguf"
    part, _ = part_paths(dest)
    app = start_download(remote, dest)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < remote.size // 2):
        time.sleep(0.05)
    os.kill(app.pid, signal.SIGKILL)
    app.wait()
    on_disk = part.stat().st_size
    assert remote.size // 2 <= on_disk < remote.size
    hub.faults.throttle = 0
    served_before = hub.bytes_served
    fetch(remote, dest)
    fetched_again = hub.bytes_served - served_before - (remote.size - on_disk)
    assert fetched_again <= 0.01 * remote.size, f"{fetched_again} bytes were fetched twice"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == remote.sha256
