"""Resumable, verified downloads of model files.

A file is fetched with ranged GETs into `<name>.part`, next to a small sidecar
(`<name>.part.json`: URL, size, sha256, etag, revision), so a transfer continues from where it
stopped after a pause, a lost connection, a crash or a reboot. The sha256 is checked before the
file is renamed into place: a file under its final name is always complete and correct.
Transient failures retry with exponential backoff and jitter; a connection that delivers nothing
for `stall_timeout` seconds is reopened; permanent failures raise a DownloadError with a sentence.

What comes back is checked before a byte of it is written (RFC 9110 §13.1.5, §14.4, §15.3.7):
every request asks for `Accept-Encoding: identity` and a compressed body is refused; a resume
sends `If-Range` with the strong ETag the server gave for the bytes already here; a 206 must carry
`Content-Range: bytes START-END/TOTAL` with START where the `.part` ends and TOTAL the file's
size. A file that changed on the server (a 200 to a resume with another ETag, or the hub's
`X-Linked-Etag`/`X-Linked-Size` naming another sha256 or size) restarts from the first byte with
a notice, and the old `.part` is overwritten only once the new file's bytes arrive.
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
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
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
    size: int  # bytes
    sha256: str  # lowercase hex, from the hub's LFS metadata
    etag: str = ""  # the strong ETag of the bytes at `url`, when known beforehand: sent as If-Range
    revision: str = ""


@dataclass(frozen=True)
class Progress:
    done: int  # bytes
    total: int  # bytes
    bytes_per_s: float
    notice: str = ""  # a sentence for the user about this transfer, e.g. FILE_CHANGED; "" for none

    @property
    def eta_s(self) -> float | None:
        if self.bytes_per_s <= 0:
            return None
        return (self.total - self.done) / self.bytes_per_s


class _Retry(Exception):
    """A failure worth another attempt."""


class _Restart(Exception):
    """The server's file is not the one the `.part` holds: ask again from the first byte."""


FILE_CHANGED = "The file changed on the server since the download was paused; starting again from the beginning."
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
IDENTITY = {"Accept-Encoding": "identity"}  # bytes as stored: offsets in a .part are offsets in the file


def strong_etag(value: str | None) -> str:
    """`value` if it is a strong entity tag (`"..."`, RFC 9110 §8.8.3), else "": a weak one
    (`W/"..."`) may not be used in If-Range."""
    value = (value or "").strip()
    return value if len(value) >= 2 and value[0] == value[-1] == '"' else ""


def refused_encoding(response: httpx.Response) -> str:
    """A sentence if the body is content-coded (gzip, br, ...) although identity was asked for,
    else "". Such a body's bytes are not the file's bytes at the offsets asked for."""
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        return ""
    return f"the server sent the file compressed ({coding}) although Hearth asked for it as stored"


def content_range(response: httpx.Response, start: int, total: int | None) -> tuple[int, int] | str:
    """Check a 206 answer to `Range: bytes=START-...` (RFC 9110 §14.4): its `Content-Range` must be
    `bytes START-END/TOTAL` with the START asked for and, when `total` is given, that TOTAL (bytes);
    a `Content-Length` must match. Returns (start, end) with `end` exclusive, or a sentence (for
    a failure's reason) saying what was wrong."""
    header = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        return (f"the server answered a range request with “Content-Range: {header[:60]}”" if header else
                "the server answered a range request without saying which bytes it sent")
    first, last, size = (int(g) for g in match.groups())
    if first != start:
        return f"the server sent bytes from {first:,} when Hearth asked for bytes from {start:,}"
    if last < first or last >= size:
        return f"the server sent an impossible range ({header.strip()})"
    if total is not None and size != total:
        return f"the server said the file has {size:,} bytes where the hub lists {total:,}"
    length = response.headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) != last - first + 1:
        return f"the server's Content-Length ({int(length):,}) does not match its Content-Range ({header.strip()})"
    return first, last + 1


def _linked(response: httpx.Response) -> tuple[str, int | None]:
    """What the hub says about the file behind the URL: (sha256 or "", size or None). The hub's
    own answer (the redirect to its CDN, or the answer itself) carries `X-Linked-Etag` (for an LFS
    file the quoted sha256) and `X-Linked-Size`, as huggingface_hub's `get_hf_file_metadata` reads them."""
    for hop in (*response.history, response):
        etag, size = hop.headers.get("X-Linked-Etag"), hop.headers.get("X-Linked-Size")
        if etag is None and size is None:
            continue
        digest = (etag or "").strip().removeprefix("W/").strip('"').lower()
        return (digest if _SHA256.fullmatch(digest) else "",
                int(size) if size is not None and size.strip().isdigit() else None)
    return "", None


def _same_file(saved: dict, remote: RemoteFile) -> bool:
    """Whether a sidecar describes the file `remote` names: by sha256 and size when both sides
    know the hash (a new commit that left the file alone keeps the partial download), else by
    URL and size."""
    if saved.get("size") != remote.size:
        return False
    if saved.get("sha256") and remote.sha256:
        return str(saved["sha256"]).lower() == remote.sha256.lower()
    return saved.get("url") == remote.url and saved.get("revision", "") == remote.revision


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
    """Fetch `remote` to `dest`, resuming a previous partial transfer when it is the same file.
    Returns `dest`. Raises DownloadError (HashMismatch when the bytes do not match the sha256)
    with a sentence; a notice for the user (FILE_CHANGED) arrives as `Progress.notice`."""
    return (await fetch_file(remote, dest, token=token, on_progress=on_progress, stall_timeout=stall_timeout,
                             max_attempts=max_attempts, backoff_s=backoff_s, local_only=local_only))[0]


async def fetch_file(remote: RemoteFile, dest: Path, *, token: str | None = None,
                     on_progress: Callable[[Progress], None] | None = None,
                     stall_timeout: float = 30.0, max_attempts: int = 8, backoff_s: float = 0.5,
                     local_only: bool = False) -> tuple[Path, RemoteFile]:
    """`download`, also returning the file as it arrived: when the hub's file changed since
    `remote` was looked up, the size and sha256 the hub now states for it (and that were verified)."""
    part, sidecar = part_paths(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        saved = json.loads(sidecar.read_text()) if part.exists() else None
    except (OSError, ValueError):
        saved = None
    saved = saved if isinstance(saved, dict) else None
    stale = 0  # bytes of a .part that is not this file: kept until the new file's bytes arrive
    if part.exists():
        size = part.stat().st_size
        if saved is None or not _same_file(saved, remote) or size > remote.size:
            stale = size
            if saved is not None and not _same_file(saved, remote):  # another version of this file
                log.info("download %s: %s", dest.name, FILE_CHANGED)
                if on_progress:
                    on_progress(Progress(0, remote.size, 0.0, FILE_CHANGED))
            saved = None
    etag = strong_etag((saved or {}).get("etag")) or strong_etag(remote.etag)
    have = 0 if stale else part.stat().st_size if part.exists() else 0
    need = remote.size - have
    free = free_disk(dest.parent) + stale
    if need + DISK_MARGIN > free:
        raise DownloadError(f"Not enough free disk for “{dest.name}”: it needs {human_bytes(need)} more "
                            f"and {human_bytes(free)} is free. Free some space, then resume.")
    if not stale:  # beside a stale .part its own sidecar stays until the new bytes replace it
        write_json(sidecar, dict(asdict(remote), etag=etag), indent=None)

    if have:  # resuming: hash what is already there, off the event loop
        digest, have = await asyncio.to_thread(hash_file, part)
        state = _State(have, digest)
    else:
        state = _State(0, hashlib.sha256())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transfer = _Transfer(remote, part, state, headers, dest.name, on_progress, stall_timeout, max_attempts,
                         backoff_s, local_only, etag=etag, sidecar=sidecar)
    try:
        await _in_thread(transfer)
    except DownloadError:
        if not part.exists():
            sidecar.unlink(missing_ok=True)  # nothing arrived: leave nothing behind
        raise

    got = transfer.expect
    if got.sha256 and state.digest.hexdigest() != got.sha256.lower():
        part.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise HashMismatch(f"“{dest.name}” arrived damaged: its SHA-256 checksum does not match the one the "
                           "hub lists for it, so it was deleted. Download it again.")
    os.replace(part, dest)
    sidecar.unlink(missing_ok=True)
    return dest, got


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
                 on_progress, stall_timeout: float, max_attempts: int, backoff_s: float, local_only: bool, *,
                 etag: str, sidecar: Path):
        self.part, self.state, self.headers, self.name = part, state, headers, name
        self.expect = remote  # the file as the server now has it: replaced if it changes on the server
        self.etag, self.sidecar = etag, sidecar  # the server's strong ETag for the bytes in the .part
        self._remembered: dict | None = None
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
        state, attempt = self.state, 0
        with net.client(local_only=self.local_only,
                        timeout=httpx.Timeout(self.stall_timeout, connect=15.0)) as client:
            while state.have < self.expect.size and not self._stopped.is_set():
                before = state.have
                try:
                    self._fetch(client, hasher, report)
                except _Restart:
                    attempt = 0  # not a failure: the next request asks for the new file from byte 0
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

    def _notice(self, report, text: str) -> None:
        log.info("download %s: %s", self.name, text)
        if report:
            report(Progress(self.state.have, self.expect.size, 0.0, text))

    def _from_the_start(self, hasher: _Hasher, report, text: str) -> None:
        """Forget the bytes on disk (they stay there until the new file's first bytes replace them)."""
        hasher.restart()
        self.state.have = 0
        self._notice(report, text)

    def _adopt(self, sha256: str, size: int | None) -> None:
        """The hub's file changed: from now on expect what the hub says it is now."""
        if not sha256 and self.expect.sha256:
            raise DownloadError(f"“{self.name}” changed on the server since the download started, and the server "
                                "does not say what the new file's checksum is, so Hearth cannot check it. What "
                                "arrived is kept; look the model up again to download its new version.")
        self.expect = replace(self.expect, sha256=sha256 or self.expect.sha256,
                              size=size if size is not None else self.expect.size)

    def _remember(self) -> None:
        """Write the sidecar for the bytes now in the .part: what file they are and the server's ETag."""
        record = dict(asdict(self.expect), etag=self.etag)
        if record != self._remembered:
            write_json(self.sidecar, record, indent=None)
            self._remembered = record

    def _check(self, response: httpx.Response, hasher: _Hasher, report) -> tuple[int, int]:
        """Judge an answer before a byte of it is written: returns (start, end) of the bytes it
        brings (end exclusive). Raises _Retry (a failed attempt, the .part untouched), _Restart
        (another version of the file: nothing written, the next request starts from byte 0) or
        DownloadError."""
        state, name = self.state, self.name
        status = response.status_code
        if status in (401, 403, 404):
            raise _permanent(status, name)
        if status == 416:
            return self._unsatisfiable(response, hasher, report)
        if status >= 500 or status == 429:
            raise _Retry(f"HTTP {status}")
        if status not in (200, 206):
            raise _permanent(status, name)
        if why := refused_encoding(response):
            raise _Retry(why)
        sha, linked_size = _linked(response)
        etag = strong_etag(response.headers.get("ETag"))
        size = linked_size
        if status == 206 and size is None and (m := _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))):
            size = int(m.group(3))
        elif status == 200 and size is None and response.headers.get("Content-Length", "").isdigit():
            size = int(response.headers["Content-Length"])
        if sha:  # the hub names the content itself: a new ETag alone (another CDN, a re-upload) is no change
            changed = (bool(self.expect.sha256) and sha != self.expect.sha256.lower()
                       or linked_size is not None and linked_size != self.expect.size)
        else:
            changed = (linked_size is not None and linked_size != self.expect.size
                       or bool(self.etag and etag and etag != self.etag))
        if changed:
            self._adopt(sha, size)
        self.etag = etag or ("" if changed else self.etag)
        if status == 206:
            if changed and state.have:  # a server that ignored If-Range: these bytes are the new file's
                self._from_the_start(hasher, report, FILE_CHANGED)
                raise _Restart
            checked = content_range(response, state.have, self.expect.size)
            if isinstance(checked, str):
                raise _Retry(checked)
            return checked
        # 200: the whole file, from its first byte
        if size is not None and size != self.expect.size:
            raise _Retry(f"the server sent {size:,} bytes for a file of {self.expect.size:,}")
        if state.have:
            self._from_the_start(hasher, report, FILE_CHANGED if changed else (
                f"The server sent “{name}” from the beginning again instead of the rest; starting again "
                "from the beginning."))
        return 0, self.expect.size

    def _unsatisfiable(self, response: httpx.Response, hasher: _Hasher, report) -> tuple[int, int]:
        """416: the server's file ends at or before the bytes already here. If it ends exactly
        there, the .part may be the whole file: the sha256 decides. Else the file changed."""
        match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
        if not match:
            raise _Retry("HTTP 416")
        size, state = int(match.group(1)), self.state
        hasher.settle()
        if size == state.have and self.expect.sha256 and state.digest.hexdigest() == self.expect.sha256.lower():
            self.expect = replace(self.expect, size=size)  # complete: the hub listed another size
            raise _Restart
        sha, _ = _linked(response)
        self._adopt(sha, size)
        self._from_the_start(hasher, report, FILE_CHANGED)
        raise _Restart

    def _fetch(self, client: httpx.Client, hasher: _Hasher, report) -> None:
        """One GET for the rest of the file (a ranged one if bytes are on disk), checked, then
        written after what is on disk while the state follows."""
        import httpx
        state, name = self.state, self.name
        wanted = dict(self.headers, **IDENTITY)
        if state.have:
            wanted["Range"] = f"bytes={state.have}-"
            if self.etag:  # RFC 9110 §13.1.5: the rest if the file is still this version, else all of it
                wanted["If-Range"] = self.etag
        out = None
        try:
            with client.stream("GET", self.expect.url, headers=wanted) as response:
                self._watch(response)
                start, end = self._check(response, hasher, report)
                started, window_bytes, last_report = time.monotonic(), 0, 0.0
                # Chunks as received (up to net.BLOCKING_READ_BYTES; no re-chunking copies). A
                # stall ends in a ReadTimeout: the client's read timeout is the stall timeout.
                for chunk in response.iter_raw():
                    if self._stopped.is_set():
                        return  # what was written stays; bytes still buffered are not wanted
                    if state.have + len(chunk) > end:
                        raise _Retry(f"the server sent more than the {end - start:,} bytes it announced")
                    if out is None:  # the first bytes of a checked answer: only now is the .part changed
                        out = open(self.part, "r+b" if state.have and self.part.exists() else "wb")
                        if state.have:  # continue right after the verified bytes
                            out.seek(state.have)
                            out.truncate()
                        hasher.track(out.fileno())
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
                    if state.have == start + len(chunk):
                        self._remember()  # the sidecar now describes what the .part holds
                    window_bytes += len(chunk)
                    now = time.monotonic()
                    if report and (now - last_report >= PROGRESS_EVERY_S or state.have >= self.expect.size):
                        report(Progress(state.have, self.expect.size, window_bytes / max(now - started, 1e-6)))
                        last_report = now
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
        except httpx.ReadTimeout:
            raise _Retry(f"no data for {self.stall_timeout:.0f} s") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise _Retry(type(exc).__name__) from exc
        finally:
            if out is not None:
                out.close()
            self._watch(None)
        if state.have < end:
            raise _Retry(f"the connection closed at {human_bytes(state.have)} of {human_bytes(self.expect.size)}")


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
    """Download every file of one quantization (split parts in order) and add it to the library.
    The record carries the sha256 and size the files arrived with (the hub's, checked)."""
    from desktop.core import hub

    folder = model_folder(library, files.repo)
    sizes = [f.size for f in variant.files]
    paths, first_sha = [], variant.files[0].sha256
    for i, f in enumerate(variant.files):
        def report(p: Progress, i: int = i) -> None:
            sizes[i] = p.total  # a file that changed on the hub may have another size now
            if on_progress:
                on_progress(Progress(sum(sizes[:i]) + p.done, sum(sizes), p.bytes_per_s, p.notice))

        dest = folder / hub.safe_filename(f.name)
        if len(variant.files) > 1 and dest.exists() and dest.stat().st_size == f.size:
            report(Progress(f.size, f.size, 0.0))  # a part finished before a pause: only verified
            paths.append(dest)                      # files get their final name
            continue
        remote = RemoteFile(url=hub.file_url(endpoint_url, files.repo, files.revision, f.name), size=f.size,
                            sha256=f.sha256, revision=files.revision)
        path, got = await fetch_file(remote, dest, token=token, on_progress=report, local_only=local_only)
        paths.append(path)
        sizes[i] = got.size
        if i == 0:
            first_sha = got.sha256
    return library.add_downloaded(paths[0], repo=files.repo, file=variant.files[0].name, revision=files.revision,
                                  sha256=first_sha, size=sum(sizes))


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
