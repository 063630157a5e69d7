"""Downloading a model file from a hub on 127.0.0.1: resuming, retrying, verifying, and saying
what went wrong. The payload is the real 98 MB starter model."""

import asyncio
import dataclasses
import hashlib
import json
import os
import re
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


# -- what comes back from a resume is checked before it is written ------------------------------

def paused_at(remote, dest, model_file, have=30_000_000, etag=None):
    """A download paused after `have` bytes, as the app leaves it: the .part and its sidecar."""
    part, sidecar = part_paths(dest)
    with open(model_file, "rb") as fh:
        part.write_bytes(fh.read(have))
    sidecar.write_text(json.dumps(dict(dataclasses.asdict(remote), etag=remote.etag if etag is None else etag)))
    return part


def file_gets(hub):
    return [h for h in hub.headers if "/resolve/" in hub.requests[hub.headers.index(h)][1]]


def test_every_file_request_asks_for_the_bytes_as_stored_and_a_resume_names_the_version(hub, remote, tmp_path):
    hub.faults.drop_after = 30_000_000
    fetch(remote, tmp_path / "m.gguf")
    first, resume = file_gets(hub)
    assert first["accept-encoding"] == resume["accept-encoding"] == "identity"
    assert "if-range" not in first and resume["if-range"] == remote.etag == f'"{remote.sha256}"'


@pytest.mark.parametrize("fault, words", [
    ("wrong_start", "the server sent bytes from 29,999,000 when Hearth asked for bytes from 30,000,000"),
    ("wrong_total", "the server said the file has 98,363,432 bytes where the hub lists 98,362,432"),
    ("gzip_range", "the server sent the file compressed (gzip) although Hearth asked for it as stored"),
])
def test_a_wrong_answer_to_a_resume_never_touches_the_part(hub, remote, tmp_path, model_file, fault, words):
    assert remote.size == 98_362_432  # the starter model, as the sentences above count
    dest = tmp_path / "m.gguf"
    part = paused_at(remote, dest, model_file)
    before = part.read_bytes()
    setattr(hub.faults, fault, 1_000)  # every answer
    with pytest.raises(DownloadError, match=re.escape(f"kept failing ({words}). What arrived (30.0 MB) is kept")):
        fetch(remote, dest, max_attempts=3)
    assert part.read_bytes() == before and not dest.exists()
    assert [r for m, _, r in hub.requests if m == "GET"] == ["bytes=30000000-"] * 3  # asked again, each time


@pytest.mark.parametrize("fault", ["wrong_start", "wrong_total", "gzip_range"])
def test_after_one_wrong_answer_a_fresh_request_finishes_the_file(hub, remote, tmp_path, model_file, fault):
    dest = tmp_path / "m.gguf"
    paused_at(remote, dest, model_file)
    setattr(hub.faults, fault, 1)
    assert fetch(remote, dest).read_bytes() == model_file.read_bytes()
    assert [r for m, _, r in hub.requests if m == "GET"] == ["bytes=30000000-"] * 2


def changed_copy(model_file, tmp_path, extra=4096):
    """The same model uploaded again with other bytes (and another size): a new sha256 and ETag."""
    data = bytearray(model_file.read_bytes())
    data[-100:] = bytes(255 - b for b in data[-100:])
    new = tmp_path / "uploaded-again" / model_file.name
    new.parent.mkdir()
    new.write_bytes(bytes(data) + b"\0" * extra)
    return new


def pause_after(remote, dest, nbytes, **kw):
    """Start a download and pause it (cancel the task, as the queue's Pause does) after `nbytes`."""
    part, _ = part_paths(dest)
    seen = []

    async def run():
        task = asyncio.create_task(download(remote, dest, local_only=True, on_progress=seen.append, **kw))
        while not part.exists() or part.stat().st_size < nbytes:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return seen


@pytest.mark.parametrize("server_honours_if_range", [True, False])
def test_a_file_that_changed_while_paused_starts_again_and_says_so(hub, remote, tmp_path, model_file,
                                                                 server_honours_if_range):
    hub.faults.throttle = 0.002
    dest = tmp_path / "m.gguf"
    pause_after(remote, dest, 20_000_000)
    new = changed_copy(model_file, tmp_path)
    hub.replace("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", model_file.name, new)
    hub.faults.throttle, hub.faults.ignore_if_range = 0, not server_honours_if_range
    seen = []
    fetch(remote, dest, on_progress=seen.append)  # resumed with what the app knew before the pause
    assert dest.read_bytes() == new.read_bytes()  # the server's file as it is now, nothing of the old one
    assert [p.notice for p in seen if p.notice] == [downloads.FILE_CHANGED]
    assert seen[-1].done == seen[-1].total == new.stat().st_size
    assert not part_paths(dest)[0].exists() and not part_paths(dest)[1].exists()


@pytest.mark.parametrize("server_honours_if_range", [True, False])
def test_a_changed_file_whose_checksum_nobody_states_is_not_glued_on(hub, remote, tmp_path, model_file,
                                                                    server_honours_if_range):
    # A plain server (no X-Linked-Etag): only its ETag says the file is another one now.
    hub.faults.plain, hub.faults.ignore_if_range = True, not server_honours_if_range
    dest = tmp_path / "m.gguf"
    part = paused_at(remote, dest, model_file)
    before = part.read_bytes()
    hub.replace("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", model_file.name, changed_copy(model_file, tmp_path))
    with pytest.raises(DownloadError, match="“m.gguf” changed on the server since the download started, and the "
                                            "server does not say what the new file's checksum is"):
        fetch(remote, dest)
    assert part.read_bytes() == before and not dest.exists()


def test_the_old_part_stays_until_the_new_file_arrives(hub, remote, tmp_path, model_file):
    dest = tmp_path / "m.gguf"
    part = paused_at(remote, dest, model_file)
    before = part.read_bytes()
    hub.replace("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", model_file.name, changed_copy(model_file, tmp_path))
    hub.faults.drop_after = 0  # the new file's answer breaks off before its first byte
    with pytest.raises(DownloadError, match="kept failing"):
        fetch(remote, dest, max_attempts=1)
    assert part.read_bytes() == before  # nothing was lost for an answer that never came


def test_a_part_of_an_older_version_is_replaced_with_a_sentence(hub, remote, tmp_path, model_file):
    # The hub is asked again after the pause (as `hearth models pull` does): it lists a new sha256.
    dest = tmp_path / "m.gguf"
    paused_at(remote, dest, model_file)
    new = hub.replace("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", model_file.name, changed_copy(model_file, tmp_path))
    seen = []
    fetch(dataclasses.replace(remote, size=new.size, sha256=new.sha256, etag=""), dest, on_progress=seen.append)
    assert dest.read_bytes() == new.path.read_bytes()
    assert [p.notice for p in seen if p.notice] == [downloads.FILE_CHANGED]
    assert [r for m, _, r in hub.requests if m == "GET"] == [""]  # no range of the old file was asked for


def test_a_server_that_ignores_the_range_says_the_download_starts_over(hub, remote, tmp_path, model_file):
    dest = tmp_path / "m.gguf"
    paused_at(remote, dest, model_file)
    hub.faults.ignore_range = True
    seen = []
    assert fetch(remote, dest, on_progress=seen.append).read_bytes() == model_file.read_bytes()
    assert [p.notice for p in seen if p.notice] == [
        "The server sent “m.gguf” from the beginning again instead of the rest; starting again from the beginning."]


def test_a_complete_part_is_checked_not_fetched_again(hub, remote, tmp_path, model_file):
    dest = tmp_path / "m.gguf"
    paused_at(remote, dest, model_file, have=remote.size)  # the app died between the last byte and the rename
    assert fetch(remote, dest).read_bytes() == model_file.read_bytes()
    assert hub.requests == []


def test_a_complete_part_answered_with_416_is_checked_not_failed(hub, remote, tmp_path, model_file):
    # The sidecar expects more bytes than the hub's file has: the server answers the resume with
    # "416 Range Not Satisfiable, bytes */SIZE". The .part is that whole file, and its sha256 says so.
    listed = dataclasses.replace(remote, size=remote.size + 1000)
    dest = tmp_path / "m.gguf"
    paused_at(listed, dest, model_file, have=remote.size)
    assert fetch(listed, dest).read_bytes() == model_file.read_bytes()
    assert [r for m, _, r in hub.requests if m == "GET"] == [f"bytes={remote.size}-"]


def test_a_complete_part_with_the_wrong_bytes_is_said_to_be_damaged(hub, remote, tmp_path, model_file):
    dest = tmp_path / "m.gguf"
    part = paused_at(remote, dest, model_file, have=remote.size)
    with open(part, "r+b") as fh:
        fh.write(b"\0" * 16)
    with pytest.raises(HashMismatch, match="“m.gguf” arrived damaged: its SHA-256 checksum does not match the one "
                                           "the hub lists for it, so it was deleted. Download it again."):
        fetch(remote, dest)
    assert list(tmp_path.iterdir()) == []


def test_the_header_of_a_hub_file_is_read_as_stored_or_not_at_all(hub, model_file):
    from desktop.core import hub as hub_module

    def read():
        return asyncio.run(hub_module.read_head(hub.url, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "main",
                                                model_file.name, local_only=True))

    assert read().architecture == "llama"
    assert all(h["accept-encoding"] == "identity" for h in hub.headers)
    hub.faults.gzip_range = 1
    with pytest.raises(hub_module.HubError, match=f"Could not read the start of “{model_file.name}”: the server "
                                                  "sent the file compressed \\(gzip\\)"):
        read()
