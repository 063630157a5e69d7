"""Hearth under real faults: a workload in a real `hearth` process, a fault at a random moment,
then the checks a user cares about.

Workloads (each a real child process on one shared HEARTH_HOME, so history piles up round after
round): `hearth chat` on the real starter model, a regenerate of the last complete answer,
`hearth models import` (a 98 MB copy) and `hearth models pull` from the hub stand-in.

Faults: SIGKILL of the app, SIGKILL of its engine child, SIGSTOP for seconds while another
`hearth` command runs (its sweep must not take the paused writer for a dead one), then SIGCONT;
another program holding `BEGIN EXCLUSIVE` on hearth.db; a full disk (a small tmpfs).

After each round (`check`): `PRAGMA integrity_check` is ok, the full-text index passes its own
integrity check and has one row per message, every user message and every complete answer that
existed before is still there word for word (a complete answer may only gain newer versions),
no answer is left 'streaming' once its writer is gone, no engine child outlives its app, no file
in the models folder looks complete when it is not, and no process that was not killed printed a
traceback.

Used by tests/faults/test_faults.py (a short, fixed round of each kind, in `make test`) and
tests/bench/faults.py (many random rounds, in `make bench`; its counts go to README.md).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
PROMPTS = ("Tell me a long story about a lighthouse keeper.", "Explain how bread rises, step by step.",
           "Write a poem about the sea in winter.", "List twenty animals and one fact about each.",
           "Describe a walk through a forest in autumn.", "Why is the sky blue? Explain it to a child.")

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""

REGENERATE = """
import asyncio
from dataclasses import asdict
from desktop.core.services import open_services
from desktop.core.settings import Sampling

services = open_services()
row = services.store._db.execute(
    "SELECT conversation_id FROM messages WHERE role = 'assistant' AND status = 'complete'"
    " AND NOT superseded ORDER BY id DESC LIMIT 1").fetchone()

async def main():
    if row is None:
        return
    services.store.update_conversation(row[0], sampling=asdict(Sampling(max_tokens=300)))
    await services.chat.regenerate(row[0])
    await services.engine.stop()

try:
    asyncio.run(main())
finally:
    services.close()
"""

WORKLOADS = ("chat", "regenerate", "import", "pull")
FAULTS = ("kill_app", "kill_engine", "pause", "lock", "disk_full", "two_windows")
WINDOW_OPEN = "other launches hand over to it"  # what the window logs once it answers other launches


@dataclass
class Round:
    """One fault injected into one workload, and what the checks found afterwards."""

    workload: str
    fault: str
    delay_s: float
    injected: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def survived(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        what = "survived" if self.survived else "FAILED: " + "; ".join(self.problems)
        return f"{self.fault} during {self.workload} after {self.delay_s:.2f} s: {what}"


def hearth_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, HEARTH_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    env.pop("QT_QPA_PLATFORM", None)
    return env


def hearth(home: Path, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desktop", *args], capture_output=True, text=True,
                          timeout=timeout, env=hearth_env(home, **extra), cwd=ROOT)


def db_path(home: Path) -> Path:
    return home / "data" / "hearth.db"


def snapshot(home: Path) -> dict[int, tuple[str, str, str]]:
    """{message id: (role, content, status)} for every user message and complete answer."""
    path = db_path(home)
    if not path.exists():
        return {}
    db = sqlite3.connect(path, timeout=30)
    try:
        rows = db.execute("SELECT id, role, content, status FROM messages"
                          " WHERE role = 'user' OR status = 'complete'").fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def answer_streaming(home: Path, after_id: int) -> bool:
    path = db_path(home)
    if not path.exists():
        return False
    try:
        db = sqlite3.connect(path, timeout=0.2)
        try:
            row = db.execute("SELECT length(content) FROM messages WHERE id > ? AND role = 'assistant'"
                             " AND status = 'streaming' ORDER BY id DESC LIMIT 1", (after_id,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return bool(row and row[0])


def last_id(home: Path) -> int:
    path = db_path(home)
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
    finally:
        db.close()


def engines_of(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(proc.pid).children(recursive=True)
                if "engine" in " ".join(c.cmdline())]
    except psutil.Error:
        return []


class Lab:
    """A HEARTH_HOME with the starter model installed, a hub stand-in serving it, and a log of
    every round. `run_round` injects one fault; `check` says what a user lost, if anything."""

    def __init__(self, home: Path, model_file: Path, hub_url: str = "") -> None:
        self.home = home
        self.model_file = model_file
        self.hub_url = hub_url
        self.rounds: list[Round] = []
        self.engines_seen: set[int] = set()
        self.full_disk_said: list[str] = []  # what Hearth printed on a full disk, for the report
        home.mkdir(parents=True, exist_ok=True)
        out = hearth(home, "models", "import", "--link", str(model_file))
        if out.returncode != 0 and "already" not in out.stderr:
            raise RuntimeError(out.stderr)
        self.model_id = self._model_id()
        self.import_source = big_model(home.parent / "big-import.gguf")

    def _model_id(self) -> str:
        db = sqlite3.connect(db_path(self.home))
        try:
            return db.execute("SELECT id FROM models WHERE origin = 'linked' ORDER BY rowid LIMIT 1").fetchone()[0]
        finally:
            db.close()

    # -- workloads ------------------------------------------------------------------------------
    def start(self, workload: str, rng: random.Random, home: Path | None = None) -> subprocess.Popen:
        home = home or self.home
        py = [sys.executable, "-m", "desktop"]
        if workload == "chat":
            args = py + ["chat", "-m", self.model_id, "--max-tokens", "300", rng.choice(PROMPTS)]
        elif workload == "regenerate":
            args = [sys.executable, "-c", REGENERATE]
        elif workload == "import":
            args = py + ["models", "import", str(self.import_source)]
        elif workload == "pull":
            args = py + ["models", "pull", REPO, "--endpoint", self.hub_url]
        else:
            raise ValueError(workload)
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=hearth_env(home, HF_HOME=str(home / "hf")), cwd=ROOT)

    # -- one round ------------------------------------------------------------------------------
    def run_round(self, workload: str, fault: str, rng: random.Random) -> Round:
        """Run `workload`, inject `fault` at a random moment, let everything settle, check."""
        began = time.monotonic()
        # Imports (of a 629 MB file) and downloads last about three seconds here, chats a few.
        delay = rng.uniform(0.3, 2.0) if workload in ("import", "pull") else rng.uniform(0.0, 2.5)
        r = Round(workload, fault, delay)
        if workload in ("import", "pull"):
            self._forget_copies(workload)
        before = snapshot(self.home)
        after_id = last_id(self.home)
        if fault == "disk_full":
            r.injected, problems = self._disk_full(workload, rng)
            r.problems += problems
        elif fault == "two_windows":
            r.injected, problems = self._two_windows(workload, rng, after_id)
            r.problems += problems
        else:
            proc = self.start(workload, rng)
            killed = self._inject(proc, fault, delay, after_id, r)
            try:
                out, err = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                r.problems.append("the app did not finish within 240 s")
            if not killed:
                if "Traceback" in err:
                    r.problems.append("a traceback was printed: " + err.strip().splitlines()[-1])
                if fault in ("pause", "lock") and proc.returncode != 0:
                    r.problems.append(f"exit {proc.returncode} after a {fault}: {err.strip()[-300:]}")
                if err.count("\n") > 3 and proc.returncode != 0:
                    r.problems.append("more than a sentence on stderr: " + err.strip()[-300:])
            if workload in ("chat", "regenerate") and fault in ("pause", "lock") and r.injected:
                if not self._newest_answer_complete(after_id, workload):
                    r.problems.append("the answer was not saved complete after the " + fault)
        r.problems += self.check(before)
        r.seconds = time.monotonic() - began
        self.rounds.append(r)
        return r

    def _forget_copies(self, workload: str) -> None:
        """Remove the copy an earlier round imported or downloaded, so this round does the work again."""
        origin = "imported" if workload == "import" else "downloaded"
        db = sqlite3.connect(db_path(self.home), timeout=30)
        try:
            ids = [r[0] for r in db.execute("SELECT id FROM models WHERE origin = ?", (origin,))]
        finally:
            db.close()
        for model_id in ids:
            hearth(self.home, "models", "rm", model_id)

    def _inject(self, proc: subprocess.Popen, fault: str, delay: float, after_id: int, r: Round) -> bool:
        """Wait for the right moment, inject the fault; True when the app itself was killed."""
        streaming_workload = fault in ("kill_engine", "pause", "lock")
        deadline = time.monotonic() + 90
        if r.workload in ("chat", "regenerate") and (streaming_workload or delay > 1.0):
            # Most faults land while the answer streams: that is where data can be lost.
            while time.monotonic() < deadline and proc.poll() is None:
                if answer_streaming(self.home, after_id):
                    break
                time.sleep(0.02)
            time.sleep(delay / 4)
        else:
            time.sleep(delay)
        if proc.poll() is not None:
            return False  # it finished before the fault: the round still checks the data
        engines = engines_of(proc)
        self.engines_seen.update(e.pid for e in engines)
        if fault == "kill_app":
            proc.send_signal(signal.SIGKILL)
            r.injected = True
            proc.wait()
            psutil.wait_procs(engines, timeout=15)
            return True
        if fault == "kill_engine":
            if not engines:
                return False
            with contextlib.suppress(psutil.Error):
                engines[0].kill()
            r.injected = True
            return False
        if fault == "pause":
            proc.send_signal(signal.SIGSTOP)
            r.injected = True
            try:
                time.sleep(1.0 + delay)
                sweep = hearth(self.home, "models", "list")  # its start-up sweeps interrupted answers
                if sweep.returncode != 0:
                    r.problems.append("`hearth models list` failed beside a paused app: " + sweep.stderr.strip())
            finally:
                proc.send_signal(signal.SIGCONT)
            return False
        if fault == "lock":
            holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db_path(self.home)), str(1.0 + delay)],
                                      stdout=subprocess.PIPE, text=True)
            r.injected = holder.stdout.readline() == "locked\n"
            holder.wait(timeout=60)
            return False
        raise ValueError(fault)

    def _newest_answer_complete(self, after_id: int, workload: str) -> bool:
        db = sqlite3.connect(db_path(self.home), timeout=30)
        try:
            row = db.execute("SELECT status, content FROM messages WHERE id > ? AND role = 'assistant'"
                             " ORDER BY id DESC LIMIT 1", (after_id,)).fetchone()
        finally:
            db.close()
        return bool(row and row[0] == "complete" and row[1])

    def _window(self) -> subprocess.Popen | None:
        """The app's window (offscreen), once it answers other launches; None if it never does."""
        env = dict(hearth_env(self.home), QT_QPA_PLATFORM="offscreen")
        proc = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while f"(process {proc.pid}); {WINDOW_OPEN}" not in self._log():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return None
            time.sleep(0.05)
        return proc

    def _log(self) -> str:
        log = self.home / "logs" / "hearth.log"
        return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""

    def _two_windows(self, workload: str, rng: random.Random, after_id: int) -> tuple[bool, list[str]]:
        """A window is open while the workload runs beside it from the command line; Hearth is
        started again twice at once (both must hand over to the open window and leave), then the
        window is killed and started again (its lock must not keep the folder closed)."""
        problems: list[str] = []
        first = self._window()
        if first is None:
            return False, ["the window never opened"]
        proc = self.start(workload, rng)
        env = dict(hearth_env(self.home), QT_QPA_PLATFORM="offscreen")
        again = [subprocess.Popen([sys.executable, "-m", "desktop"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for second in again:
            try:
                out, err = second.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                second.kill()
                out, err = second.communicate()
                problems.append("a second launch did not leave")
            if second.returncode != 0 or err.strip():
                problems.append(f"a second launch exited {second.returncode}: {err.strip()[-300:]}")
        if first.poll() is not None:
            problems.append("the open window closed when Hearth was started again")
        time.sleep(rng.uniform(0.0, 1.5))
        engines = engines_of(first)
        self.engines_seen.update(e.pid for e in engines)
        first.kill()
        first.wait()
        psutil.wait_procs(engines, timeout=15)
        third = self._window()
        if third is None:
            problems.append("after the window was killed, Hearth could not be started again")
        else:
            self.engines_seen.update(e.pid for e in engines_of(third))
            third.kill()
            third.wait()
        try:
            _, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            problems.append("the command beside the window did not finish")
        if proc.returncode != 0 or "Traceback" in err:
            problems.append(f"the command beside the window failed: {err.strip()[-300:]}")
        elif workload in ("chat", "regenerate") and not self._newest_answer_complete(after_id, workload):
            problems.append("the answer written beside the window was not saved complete")
        return True, problems

    def _disk_full(self, workload: str, rng: random.Random) -> tuple[bool, list[str]]:
        """The disk fills up while a chat streams its answer or an import copies (HEARTH_HOME on
        a tmpfs that a filler file fills at a random moment): one sentence, nothing written that
        looks complete, what was saved before intact, and the next try works once space is back."""
        problems: list[str] = []
        injected = False
        with small_disk(1400 if workload == "import" else 64) as (home, fill):
            out = hearth(home, "models", "import", "--link", str(self.model_file))
            if out.returncode != 0:
                return False, ["could not set up the small disk: " + out.stderr.strip()]
            ok = hearth(home, "chat", "-m", self.model_id, "--max-tokens", "8", "Say hello.")
            if ok.returncode != 0:
                return False, ["chat failed before the disk was full: " + ok.stderr.strip()]
            kept = snapshot(home)
            after_id = last_id(home)
            proc = self.start(workload, rng, home=home)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if workload == "import" and list((home / "models").rglob("*.part")):
                    break
                if workload != "import" and answer_streaming(home, after_id):
                    break
                time.sleep(0.01)
            if proc.poll() is None:
                time.sleep(rng.uniform(0.0, 0.5))
                injected = proc.poll() is None  # still at work when the disk fills (it may fail at once)
                fill()
            try:
                _, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                problems.append("the app hung on a full disk")
            self.full_disk_said.append(err.strip())
            if "Traceback" in err:
                problems.append("a traceback on a full disk: " + err.strip().splitlines()[-1])
            elif proc.returncode != 0 and err.strip().count("\n") > 1:
                problems.append("a full disk was not one sentence: " + err.strip()[-300:])
            if workload == "import" and proc.returncode == 0:
                injected = False  # every byte was written before the disk filled: a whole model
                # (check_models below proves the file is whole and recorded at its size)
            fill(free=True)  # (SQLite cannot even read a WAL database on a full disk: check after)
            problems += check_models(home, {self.model_file.stat().st_size, self.import_source.stat().st_size})
            again = hearth(home, "chat", "-m", self.model_id, "--max-tokens", "8", "Say hello again.")
            if again.returncode != 0:
                problems.append("chat did not work again once space was back: " + again.stderr.strip())
            problems += check_database(home, kept)
        return injected, problems

    # -- the checks -----------------------------------------------------------------------------
    def check(self, before: dict[int, tuple[str, str, str]]) -> list[str]:
        """What a user lost or would trip over after the round; [] when nothing."""
        problems = []
        sweep = hearth(self.home, "models", "list")  # any start of Hearth sweeps interrupted answers
        if sweep.returncode != 0 or "Traceback" in sweep.stderr:
            problems.append("Hearth did not start cleanly after the fault: " + sweep.stderr.strip()[-300:])
        problems += check_database(self.home, before)
        problems += check_models(self.home, {self.model_file.stat().st_size, self.import_source.stat().st_size})
        alive = [pid for pid in self.engines_seen if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if alive:
            time.sleep(5)  # an engine notices its parent is gone within a second or two
            alive = [pid for pid in alive if psutil.pid_exists(pid)
                     and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if alive:
            problems.append(f"engine processes {alive} outlived their app")
        return problems


# Every version of an answer: back to the first along `replaces`, then every later one.
FAMILY = """
WITH RECURSIVE back(id) AS (
    SELECT ? UNION SELECT m.replaces FROM messages m JOIN back ON m.id = back.id WHERE m.replaces IS NOT NULL),
root(id) AS (SELECT MIN(id) FROM back),
family(id) AS (SELECT id FROM root UNION SELECT m.id FROM messages m JOIN family f ON m.replaces = f.id)
"""


def check_database(home: Path, before: dict[int, tuple[str, str, str]]) -> list[str]:
    problems = []
    db = sqlite3.connect(db_path(home), timeout=30)
    try:
        if (ok := db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"integrity_check: {ok}")
        try:
            db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
        except sqlite3.Error as exc:
            problems.append(f"the search index failed its integrity check: {exc}")
        indexed = db.execute("SELECT count(*) FROM messages_fts").fetchone()[0]
        total = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        if indexed != total:
            problems.append(f"the search index has {indexed} rows for {total} messages")
        rows = {r[0]: r[1:] for r in db.execute("SELECT id, role, content, status, superseded FROM messages")}
        for message_id, (role, content, status) in before.items():
            now = rows.get(message_id)
            if now is None:
                problems.append(f"{role} message {message_id} was lost")
            elif now[:2] != (role, content):
                problems.append(f"{role} message {message_id} changed")
            elif status == "complete" and now[2] != "complete":
                problems.append(f"complete answer {message_id} became {now[2]}")
            elif role == "assistant" and now[3]:
                # Superseded only by a version that is itself complete: the one shown now, among
                # every version of this answer (each regenerate replaces the one shown before it).
                shown = db.execute(FAMILY + " SELECT status FROM messages WHERE id IN (SELECT id FROM family)"
                                   " AND NOT superseded", (message_id,)).fetchall()
                if [r[0] for r in shown] != ["complete"]:
                    problems.append(f"complete answer {message_id} was hidden behind an unfinished one "
                                    f"(shown now: {[r[0] for r in shown]})")
        left = db.execute("SELECT id FROM messages WHERE status = 'streaming'").fetchall()
        if left:
            problems.append(f"answers {[r[0] for r in left]} are still 'streaming' with no writer")
    finally:
        db.close()
    return problems


def check_models(home: Path, sizes: set[int]) -> list[str]:
    """No file in the models folder looks like a finished model unless it is one (one of the
    `sizes` of the models the rounds add, or a recorded model of its recorded size)."""
    problems = []
    db = sqlite3.connect(db_path(home), timeout=30)
    try:
        records = {Path(p): s for p, s in db.execute("SELECT path, size FROM models")}
    finally:
        db.close()
    for path, recorded in records.items():
        if not path.is_file():
            problems.append(f"the model record for {path.name} has no file")
        elif path.stat().st_size != recorded:
            problems.append(f"{path.name} is {path.stat().st_size} bytes, its record says {recorded}")
    for path in (home / "models").rglob("*.gguf"):
        if path not in records and path.stat().st_size not in sizes:
            problems.append(f"a half-written {path.name} looks like a finished model")
    return problems


def big_model(path: Path) -> Path:
    """A valid 629 MB GGUF (one F32 tensor of zeros, sparse on disk): an import that lasts long
    enough to be cut."""
    if not path.exists():
        from tests.gguf_forge import write_gguf

        dims = [1024, 153600]
        write_gguf(path, {"general.architecture": "llama", "general.name": "Big test",
                          "llama.context_length": 2048}, [("token_embd.weight", dims, 0)], write_data=False)
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size + dims[0] * dims[1] * 4)
    return path


@contextlib.contextmanager
def small_disk(size_mb: int = 24):
    """A HEARTH_HOME on a tmpfs of `size_mb`, and fill(free=False) to fill it up or free it again.
    Needs the right to mount (root in a container); raises PermissionError otherwise."""
    mount = Path(tempfile.mkdtemp(prefix="hearth-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        raise PermissionError(done.stderr.strip() or "mount failed")
    home = mount / "home"
    filler = mount / "filler"

    def fill(free: bool = False) -> None:
        if free:
            filler.unlink(missing_ok=True)
            (mount / "last").unlink(missing_ok=True)
            return
        # Unbuffered: a buffered file would try its last bytes again on close and raise there.
        with open(filler, "wb", buffering=0) as f:
            with contextlib.suppress(OSError):  # at once (tmpfs allocates), so the fault lands mid-copy
                free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
                os.posix_fallocate(f.fileno(), 0, max(free - (1 << 16), 1))
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
        with contextlib.suppress(OSError), open(mount / "last", "wb", buffering=0) as f:  # the last few bytes too
            while True:
                f.write(b"\0" * 512)
                f.flush()

    try:
        yield home, fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        with contextlib.suppress(OSError):
            mount.rmdir()


def can_mount() -> bool:
    try:
        with small_disk(1):
            return True
    except (PermissionError, FileNotFoundError):
        return False
