"""The download queue behind the model manager: several downloads, at most two at a time.

Each job is one quantization of one hub repository. Pause stops the transfer and keeps every byte
on disk; Resume continues from there (downloads.py re-hashes what is there and asks for the rest);
Cancel deletes what arrived. The queue is kept in `downloads.json` (no secrets, only names and
sizes), so after the app is killed or the machine restarts the jobs come back as paused, with the
bytes already on disk counted, ready to resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from desktop.core import downloads
from desktop.core.errors import HearthError
from desktop.core.files import write_json
from desktop.core.hub import HubFile, RepoFiles, Variant
from desktop.core.library import AlreadyInstalled, Library

log = logging.getLogger(__name__)

MAX_ACTIVE = 2
QUEUED, RUNNING, PAUSED, FAILED, DONE = "queued", "downloading", "paused", "failed", "done"


@dataclass
class Job:
    id: int
    repo: str
    revision: str
    license: str
    quantization: str
    files: list[HubFile]
    state: str = QUEUED
    done: int = 0
    speed: float = 0.0
    error: str = ""
    notice: str = ""  # a sentence about the running transfer (downloads.FILE_CHANGED), shown with its progress
    model_id: str = ""
    added: float = field(default_factory=time.time)

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def variant(self) -> Variant:
        return Variant(self.quantization, tuple(self.files))

    @property
    def repo_files(self) -> RepoFiles:
        return RepoFiles(self.repo, self.revision, self.license, False, (self.variant,))

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.speed if self.state == RUNNING and self.speed > 0 else None

    @property
    def title(self) -> str:
        return f"{self.repo.split('/')[-1]} · {self.quantization}"


class DownloadQueue:
    def __init__(self, library: Library, path: Path, *, endpoint_url: Callable[[], str],
                 token: Callable[[], str | None], local_only: Callable[[], bool] = lambda: False,
                 max_active: int = MAX_ACTIVE) -> None:
        self.library = library
        self.path = path
        self.endpoint_url, self.token, self.local_only = endpoint_url, token, local_only
        self.max_active = max_active
        self.jobs: dict[int, Job] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.on_change: Callable[[Job], None] | None = None
        self.on_installed: Callable[[Job], None] | None = None
        self._load()

    # -- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("download queue %s unreadable (%s); starting empty", self.path, exc)
            return
        for raw in saved:
            try:
                job = Job(**dict(raw, files=[HubFile(**f) for f in raw["files"]]))
            except (TypeError, KeyError):
                continue
            if job.state in (QUEUED, RUNNING):
                job.state = PAUSED  # interrupted by a crash or a restart: the user resumes it
            if job.state != DONE:
                job.done = downloads.bytes_on_disk(self.library, job.repo, job.variant)
            job.speed = 0.0
            self.jobs[job.id] = job

    def _save(self) -> None:
        data = [asdict(j) for j in self.jobs.values()]
        write_json(self.path, data, indent=1)

    def _changed(self, job: Job, *, save: bool = True) -> None:
        if save:
            self._save()
        if self.on_change:
            self.on_change(job)

    # -- what the panel calls -----------------------------------------------------------------
    def add(self, files: RepoFiles, variant: Variant) -> Job:
        existing = self.library.find_downloaded(files.repo, variant.files[0].name)
        if existing is not None:
            raise AlreadyInstalled(existing)
        for job in self.jobs.values():
            if job.repo == files.repo and job.quantization == variant.quantization and job.state != DONE:
                if job.state in (PAUSED, FAILED):
                    self.resume(job.id)
                return job
        job = Job(id=max(self.jobs, default=0) + 1, repo=files.repo, revision=files.revision,
                  license=files.license, quantization=variant.quantization, files=list(variant.files))
        job.done = downloads.bytes_on_disk(self.library, job.repo, job.variant)
        self.jobs[job.id] = job
        self._changed(job)
        self._pump()
        return job

    def pause(self, job_id: int) -> None:
        job = self.jobs[job_id]
        if job.state in (QUEUED, RUNNING):
            job.state, job.speed = PAUSED, 0.0
            task = self._tasks.pop(job_id, None)
            if task:
                task.cancel()
            self._changed(job)
            self._pump()

    def resume(self, job_id: int) -> None:
        job = self.jobs[job_id]
        if job.state in (PAUSED, FAILED):
            job.state, job.error, job.notice = QUEUED, "", ""
            self._changed(job)
            self._pump()

    async def cancel(self, job_id: int) -> int:
        """Stop a download and delete what arrived; returns the bytes freed."""
        job = self.jobs.pop(job_id)
        task = self._tasks.pop(job_id, None)
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        freed = 0 if job.state == DONE else downloads.discard_partial(self.library, job.repo, job.variant)
        job.state = "cancelled"
        self._changed(job)
        self._pump()
        return freed

    def forget(self, job_id: int) -> None:
        """Take a finished or failed row off the list (its files stay)."""
        job = self.jobs[job_id]
        if job.state in (DONE, FAILED, PAUSED) and job_id not in self._tasks:
            del self.jobs[job_id]
            self._changed(replace(job, state="forgotten"))

    def halt(self) -> None:
        """Stop every transfer now, without waiting (the app is closing); the jobs stay resumable."""
        downloads.stop_all()  # the transfer threads end now, even if the event loop stops first
        for task in self._tasks.values():
            task.cancel()

    async def close(self) -> None:
        """halt(), then wait until every transfer has let go of its files."""
        tasks = list(self._tasks.values())
        self.halt()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # -- running ----------------------------------------------------------------------------
    def _pump(self) -> None:
        for job in sorted(self.jobs.values(), key=lambda j: j.added):
            if len(self._tasks) >= self.max_active:
                return
            if job.state == QUEUED and job.id not in self._tasks:
                job.state = RUNNING
                self._tasks[job.id] = asyncio.ensure_future(self._run(job))
                self._changed(job)

    async def _run(self, job: Job) -> None:
        def progress(p: downloads.Progress) -> None:
            job.done, job.speed = p.done, p.bytes_per_s
            if p.notice:
                job.notice = p.notice
            self._changed(job, save=bool(p.notice))

        # The keyring may be slow to answer (it starts up, or asks another process): not on the GUI thread.
        endpoint, token, local_only = self.endpoint_url(), await asyncio.to_thread(self.token), self.local_only()
        try:
            await downloads.check_architecture(self.library, job.repo_files, job.variant, endpoint_url=endpoint,
                                               token=token, local_only=local_only)
            record = await downloads.fetch_variant(self.library, job.repo_files, job.variant,
                                                   endpoint_url=endpoint, token=token, on_progress=progress,
                                                   local_only=local_only)
        except asyncio.CancelledError:
            return  # paused or cancelled: the caller has set the state
        except HearthError as exc:
            job.state, job.error, job.speed = FAILED, str(exc), 0.0
            job.done = downloads.bytes_on_disk(self.library, job.repo, job.variant)
        except Exception as exc:  # noqa: BLE001 - a sentence, and the details in the log
            log.error("download %s failed", job.title, exc_info=exc)
            job.state, job.speed = FAILED, 0.0
            job.error = (f"The download stopped because of an error inside Hearth ({type(exc).__name__}). "
                         "What arrived is kept: try Resume.")
        else:
            job.state, job.done, job.speed, job.model_id = DONE, job.total, 0.0, record.id
        finally:
            if self._tasks.get(job.id) is asyncio.current_task():
                del self._tasks[job.id]
        self._changed(job)
        self._pump()
        if job.state == DONE and self.on_installed:
            self.on_installed(job)
