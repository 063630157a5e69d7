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
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from desktop.core import net
from desktop.core.errors import HearthError
from desktop.core.hardware import DISK_MARGIN, free_disk
from desktop.core.library import AlreadyInstalled, hash_file, safe_component
from desktop.core.units import human_bytes

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
    sidecar.write_text(json.dumps(record))

    if have:  # resuming: hash what is already there, off the event loop
        digest, have = await asyncio.to_thread(hash_file, part)
        state = _State(have, digest)
    else:
        state = _State(0, hashlib.sha256())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        await _transfer(remote, part, state, headers, dest.name, on_progress, stall_timeout,
                        max_attempts, backoff_s, local_only)
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


async def _transfer(remote: RemoteFile, part: Path, state: _State, headers: dict[str, str], name: str,
                    on_progress, stall_timeout: float, max_attempts: int, backoff_s: float,
                    local_only: bool) -> None:
    """Fetch until the whole file is on disk, retrying what is worth retrying."""
    attempt = 0
    async with net.async_client(local_only=local_only,
                                timeout=httpx.Timeout(stall_timeout, connect=15.0)) as client:
        while state.have < remote.size:
            before = state.have
            try:
                await _fetch(client, remote, part, state, headers, name, on_progress, stall_timeout)
            except _Retry as why:
                attempt = 0 if state.have > before else attempt + 1  # progress resets the count
                if attempt >= max_attempts:
                    raise DownloadError(f"The download of “{name}” kept failing ({why}). What arrived "
                                        f"({human_bytes(state.have)}) is kept; resume it later.") from None
                delay = min(30.0, backoff_s * 2 ** max(attempt - 1, 0)) * random.uniform(0.5, 1.5)
                log.info("download %s: %s; retry %d in %.1f s", name, why, attempt, delay)
                await asyncio.sleep(delay)


async def _fetch(client: httpx.AsyncClient, remote: RemoteFile, part: Path, state: _State,
                 headers: dict[str, str], name: str, on_progress, stall_timeout: float) -> None:
    """One ranged GET from what is on disk onwards, updating `state` as bytes are written."""
    wanted = dict(headers, Range=f"bytes={state.have}-") if state.have else dict(headers)
    try:
        async with client.stream("GET", remote.url, headers=wanted) as response:
            if response.status_code in (401, 403, 404):
                raise _permanent(response.status_code, name)
            if response.status_code == 416 or response.status_code >= 500 or response.status_code == 429:
                raise _Retry(f"HTTP {response.status_code}")
            if response.status_code == 200 and state.have:
                state.have, state.digest = 0, hashlib.sha256()  # the range was ignored: from the start
            elif response.status_code not in (200, 206):
                raise _permanent(response.status_code, name)
            started, window_bytes, last_report = time.monotonic(), 0, 0.0
            with open(part, "r+b" if state.have and part.exists() else "wb") as out:
                out.seek(state.have)
                out.truncate()
                # Chunks as they are received (no re-chunking copies). A stall ends in httpx's
                # ReadTimeout: the client's read timeout is the stall timeout.
                chunks = response.aiter_raw()
                try:
                    async for chunk in chunks:
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            if exc.errno == 28:  # ENOSPC
                                raise DownloadError(f"The disk filled up while downloading “{name}”. What "
                                                    f"arrived ({human_bytes(state.have)}) is kept: free some "
                                                    "space and resume.") from exc
                            raise
                        state.digest.update(chunk)
                        state.have += len(chunk)
                        window_bytes += len(chunk)
                        now = time.monotonic()
                        if on_progress and (now - last_report >= PROGRESS_EVERY_S or state.have >= remote.size):
                            on_progress(Progress(state.have, remote.size, window_bytes / max(now - started, 1e-6)))
                            last_report = now
                finally:
                    await chunks.aclose()  # at once, also when paused (cancelled)
                out.flush()
                os.fsync(out.fileno())
    except httpx.ReadTimeout:
        raise _Retry(f"no data for {stall_timeout:.0f} s") from None
    except httpx.TransportError as exc:
        raise _Retry(type(exc).__name__) from exc
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

        remote = RemoteFile(url=hub.file_url(endpoint_url, files.repo, files.revision, f.name), size=f.size,
                            sha256=f.sha256, revision=files.revision)
        paths.append(await download(remote, folder / hub.safe_filename(f.name), token=token,
                                    on_progress=report, local_only=local_only))
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
