"""The model manager's download queue against the hub stand-in on 127.0.0.1: two at a time,
pause and resume without fetching again, jobs that survive a restart, cancel that cleans up, and
refusals that say why before anything is downloaded."""

import asyncio
import json

import pytest

from desktop.core import hub
from desktop.core.download_queue import DONE, FAILED, PAUSED, QUEUED, RUNNING, DownloadQueue
from desktop.core.downloads import part_paths
from tests.gguf_forge import split_gguf, write_gguf
from tests.hub_server import Hub

SIZE_MB = 8


def small_model(path, arch="llama", name="Tiny"):
    """A valid GGUF of about SIZE_MB MB (one F32 tensor) that the library accepts."""
    meta = {"general.architecture": arch, "general.name": name, f"{arch}.block_count": 2,
            f"{arch}.context_length": 2048, "general.file_type": 0}
    return write_gguf(path, meta, [("token_embd.weight", [1024, SIZE_MB * 256], 0)])


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    s = Hub().start()
    for n in range(3):
        s.add(f"test/Tiny{n}-GGUF", f"tiny{n}-F32.gguf", small_model(tmp_path / f"tiny{n}-F32.gguf", name=f"Tiny{n}"))
    meta = {"general.architecture": "llama", "general.name": "Split", "llama.block_count": 3, "general.file_type": 0}
    whole = write_gguf(tmp_path / "split-F32.gguf", meta,
                       [(f"blk.{i}.weight", [1024, SIZE_MB * 256 // 3], 0) for i in range(3)])
    for part in split_gguf(whole, 3, tmp_path / "parts"):
        s.add("test/Split-GGUF", part.name, part)
    yield s
    s.stop()


def make_queue(services, server):
    return DownloadQueue(services.library, services.paths.data / "downloads.json",
                         endpoint_url=lambda: server.url, token=lambda: None, local_only=lambda: True)


def files_of(server, repo):
    return asyncio.run(hub.repo_files(repo, endpoint_url=server.url))


def run_job(services, server, files, state):
    """Start one download and return its job once it reaches `state`."""
    async def scenario():
        queue = make_queue(services, server)
        job = queue.add(files, files.variants[0])
        await until(lambda: job.state == state)
        return job

    return asyncio.run(scenario())


async def until(predicate, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_at_most_two_download_at_once_and_the_rest_wait_their_turn(services, server):
    server.faults.throttle = 0.01
    repos = [files_of(server, f"test/Tiny{n}-GGUF") for n in range(3)]

    async def scenario():
        queue = make_queue(services, server)
        jobs = [queue.add(f, f.variants[0]) for f in repos]
        assert [j.state for j in jobs] == [RUNNING, RUNNING, QUEUED]
        queue.pause(jobs[0].id)  # a slot frees: the third starts
        assert [j.state for j in jobs] == [PAUSED, RUNNING, RUNNING]
        server.faults.throttle = 0
        queue.resume(jobs[0].id)
        assert jobs[0].state == QUEUED
        for job in jobs:
            await until(lambda job=job: job.state == DONE)
        return jobs

    jobs = asyncio.run(scenario())
    installed = {m.repo: m for m in services.library.models()}
    assert set(installed) == {f"test/Tiny{n}-GGUF" for n in range(3)}
    assert all(j.model_id == installed[j.repo].id for j in jobs)


def test_pause_keeps_the_bytes_and_resume_fetches_only_the_rest(services, server):
    server.faults.throttle = 0.005
    files = files_of(server, "test/Tiny0-GGUF")
    size = files.variants[0].size

    async def scenario():
        queue = make_queue(services, server)
        job = queue.add(files, files.variants[0])
        await until(lambda: job.done > size // 3)
        queue.pause(job.id)
        await asyncio.sleep(0.2)
        part, _ = part_paths(services.paths.models / "test" / "Tiny0-GGUF" / "tiny0-F32.gguf")
        kept = part.stat().st_size
        assert job.state == PAUSED and kept >= size // 3
        served = server.bytes_served
        server.faults.throttle = 0
        queue.resume(job.id)
        await until(lambda: job.state == DONE)
        return kept, served

    kept, served_before = asyncio.run(scenario())
    refetched = server.bytes_served - served_before - (size - kept)
    assert refetched < size * 0.01
    assert services.library.find_downloaded("test/Tiny0-GGUF", "tiny0-F32.gguf") is not None


def test_a_split_model_paused_in_its_second_part_resumes_there_and_cancel_removes_every_part(services, server):
    server.faults.throttle = 0.02
    files = files_of(server, "test/Split-GGUF")
    [variant] = files.variants
    first, second, third = (f.name for f in variant.files)
    folder = services.paths.models / "test" / "Split-GGUF"

    async def scenario():
        queue = make_queue(services, server)
        job = queue.add(files, variant)
        await until(lambda: job.done > variant.files[0].size + 100_000)
        queue.pause(job.id)
        await asyncio.sleep(0.2)
        part, _ = part_paths(folder / second)
        assert job.state == PAUSED and (folder / first).exists() and not (folder / second).exists()
        kept = part.stat().st_size
        server.faults.throttle = 0
        del server.requests[:]
        queue.resume(job.id)
        await until(lambda: job.state == DONE)
        assert job.done == job.total == variant.size
        return kept

    kept = asyncio.run(scenario())
    gets = [(path.rsplit("/", 1)[-1], wanted) for method, path, wanted in server.requests if method == "GET"]
    assert [g for g in gets if g[1] != "bytes=0-262143"] == [(second, f"bytes={kept}-"), (third, "")]
    [model] = services.library.models()
    assert model.size == variant.size and sorted(p.name for p in folder.iterdir()) == [first, second, third]

    services.library.remove(model.id)
    server.faults.throttle = 0.02

    async def cancel_in_the_second_part():
        queue = make_queue(services, server)
        job = queue.add(files, variant)
        await until(lambda: job.done > variant.files[0].size + 100_000)
        return await queue.cancel(job.id)

    assert asyncio.run(cancel_in_the_second_part()) > variant.files[0].size  # the finished first part went too
    assert not folder.exists() or not any(folder.iterdir())


def test_downloads_interrupted_by_a_crash_come_back_paused_with_their_bytes(services, server):
    server.faults.throttle = 0.005
    files = files_of(server, "test/Tiny1-GGUF")
    size = files.variants[0].size

    async def first_run():
        queue = make_queue(services, server)
        job = queue.add(files, files.variants[0])
        await until(lambda: job.done > size // 2)
        await queue.close()  # as if the app died: the saved state still says "downloading"

    asyncio.run(first_run())
    saved = json.loads((services.paths.data / "downloads.json").read_text())
    assert saved[0]["state"] == RUNNING and "token" not in json.dumps(saved).lower()
    server.faults.throttle = 0

    async def second_run():
        queue = make_queue(services, server)
        [job] = queue.jobs.values()
        assert job.state == PAUSED and job.done >= size // 2  # counted from the bytes on disk
        served = server.bytes_served
        queue.resume(job.id)
        await until(lambda: job.state == DONE)
        return server.bytes_served - served, job.done

    again, resumed_from = asyncio.run(second_run())
    assert again <= size - size // 2 + 65536


def test_cancel_deletes_what_arrived(services, server):
    server.faults.throttle = 0.01
    files = files_of(server, "test/Tiny2-GGUF")

    async def scenario():
        queue = make_queue(services, server)
        job = queue.add(files, files.variants[0])
        await until(lambda: job.done > 1_000_000)
        return await queue.cancel(job.id), queue

    freed, queue = asyncio.run(scenario())
    folder = services.paths.models / "test" / "Tiny2-GGUF"
    assert freed > 1_000_000
    assert not any(folder.glob("*")) if folder.exists() else True
    assert not queue.jobs and services.library.models() == []


def test_a_model_llama_cpp_does_not_know_is_refused_before_it_downloads(services, server, tmp_path):
    odd = small_model(tmp_path / "odd-F32.gguf", arch="hearthnet", name="Odd")
    server.add("test/Odd-GGUF", odd.name, odd)
    job = run_job(services, server, files_of(server, "test/Odd-GGUF"), FAILED)
    assert "hearthnet" in job.error and "does not know" in job.error
    assert server.bytes_served <= hub.HEAD_BYTES[0]  # only the header was read
    assert not (services.paths.models / "test" / "Odd-GGUF").exists()


@pytest.mark.parametrize("fault, words", [
    ({"corrupt": True}, "checksum does not match"),
    ({"status": 401}, "gated or private"),
])
def test_a_failed_download_says_why_and_installs_nothing(services, server, fault, words):
    files = files_of(server, "test/Tiny0-GGUF")
    for key, value in fault.items():
        setattr(server.faults, key, value)
    job = run_job(services, server, files, FAILED)
    assert words in job.error
    assert services.library.models() == []
    assert not list((services.paths.models).rglob("*.gguf"))
