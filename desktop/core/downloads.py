"""Resumable, verified downloads of model files.

A file is fetched with ranged GETs into `<name>.part`, next to a small sidecar
(`<name>.part.json`: URL, size, sha256, etag, revision), so a transfer continues from where it
stopped after a pause, a lost connection, a crash or a reboot. The sha256 is checked before the
file is renamed into place: a file under its final name is always complete and correct.
Transient failures retry with exponential backoff and jitter; a connection that delivers nothing
for `stall_timeout` seconds is reopened; permanent failures raise a DownloadError with a sentence.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from desktop.core import net
from desktop.core.errors import HearthError
from desktop.core.files import write_json
from desktop.core.hardware import DISK_MARGIN, free_disk
from desktop.core.library import AlreadyInstalled, hash_file, safe_component
from desktop.core.units import human_bytes

if TYPE_CHECKING:  # imported where used: httpx costs ~0.1 s, paid after the window shows
    import httpx

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5


class DownloadError(HearthError):
    pass


class HashMismatch(DownloadError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    url: str
    size: int
    sha256: str  # lowercase hex, from the hub's LFS metadata
    etag: str = ""
    revision: str = ""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    bytes_per_s: float

    @property
    def eta_s(self) -> float | None:
        if self.bytes_per_s <= 0:
            return None
        return (self.total - self.done) / self.bytes_per_s


class _Retry(Exception):
    """A failure worth another attempt."""


@dataclass
class _State:
    """What is on disk so far: its length and the hash of those bytes. Survives failed attempts."""

    have: int
    digest: "hashlib._Hash"


# Written bytes are pushed to the disk every this many bytes while the download runs, so the
# fsync before the file gets its name finds little left to write.
WRITE_BACK_EVERY = 64 << 20


class _Hasher:
    """Hashes (and writes back to disk) what the receiving thread has written, in a thread of its
    own: sha256 releases the GIL, so on two cores it no longer takes turns with receiving
    (0.65 CPU s per GB of the 1.6 it took). `settle()` waits until the digest covers every byte fed."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self._queue: queue.Queue = queue.Queue(maxsize=32)  # at most 32 MB waiting
        self._fd: int | None = None
        self._unsynced = 0
        self._thread = threading.Thread(target=self._run, name="download hash", daemon=True)
        self._thread.start()

    def track(self, fileno: int) -> None:
        """The file the next chunks go to, for writing back early (a copy of the descriptor, so the
        receiving thread may close its own at any time)."""
        self._queue.put(os.dup(fileno))

    def feed(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def restart(self) -> None:
        """The server ignored the range: hash from the first byte again."""
        self.settle()
        self.state.digest = hashlib.sha256()

    def settle(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    self._track(None)
                    return
                if isinstance(item, int):
                    self._track(item)
                    continue
                self.state.digest.update(item)
                self._unsynced += len(item)
                if self._unsynced >= WRITE_BACK_EVERY and self._fd is not None:
                    self._unsynced = 0
                    try:
                        os.fdatasync(self._fd) if hasattr(os, "fdatasync") else os.fsync(self._fd)
                    except OSError:  # only early: the fsync before the rename is the one that counts
                        pass
            finally:
                self._queue.task_done()

    def _track(self, fd: int | None) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._unsynced = fd, 0


def part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


def _permanent(status: int, name: str) -> DownloadError:
    if status in (401, 403):
        return DownloadError(f"The hub refused “{name}” ({status}): the model is gated or private. Accept "
                             "its licence on the model's page and add your hub token, then try again.")
    if status == 404:
        return DownloadError(f"“{name}” is not on the hub any more (404). The repository or file may "
                             "have been renamed or removed.")
    return DownloadError(f"The hub answered {status} for “{name}”.")


async def download(remote: RemoteFile, dest: Path, *, token: str | None = None,
                   on_progress: Callable[[Progress], None] | None = None,
                   stall_timeout: float = 30.0, max_attempts: int = 8, backoff_s: float = 0.5,
                   local_only: bool = False) -> Path:
    """Fetch `remote` to `dest`, resuming a previous partial transfer when it is the same file."""
    part, sidecar = part_paths(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    record = asdict(remote)
    if part.exists():
        try:
            same = json.loads(sidecar.read_text()) == record
        except (OSError, ValueError):
            same = False
        if not same or part.stat().st_size > remote.size:
            part.unlink()  # another file, or another version of it: start over
    have = part.stat().st_size if part.exists() else 0
    need = remote.size - have
    free = free_disk(dest.parent)
    if need + DISK_MARGIN > free:
        raise DownloadError(f"Not enough free disk for “{dest.name}”: it needs {human_bytes(need)} more "
                            f"and {human_bytes(free)} is free. Free some space, then resume.")
    write_json(sidecar, record, indent=None)

    if have:  # resuming: hash what is already there, off the event loop
        digest, have = await asyncio.to_thread(hash_file, part)
        state = _State(have, digest)
    else:
        state = _State(0, hashlib.sha256())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        await _in_thread(_Transfer(remote, part, state, headers, dest.name, on_progress, stall_timeout,
                                   max_attempts, backoff_s, local_only))
    except DownloadError:
        if not part.exists():
            sidecar.unlink(missing_ok=True)  # nothing arrived: leave nothing behind
        raise

    if remote.sha256 and state.digest.hexdigest() != remote.sha256.lower():
        part.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise HashMismatch(f"“{dest.name}” arrived damaged: its checksum does not match the hub's, so it "
                           "was deleted. Download it again.")
    os.replace(part, dest)
    sidecar.unlink(missing_ok=True)
    return dest


async def _in_thread(transfer: "_Transfer") -> None:
    """Run the transfer in its own thread: receiving, writing and hashing stay off the event loop
    (which is the window's thread). Cancelling the caller stops the transfer at once, mid-read
    too, and returns only when the thread has let go of the file."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not done.done():
            done.set_exception(error) if error else done.set_result(None)

    def run() -> None:
        try:
            transfer.run(loop)
        except BaseException as exc:  # handed to the awaiting coroutine
            error: BaseException | None = exc
        else:
            error = None
        transfer.post(loop, settle, error)

    thread = threading.Thread(target=run, name=f"download {transfer.name}", daemon=True)
    thread.start()
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        transfer.stop()
        await asyncio.to_thread(thread.join)  # it lets go of the file within one read
        if done.done() and not done.cancelled():
            done.exception()  # retrieved: a stopped transfer's own error is not news
        raise


_running: set["_Transfer"] = set()
_running_lock = threading.Lock()


def stop_all() -> None:
    """The app is closing: end every transfer at once, from any thread, without the event loop
    (which may be gone before a cancelled task gets to run). What arrived stays on disk."""
    with _running_lock:
        transfers = list(_running)
    for transfer in transfers:
        transfer.stop(abandon=True)


class _Transfer:
    """Fetches until the whole file is on disk, retrying what is worth retrying. Runs in a thread."""

    def __init__(self, remote: RemoteFile, part: Path, state: _State, headers: dict[str, str], name: str,
                 on_progress, stall_timeout: float, max_attempts: int, backoff_s: float, local_only: bool):
        self.remote, self.part, self.state, self.headers, self.name = remote, part, state, headers, name
        self.on_progress, self.stall_timeout = on_progress, stall_timeout
        self.max_attempts, self.backoff_s, self.local_only = max_attempts, backoff_s, local_only
        self._stopped = threading.Event()
        self._abandoned = False  # nobody waits for it any more: tell the event loop nothing
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def stop(self, *, abandon: bool = False) -> None:
        """From any thread: end the transfer; a read in progress returns at once."""
        with self._lock:
            self._abandoned = self._abandoned or abandon
            self._stopped.set()
            self._shut()

    def post(self, loop: asyncio.AbstractEventLoop, callback, *args) -> None:
        """Run `callback` on the event loop, unless the loop or its waiter is gone."""
        if self._abandoned or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # closed meanwhile
            pass

    def _shut(self) -> None:
        if self._socket is not None:
            try:  # the plain socket's shutdown, also under TLS: wakes a blocked read in the other thread
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)
            except OSError:
                pass

    def _watch(self, response: httpx.Response | None) -> None:
        stream = response.extensions.get("network_stream") if response is not None else None
        with self._lock:
            self._socket = stream.get_extra_info("socket") if stream is not None else None
            if self._stopped.is_set():
                self._shut()

    def run(self, loop: asyncio.AbstractEventLoop) -> None:
        with _running_lock:
            _running.add(self)
        try:
            self._run(loop)
        finally:
            with _running_lock:
                _running.discard(self)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        report = None
        if self.on_progress:
            def report(p: Progress) -> None:
                self.post(loop, self.on_progress, p)
        hasher = _Hasher(self.state)
        try:
            self._fetch_all(hasher, report)
        finally:
            hasher.close()  # the digest covers every byte written, whatever happened

    def _fetch_all(self, hasher: _Hasher, report) -> None:
        import httpx
        state, remote, attempt = self.state, self.remote, 0
        with net.client(local_only=self.local_only,
                        timeout=httpx.Timeout(self.stall_timeout, connect=15.0)) as client:
            while state.have < remote.size and not self._stopped.is_set():
                before = state.have
                try:
                    self._fetch(client, hasher, report)
                except _Retry as why:
                    if self._stopped.is_set():
                        return
                    attempt = 0 if state.have > before else attempt + 1  # progress resets the count
                    if attempt >= self.max_attempts:
                        raise DownloadError(f"The download of “{self.name}” kept failing ({why}). What arrived "
                                            f"({human_bytes(state.have)}) is kept; resume it later.") from None
                    delay = min(30.0, self.backoff_s * 2 ** max(attempt - 1, 0)) * random.uniform(0.5, 1.5)
                    log.info("download %s: %s; retry %d in %.1f s", self.name, why, attempt, delay)
                    self._stopped.wait(delay)

    def _fetch(self, client: httpx.Client, hasher: _Hasher, report) -> None:
        """One ranged GET from what is on disk onwards, updating the state as bytes are written."""
        import httpx
        state, remote, name = self.state, self.remote, self.name
        wanted = dict(self.headers, Range=f"bytes={state.have}-") if state.have else dict(self.headers)
        try:
            with client.stream("GET", remote.url, headers=wanted) as response:
                self._watch(response)
                status = response.status_code
                if status in (401, 403, 404):
                    raise _permanent(status, name)
                if status == 416 or status >= 500 or status == 429:
                    raise _Retry(f"HTTP {status}")
                if status == 200 and state.have:
                    hasher.restart()  # the range was ignored: from the start
                    state.have = 0
                elif status not in (200, 206):
                    raise _permanent(status, name)
                started, window_bytes, last_report = time.monotonic(), 0, 0.0
                with open(self.part, "r+b" if state.have and self.part.exists() else "wb") as out:
                    if state.have:  # continue right after the verified bytes
                        out.seek(state.have)
                        out.truncate()
                    hasher.track(out.fileno())
                    # Chunks as received (up to net.BLOCKING_READ_BYTES; no re-chunking copies). A
                    # stall ends in a ReadTimeout: the client's read timeout is the stall timeout.
                    for chunk in response.iter_raw():
                        if self._stopped.is_set():
                            return  # what was written stays; bytes still buffered are not wanted
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            if exc.errno == errno.ENOSPC:
                                raise DownloadError(f"The disk filled up while downloading “{name}”. What "
                                                    f"arrived ({human_bytes(state.have)}) is kept: free some "
                                                    "space and resume.") from exc
                            raise
                        hasher.feed(chunk)
                        state.have += len(chunk)
                        window_bytes += len(chunk)
                        now = time.monotonic()
                        if report and (now - last_report >= PROGRESS_EVERY_S or state.have >= remote.size):
                            report(Progress(state.have, remote.size, window_bytes / max(now - started, 1e-6)))
                            last_report = now
                    out.flush()
                    os.fsync(out.fileno())
        except httpx.ReadTimeout:
            raise _Retry(f"no data for {self.stall_timeout:.0f} s") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise _Retry(type(exc).__name__) from exc
        finally:
            self._watch(None)
        if state.have < remote.size:
            raise _Retry(f"the connection closed at {human_bytes(state.have)} of {human_bytes(remote.size)}")


def model_folder(library, repo: str) -> Path:
    publisher, name = (safe_component(part) for part in repo.split("/"))
    return library.paths.models / publisher / name


async def check_architecture(library, files, variant, *, endpoint_url: str, token: str | None,
                             local_only: bool) -> None:
    """Refuse, before the download, a model whose architecture this llama.cpp does not know.
    The header comes from the partial file when a download is resumed, else from a ranged GET."""
    from desktop.core import gguf, hub, runtime

    part, _ = part_paths(model_folder(library, files.repo) / hub.safe_filename(variant.files[0].name))
    if part.exists() and part.stat().st_size >= hub.HEAD_BYTES[0]:
        with open(part, "rb") as fh:
            head = gguf.read_head(fh.read(hub.HEAD_BYTES[-1]), part.name)
    else:
        try:
            head = await hub.read_head(endpoint_url, files.repo, files.revision, variant.files[0].name,
                                       token=token, local_only=local_only)
        except HearthError as exc:  # the download itself will say what is wrong, if anything
            log.info("could not read the header of %s: %s", files.repo, exc)
            return
    if head is not None and runtime.knows_architecture(head.architecture) is False:
        raise DownloadError(runtime.unknown_architecture_reason(head.architecture, files.repo))


async def fetch_variant(library, files, variant, *, endpoint_url: str, token: str | None = None,
                        on_progress: Callable[[Progress], None] | None = None, local_only: bool = False):
    """Download every file of one quantization (split parts in order) and add it to the library."""
    from desktop.core import hub

    folder = model_folder(library, files.repo)
    total = variant.size
    done_before = 0
    paths = []
    for f in variant.files:
        def report(p: Progress, offset: int = done_before) -> None:
            if on_progress:
                on_progress(Progress(offset + p.done, total, p.bytes_per_s))

        dest = folder / hub.safe_filename(f.name)
        if len(variant.files) > 1 and dest.exists() and dest.stat().st_size == f.size:
            report(Progress(f.size, f.size, 0.0))  # a part finished before a pause: only verified
            paths.append(dest)                      # files get their final name
        else:
            remote = RemoteFile(url=hub.file_url(endpoint_url, files.repo, files.revision, f.name), size=f.size,
                                sha256=f.sha256, revision=files.revision)
            paths.append(await download(remote, dest, token=token, on_progress=report, local_only=local_only))
        done_before += f.size
    first = variant.files[0]
    return library.add_downloaded(paths[0], repo=files.repo, file=first.name, revision=files.revision,
                                  sha256=first.sha256, size=total)


def discard_partial(library, repo: str, variant) -> int:
    """Delete what a cancelled download left (partial files, sidecars, finished parts of a split
    model that never became a model); returns the bytes freed."""
    from desktop.core import hub

    folder = model_folder(library, repo)
    freed = 0
    for f in variant.files:
        dest = folder / hub.safe_filename(f.name)
        part, sidecar = part_paths(dest)
        for path in (part, sidecar) + ((dest,) if len(variant.files) > 1 else ()):
            if path.exists() and library.find_path(path) is None:
                freed += path.stat().st_size
                path.unlink()
    return freed


def bytes_on_disk(library, repo: str, variant) -> int:
    """How much of a variant is already here (finished parts and partial files)."""
    from desktop.core import hub

    folder = model_folder(library, repo)
    have = 0
    for f in variant.files:
        dest = folder / hub.safe_filename(f.name)
        part, _ = part_paths(dest)
        have += dest.stat().st_size if dest.exists() else part.stat().st_size if part.exists() else 0
    return have


async def pull(library, ref: str, *, endpoint_url: str, token: str | None = None,
               on_progress: Callable[[Progress], None] | None = None, local_only: bool = False):
    """`REPO[:FILE|:QUANT]` from the hub into the library; run it again to continue an interrupted one."""
    from desktop.core import hub  # hub imports huggingface_hub: only when pulling

    repo, _, selector = ref.partition(":")
    if repo.count("/") != 1:
        raise DownloadError(f"“{repo}” is not a hub repository name: write it as publisher/name.")
    files = await hub.repo_files(repo, endpoint_url=endpoint_url, token=token)
    variant = hub.choose(files, selector)
    existing = library.find_downloaded(files.repo, variant.files[0].name)
    if existing is not None:
        raise AlreadyInstalled(existing)
    await check_architecture(library, files, variant, endpoint_url=endpoint_url, token=token, local_only=local_only)
    return await fetch_variant(library, files, variant, endpoint_url=endpoint_url, token=token,
                               on_progress=on_progress, local_only=local_only)
