"""GGUF models that other apps already keep on this machine, to link instead of downloading again.

Looks in the model folders of LM Studio, GPT4All and Jan, the Hugging Face cache and Ollama's
store (whose files are GGUF under a hash name; its manifests give the model's name).
Nothing is read beyond each file's header, and nothing is changed. The folders belong to other
programs (or to whoever can write there), so nothing in them is trusted: only regular files are
opened (never a pipe, a device or a socket, which would block or never end), links to folders are
not followed (no loops), and the walk stops at a depth, a number of entries and a time limit. Each
app's folder has its own entries and its own share of the time, so one huge folder cannot keep the
others from being looked at; a folder cut short is named in `skipped`, with its app.
Every entry that looked like a model but was left out is returned with the reason.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from desktop.core import gguf
from desktop.core.library import SPLIT

MAX_DEPTH = 6  # folders below each app's model folder
MAX_ENTRIES = 50_000  # folder entries looked at in each app's folder
MAX_MANIFEST_BYTES = 1024 * 1024  # Ollama manifests are a few hundred bytes of JSON
TIME_LIMIT_S = 30.0  # one scan, all folders together; each gets a fair share of what is left
_OLLAMA_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{1,64})$")


@dataclass(frozen=True)
class Found:
    """A GGUF model another app keeps. `path` is the file as that app names it (the Hugging Face
    cache's is a link into its blobs); `size` in bytes; `in_hearth` the id of the installed model
    that uses this file, "" if none."""

    app: str
    path: Path
    name: str  # what to call it: the file's name, or Ollama's model:tag
    size: int
    architecture: str
    quantization: str
    in_hearth: str = ""


@dataclass(frozen=True)
class Skipped:
    """An entry left out, and why, in words; `cut` when a whole folder's rest was left (its budget
    ran out), which a person should hear about even without asking for the details."""

    path: Path
    reason: str
    cut: bool = False


@dataclass
class Scan:
    """What a scan found (sorted by app, then name) and what it left out."""

    found: list[Found] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def new(self) -> list[Found]:
        """The models not yet in Hearth."""
        return [f for f in self.found if not f.in_hearth]


class _Budget:
    """The entries and time the walk of one app's folder may still spend."""

    def __init__(self, scan: Scan, app: str = "", root: Path | None = None,
                 seconds: float = TIME_LIMIT_S) -> None:
        self.scan, self.app, self.root = scan, app, root
        self.entries = 0
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.spent = False

    def take(self, where: Path) -> bool:
        self.entries += 1
        if self.spent:
            return False
        too_many = self.entries > MAX_ENTRIES
        if too_many or time.monotonic() > self.deadline:
            self.spent = True
            whose = f"{self.app}'s folder" if self.app else "This folder"
            why = (f"has more than {MAX_ENTRIES:,} entries" if too_many else
                   f"took more than {self.seconds:.1f} s to look through")
            self.scan.skipped.append(Skipped(self.root or where, f"{whose} {why}; the rest of it (from "
                                                                 f"{where.name}) was not looked at", cut=True))
            return False
        return True


def _folders(home: Path) -> list[tuple[str, Path]]:
    env = os.environ
    local = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    appdata = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    support = home / "Library" / "Application Support"
    hf_home = Path(env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "huggingface")
    hf_cache = Path(env.get("HF_HUB_CACHE") or hf_home / "hub")
    folders = [
        ("LM Studio", home / ".lmstudio" / "models"),
        ("LM Studio", home / ".cache" / "lm-studio" / "models"),
        ("GPT4All", local / "nomic.ai" / "GPT4All"),
        ("GPT4All", appdata / "nomic.ai" / "GPT4All"),
        ("GPT4All", support / "nomic.ai" / "GPT4All"),
        ("Jan", home / "jan" / "models"),
        ("Jan", local / "Jan" / "data" / "models"),
        ("Jan", support / "Jan" / "data" / "models"),
        ("Hugging Face cache", hf_cache),
    ]
    return folders


def _why_not_a_file(path: Path) -> str:
    """Why `path` cannot be read as a regular file ("" if it can). Follows links; opens nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a link that loops back on itself"
        if exc.errno == errno.ENOENT:
            return "a link to a file that is not there" if os.path.islink(path) else "missing: no file is there"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "Hearth may not read it (permissions)"
        return f"could not be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return ""
    kind = ("a folder" if stat.S_ISDIR(mode) else "a pipe (FIFO)" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "something other than a file")
    return f"not a regular file: it is {kind}"


def _read_small(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a regular file, opened so that a pipe or device that appeared since
    the stat can neither block nor stream without end. Raises OSError or ValueError (too large)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        chunks, have = [], 0
        while have <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - have))
            if not chunk:
                break
            chunks.append(chunk)
            have += len(chunk)
        if have > limit:
            raise ValueError(f"larger than {limit // 1024} KiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check_regular(path: Path) -> None:
    """Raise ValueError unless `path` opens (without blocking) as a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
    finally:
        os.close(fd)


def _walk(root: Path, budget: _Budget, scan: Scan, *, want: str = ".gguf", depth: int = 0) -> Iterator[Path]:
    """Files under `root` whose names end in `want` ("" for every file) and that are regular
    files (links to regular files count: the Hugging Face cache is made of them). Links to
    folders are not followed."""
    try:
        with os.scandir(root) as it:
            entries = list(it)
    except OSError as exc:
        why = "Hearth may not open this folder (permissions)" if isinstance(exc, PermissionError) else \
            f"could not be opened ({exc.strerror or exc})"
        scan.skipped.append(Skipped(root, why))
        return
    for entry in sorted(entries, key=lambda e: e.name):
        path = Path(entry.path)
        if not budget.take(path):
            return
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_DEPTH:
                    scan.skipped.append(Skipped(path, f"more than {MAX_DEPTH} folders deep"))
                else:
                    yield from _walk(path, budget, scan, want=want, depth=depth + 1)
                continue
            if not entry.name.lower().endswith(want):
                continue
            if entry.is_symlink() and os.path.isdir(path):
                scan.skipped.append(Skipped(path, "a link to a folder (not followed)"))
                continue
        except OSError as exc:
            scan.skipped.append(Skipped(path, f"could not be read ({exc.strerror or exc})"))
            continue
        why = _why_not_a_file(path)
        if why:
            scan.skipped.append(Skipped(path, why))
            continue
        yield path


def _why_not_offered(path: Path) -> str:
    name = path.name.lower()
    if name.startswith("mmproj") or "-mmproj" in name:
        return "a vision projector that goes with a model, not a model"
    match = SPLIT.search(path.name)
    if match is not None and int(match.group(1)) != 1:
        return "a later part of a split model (offered as its first part)"
    return ""


def _ollama_root(home: Path) -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or home / ".ollama" / "models")


def _ollama(home: Path, budget: _Budget, scan: Scan) -> list[tuple[Path, str]]:
    root = _ollama_root(home)
    manifests = root / "manifests"
    if not manifests.is_dir():
        return []
    found = []
    for manifest in _walk(manifests, budget, scan, want=""):
        try:
            layers = json.loads(_read_small(manifest, MAX_MANIFEST_BYTES))["layers"]
            models = [layer for layer in layers if layer.get("mediaType") == "application/vnd.ollama.image.model"]
        except ValueError as exc:
            why = str(exc) if "larger" in str(exc) or "regular" in str(exc) else "not valid JSON"
            scan.skipped.append(Skipped(manifest, f"not an Ollama manifest: {why}"))
            continue
        except (OSError, KeyError, TypeError, AttributeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it names no layers"
            scan.skipped.append(Skipped(manifest, f"not an Ollama manifest: {why}"))
            continue
        name = f"{manifest.parent.name}:{manifest.name}"
        for layer in models:
            digest = _OLLAMA_DIGEST.match(str(layer.get("digest", "")))
            if digest is None:
                scan.skipped.append(Skipped(manifest, f"{name}: its model layer has no valid sha256 digest"))
                continue
            blob = root / "blobs" / f"sha256-{digest.group(1)}"
            why = _why_not_a_file(blob)
            if why:
                scan.skipped.append(Skipped(blob, f"the model file of {name}: {why}"))
                continue
            found.append((blob, name))
    return found


def ollama_name(blob: Path) -> str:
    """Ollama's `model:tag` for one of its blobs (`…/models/blobs/sha256-…`), read from its
    manifests with the same care as a scan; "" if the path is not a blob any manifest names."""
    blob = Path(blob).absolute()
    if blob.parent.name != "blobs" or not blob.name.startswith("sha256-"):
        return ""
    root = blob.parent.parent
    scan = Scan()
    for manifest in _walk(root / "manifests", _Budget(scan), scan, want=""):
        try:
            layers = json.loads(_read_small(manifest, MAX_MANIFEST_BYTES))["layers"]
            digests = [str(layer.get("digest", "")) for layer in layers
                       if layer.get("mediaType") == "application/vnd.ollama.image.model"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if any(d.replace(":", "-", 1) == blob.name for d in digests):
            return f"{manifest.parent.name}:{manifest.name}"
    return ""


def scan(known_paths: set[Path] | dict[Path, str], home: Path | None = None) -> Scan:
    """GGUF files other apps keep under `home` (default: the user's home folder), each marked with
    the id of the Hearth model that already uses it. `known_paths` are the files of installed
    models (a dict maps each to its model id; a hard link to one counts as the same file). Never
    blocks on a pipe or a device, never follows a link to a folder; each app's folder is visited,
    with at most MAX_ENTRIES entries and its share of TIME_LIMIT_S seconds; every candidate left
    out is in `Scan.skipped` with a reason (one file two apps list is found once, the other skipped
    as "the same file as …")."""
    home = home or Path.home()
    result = Scan()
    roots = [(app, folder) for app, folder in _folders(home) if folder.is_dir()]
    ollama = (_ollama_root(home) / "manifests").is_dir()
    deadline = time.monotonic() + TIME_LIMIT_S
    left = len(roots) + ollama

    def share(app: str, root: Path) -> _Budget:  # a fair part of the time still left, per folder
        nonlocal left
        seconds = max(0.0, deadline - time.monotonic()) / max(left, 1)
        left -= 1
        return _Budget(result, app, root, seconds)

    candidates: list[tuple[str, Path, str]] = []
    for app, folder in roots:
        for path in _walk(folder, share(app, folder), result):
            why = _why_not_offered(path)
            if why:
                result.skipped.append(Skipped(path, why))
            else:
                candidates.append((app, path, path.name))
    if ollama:
        budget = share("Ollama", _ollama_root(home))
        candidates += [("Ollama", blob, name) for blob, name in _ollama(home, budget, result)]
    ids = known_paths if isinstance(known_paths, dict) else dict.fromkeys(known_paths, "?")
    known: dict[object, str] = {}
    for path, model_id in ids.items():
        try:
            known[Path(path).resolve()] = model_id or "?"
            st = os.stat(path)
            known[(st.st_dev, st.st_ino)] = model_id or "?"
        except (OSError, RuntimeError, ValueError):
            continue  # gone, or a loop: it cannot be one of these files
    seen: dict[object, tuple[str, Path]] = {}
    for app, path, name in candidates:
        try:
            real = path.resolve()
            st = os.stat(path)
        except (OSError, RuntimeError):
            result.skipped.append(Skipped(path, "a link that loops back on itself"))
            continue
        first = seen.get(real) or seen.get((st.st_dev, st.st_ino))
        if first is not None:
            result.skipped.append(Skipped(path, f"the same file as {first[1]} ({first[0]}), listed once"))
            continue
        seen[real] = seen[(st.st_dev, st.st_ino)] = (app, path)
        try:
            _check_regular(path)  # it may have been swapped for a pipe since the walk
            info = gguf.read_info(path)
        except gguf.GGUFError as exc:
            result.skipped.append(Skipped(path, f"not a usable model: {exc}"))
            continue
        except (OSError, ValueError) as exc:  # replaced by something else since it was looked at
            result.skipped.append(Skipped(path, f"could not be read ({exc})"))
            continue
        result.found.append(Found(app, path, name, info.file_size, info.architecture, info.quantization,
                                  in_hearth=known.get(real) or known.get((st.st_dev, st.st_ino), "")))
    result.found.sort(key=lambda f: (f.app, f.name.lower()))
    return result
