"""Installed models: the index in the database and the files under the models folder."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from anyascii import anyascii

from desktop.core import gguf, model_kinds
from desktop.core.errors import HearthError
from desktop.core.hardware import DISK_MARGIN, free_disk
from desktop.core.paths import Paths
from desktop.core.store import ModelRecord, Store
from desktop.core.text import shown
from desktop.core.units import human_bytes

CHUNK = 4 * 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)

# File systems allow 255 bytes per name (ext4, APFS, NTFS counts UTF-16 units, which is never more
# than UTF-8 bytes). Names Hearth makes stay well under it, so that `.part`, `.part.json` or `-2`
# can still be added.
MAX_NAME_BYTES = 200
MAX_ID_CHARS = 80
MIN_PREFIX = 3  # a shorter start of an id picks no model (`rm ""` must not mean "every model")


class LibraryError(HearthError):
    """A library operation failed; str() is a sentence for the user."""


class AlreadyInstalled(LibraryError):
    def __init__(self, record: ModelRecord) -> None:
        super().__init__(f"This model is already installed as “{record.id}”.")
        self.record = record


def _stem(filename: str) -> str:
    return filename[:-5] if filename.lower().endswith(".gguf") else filename


class ModelFileMissing(LibraryError):
    """An installed model whose file is gone or cannot be read; `problem` is "File missing" or
    "File unreadable", as lists show it."""

    def __init__(self, record: ModelRecord, problem: str) -> None:
        if problem == "File missing":
            text = (f"The file of “{shown(record.name)}” is missing: it was at {shown(record.path)}. Locate it "
                    "again (only the same file is accepted) or remove the model.")
        else:
            text = (f"Hearth may not read the file of “{shown(record.name)}” ({shown(record.path)}): check its "
                    "permissions, or locate it again.")
        super().__init__(text)
        self.record, self.problem = record, problem


def model_id_for(filename: str) -> str:
    """The id a model file gets: lower-case ASCII letters, digits, `_` and `-`, at most 80 characters.

    Letters of every script are transliterated (anyascii, ISC licence: "Модель A" -> "model-a",
    "日本語モデル" -> "ribenyumoderu"), so an id can be typed on any keyboard and in any shell or
    API client; the name shown stays the original. A name with nothing to transliterate gets
    "model-" and 8 hex digits of its sha256, so different names still get different ids."""
    stem = unicodedata.normalize("NFKC", _stem(filename))
    slug = re.sub(r"[^a-z0-9_]+", "-", anyascii(stem).lower()).strip("-")
    slug = slug[:MAX_ID_CHARS].strip("-")
    if slug:
        return slug
    if stem.strip():
        return "model-" + hashlib.sha256(stem.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return "model"


def display_name(filename: str, quantization: str) -> str:
    """The file's name without the extension and the quantization suffix."""
    stem = _stem(filename)
    if quantization:
        stem = re.sub(rf"[.\-_]{re.escape(quantization)}$", "", stem, flags=re.IGNORECASE)
    return stem


# Characters no file name gets: path separators, characters Windows refuses, and every control,
# format (bidirectional overrides, zero-width), surrogate, private-use or unassigned code point.
_REFUSED = set('/\\:*?"<>|')
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_TAIL = re.compile(r"(-\d{5}-of-\d{5})?\.[A-Za-z0-9]{1,8}$")  # kept when a name is shortened


def _harmless(ch: str) -> bool:
    return ch not in _REFUSED and unicodedata.category(ch)[0] != "C" and (ch == " " or not ch.isspace())


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest start of `text` that is at most `max_bytes` long in UTF-8, cut between characters."""
    return text.encode("utf-8", "surrogatepass")[:max_bytes].decode("utf-8", "ignore")


def safe_component(name: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A single, harmless file or folder name made from untrusted text (a file name, a hub repo).

    Letters of every script are kept (NFC); separators, `..`, characters Windows refuses, control
    and format characters (newlines, ANSI escapes, right-to-left overrides) become `_`; no leading
    or trailing dot or space; Windows device names (CON, NUL…) get a `_` in front. The result is
    at most `max_bytes` bytes of UTF-8: a longer name is cut on a character boundary, keeping its
    extension and a split model's `-00001-of-00003` part. Never empty (then `_`)."""
    cleaned = "".join(ch if _harmless(ch) else "_" for ch in unicodedata.normalize("NFC", name))
    cleaned = re.sub(r"_+", "_", re.sub(r"\.{2,}", "_", cleaned)).strip(" .")
    if _WINDOWS_DEVICES.match(cleaned):
        cleaned = "_" + cleaned
    if len(cleaned.encode("utf-8")) > max_bytes:
        tail = _TAIL.search(cleaned)
        keep = tail.group(0) if tail and len(tail.group(0)) < max_bytes // 2 else ""
        head = truncate_utf8(cleaned[:len(cleaned) - len(keep)], max_bytes - len(keep)).rstrip(" .")
        cleaned = head + keep
    return cleaned or "_"


def is_regular_file(path: str | Path) -> bool:
    """True if `path` is (or links to) a regular file: not a FIFO, a device, a socket or a folder,
    which would block or never end when read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def file_problem(record: ModelRecord) -> str:
    """Why a model's file cannot be used now ("" if it can): missing, not a file, or unreadable."""
    path = Path(record.path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "File missing"
    except OSError:
        return "File unreadable"
    if not stat.S_ISREG(mode):
        return "File missing"
    if not os.access(path, os.R_OK):
        return "File unreadable"
    return ""


def hash_file(path: Path, progress: Progress | None = None) -> tuple["hashlib._Hash", int]:
    """A sha256 of the file's bytes (still open for more), and how many bytes it has seen."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest, done


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    return hash_file(path, progress)[0].hexdigest()


def _copy_hashing(src: Path, dest: Path, progress: Progress | None) -> str:
    """Copy into a short temporary file beside `dest`, hashing on the way, then rename: no
    half-copied file looks complete, and a long name never makes a too-long temporary name."""
    digest = hashlib.sha256()
    total = src.stat().st_size
    done = 0
    fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".part", dir=dest.parent)
    part = Path(tmp)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(part, dest)
    except OSError as exc:
        part.unlink(missing_ok=True)
        if exc.errno == 28:  # ENOSPC
            raise LibraryError(f"The disk filled up while copying “{shown(src.name)}”. Free "
                               f"{human_bytes(total)} and import it again.") from exc
        raise LibraryError(f"Could not copy “{shown(src.name)}”: {exc.strerror or exc}.") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def split_parts(first: Path) -> list[Path]:
    """The files of a model: the file itself, or every part of a split GGUF (`-00001-of-00003`)."""
    match = SPLIT.search(first.name)
    if not match:
        return [first]
    stem = first.name[:match.start()]
    count = int(match.group(2))
    return [p for p in (first.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1))
            if p.is_file()]


def _fold(text: str) -> str:
    """Text as references are compared: NFKC (full-width letters, ligatures) and case folded."""
    return unicodedata.normalize("NFKC", text).casefold()


_DUPLICATE_SUFFIX = re.compile(r"-\d+$")


def _starts(model: ModelRecord, key: str) -> bool:
    """Whether folded `key` is a strict start of the model's id or name, and not just its id
    without the "-N" Hearth added to tell it from an older model of the same name."""
    if model.id.startswith(key) and len(key) < len(model.id):
        rest = model.id[len(key):]
        own = {model_id_for(model.file), model_id_for(model.name)}
        if not (_DUPLICATE_SUFFIX.fullmatch(rest) and model.id not in own
                and not any(o.startswith(model.id) for o in own)):
            return True
    name = _fold(model.name)
    return name.startswith(key) and len(key) < len(name)


def _listing(models: list[ModelRecord]) -> str:
    """Models as a reference list: `id (name)`, the name left out when it reads as the id."""
    return ", ".join(m.id if _fold(m.name) == m.id else f"{m.id} ({shown(m.name)})"
                     for m in sorted(models, key=lambda m: m.id))


def _unreadable(path: Path, exc: OSError) -> str:
    """A sentence for an OSError met while opening a file a person named."""
    name = shown(truncate_utf8(path.name, 120)) + ("…" if len(path.name.encode("utf-8", "surrogatepass")) > 120
                                                    else "")
    reasons = {
        errno.ELOOP: "is a link that loops back on itself (or a chain of too many links)",
        errno.ENAMETOOLONG: "has a name or path too long for this computer's file system",
        errno.EACCES: "cannot be read: Hearth may not open it or a folder on its path (check the permissions)",
        errno.EPERM: "cannot be read: Hearth may not open it or a folder on its path (check the permissions)",
        errno.ENOTDIR: "is not there: part of its path is a file, not a folder",
        errno.EISDIR: "is a folder, not a model file",
        errno.ENOENT: "is not there: check the path",
    }
    why = reasons.get(exc.errno or 0, f"could not be read ({exc.strerror or exc})")
    return f"“{name}” {why}. It is not a file Hearth can read."


def _source_file(source: str | Path) -> Path:
    """The regular file a person named to import, as an absolute path; else a LibraryError with a
    sentence (nothing named, not there, a loop, a folder, a pipe, a too long name, no permission)."""
    if not str(source).strip():
        raise LibraryError("No file was named: give the path of a .gguf file.")
    src = Path(source).expanduser().absolute()
    try:
        mode = os.stat(src).st_mode
    except FileNotFoundError:
        raise LibraryError(f"There is no file at {shown(str(src))}.") from None
    except OSError as exc:
        raise LibraryError(_unreadable(src, exc)) from exc
    if stat.S_ISDIR(mode):
        raise LibraryError(f"“{shown(src.name)}” is not a model file: it is a folder.")
    if not stat.S_ISREG(mode):
        raise LibraryError(f"“{shown(src.name)}” is not a model file: it is a folder, a device or a pipe.")
    return src


class Library:
    def __init__(self, store: Store, paths: Paths) -> None:
        self.store = store
        self.paths = paths

    def models(self) -> list[ModelRecord]:
        """Every installed model, the most recently used first. A model installed before Hearth
        kept the pooling its file declares has its file's header read once, here, to learn it."""
        models = self.store.models()
        if any(m.pooling is None for m in models):
            models = [self._with_pooling(m) if m.pooling is None else m for m in models]
        return models

    def chat_models(self) -> list[ModelRecord]:
        """The installed models that can chat (`models` less the embedding ones): what a chat
        model picker offers."""
        return [m for m in self.models() if not m.for_embeddings]

    def _with_pooling(self, record: ModelRecord) -> ModelRecord:
        if file_problem(record):
            return record  # the file is missing: read once it is found again
        try:
            pooling = model_kinds.pooling_of(gguf.read_info(record.path).metadata)
        except (gguf.GGUFError, OSError):
            pooling = ""  # a damaged file: a chat model as before, and its problem said on use
        try:
            self.store.set_model_pooling(record.id, pooling)
        except HearthError:
            pass  # a locked or full database: read again next time
        return replace(record, pooling=pooling)

    def get(self, ref: str) -> ModelRecord:
        """An installed model by a reference a person types, in this order:

        1. its exact id (case does not matter: ids are lower case);
        2. its name or file name (compared after NFKC and case folding), only if exactly one model
           has it; several with the same name raise "could mean several" with their ids;
        3. an unambiguous start of its id or name, at least MIN_PREFIX (3) characters long. A start
           that only lacks a "-2", "-3"… that Hearth added to tell two same-named models apart
           never counts (`model-a` is not `model-a-2`: after `model-a` is removed, its id must
           not pick the other model).

        Raises a LibraryError with a sentence: no model named (an empty or blank ref picks none),
        none matches (lists the installed ids and names), or several do (lists them)."""
        ref = ref.strip()
        if not ref:
            raise LibraryError("No model was named: give an installed model's id (`hearth models list` "
                               "shows them).")
        try:
            return self.store.model(ref)
        except KeyError:
            pass
        models = self.store.models()
        if not models:
            raise LibraryError(f"No model called “{shown(ref)}” is installed, and no model is installed at "
                               "all. Import a .gguf file with `hearth models import PATH`.")
        key = _fold(ref)
        by_id = [m for m in models if m.id == key]
        if by_id:
            return by_id[0]
        named = [m for m in models if key in (_fold(m.name), _fold(m.file), _fold(_stem(m.file)))]
        if len(named) == 1:
            return named[0]
        if named:
            raise LibraryError(f"“{shown(ref)}” could mean several models with that name: {_listing(named)}. "
                               "Give the id of the one you mean.")
        matches = [m for m in models if _starts(m, key)] if len(ref) >= MIN_PREFIX else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise LibraryError(f"“{shown(ref)}” could mean several models: {_listing(matches)}. "
                               "Give more of the id.")
        if len(ref) < MIN_PREFIX and any(m.id.startswith(key) or _fold(m.name).startswith(key) for m in models):
            raise LibraryError(f"“{shown(ref)}” is too short to pick a model: give at least {MIN_PREFIX} "
                               f"characters of its id. Installed: {_listing(models)}.")
        raise LibraryError(f"No model called “{shown(ref)}” is installed. Installed: {_listing(models)}.")

    def resolve(self, ref: str) -> ModelRecord:
        """An installed model (as `get` finds it), or a path to a .gguf file (checked, not added to
        the library). Raises LibraryError, or GGUFError for a file that is not a usable model."""
        candidate = Path(ref.strip()).expanduser() if ref.strip() else None
        if candidate is not None and (candidate.suffix.lower() == ".gguf" or is_regular_file(candidate)):
            if not os.path.lexists(candidate):  # no such path: perhaps an installed model's file name
                try:
                    return self.get(ref)
                except LibraryError:
                    pass  # neither: said as a missing file, below
            if candidate.exists() and not is_regular_file(candidate):
                raise LibraryError(f"“{shown(ref)}” is not a regular file (a folder, a device or a pipe).")
            try:
                info = gguf.read_info(candidate)
                return self._record(candidate.resolve(), info, origin="linked", sha256="")
            except OSError as exc:  # a loop, a too long name…: one sentence
                raise LibraryError(_unreadable(candidate, exc)) from exc
        return self.get(ref)

    def require_file(self, record: ModelRecord) -> ModelRecord:
        """`record`, if its file is there and readable; else ModelFileMissing (a LibraryError) with
        a sentence. Cheap: one stat and one access check, nothing is read."""
        problem = file_problem(record)
        if problem:
            raise ModelFileMissing(record, problem)
        return record

    def _record(self, path: Path, info: gguf.GGUFInfo, origin: str, sha256: str,
                label: str | None = None) -> ModelRecord:
        filename = label or path.name
        name = display_name(filename, info.quantization)
        return ModelRecord(
            id=model_id_for(filename),
            name=name if name.strip(" .") else "model",  # "...gguf" has no name to show
            path=str(path),
            origin=origin,
            size=info.file_size,
            file=path.name,
            sha256=sha256,
            architecture=info.architecture,
            parameters=info.parameters,
            quantization=info.quantization,
            context_length=info.context_length,
            license=info.license,
            has_chat_template=info.has_chat_template,
            pooling=model_kinds.pooling_of(info.metadata),
        )

    def _unique_id(self, base: str) -> str:
        """`base`, or `base-2`, `base-3`… : the first id no installed model has."""
        taken = {m.id for m in self.store.models()}
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def _same_content(self, src: Path, size: int, digest: str | None,
                      progress: Progress | None) -> tuple[ModelRecord | None, str | None]:
        """The installed model with the same bytes as `src`, judged by sha256 (hashed here only when
        one has the same size); and the digest, if it was computed."""
        for existing in self.store.models():
            if Path(existing.path) == src:
                return existing, digest
        same_size = [m for m in self.store.models() if m.size == size and m.sha256]
        if same_size and digest is None:
            digest = sha256_of(src, progress)
        for existing in same_size:
            if existing.sha256 == digest:
                return existing, digest
        return None, digest

    def _new_folder(self, stem: str) -> Path:
        """A folder under models/local that does not exist yet, named after the file."""
        base = safe_component(stem, MAX_NAME_BYTES - 8)
        parent = self.paths.models / "local"
        parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while True:
            folder = parent / (base if n == 1 else f"{base}-{n}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                n += 1

    def import_file(self, source: str | Path, *, link: bool = False, progress: Progress | None = None,
                    label: str | None = None) -> ModelRecord:
        """Check a .gguf file and add it: copied into the models folder (under a safe, bounded name),
        or linked where it is. `label` names a file whose own name says nothing (another app's blob).

        Duplicates are judged by content (sha256), never by name: the same bytes twice raise
        AlreadyInstalled. Raises GGUFError for a file that is not a usable model, LibraryError for
        anything else (not a regular file, no room, a failed copy); on any failure nothing is left
        behind (no folder, no temporary file)."""
        src = _source_file(source)
        try:
            info = gguf.read_info(src)  # raises a GGUFError with a sentence for the user
            existing, digest = self._same_content(src, info.file_size,
                                                  sha256_of(src, progress) if link else None, progress)
        except OSError as exc:  # anything gguf does not word itself (ELOOP, EIO…): one sentence
            raise LibraryError(_unreadable(src, exc)) from exc
        if existing is not None:
            raise AlreadyInstalled(existing)
        if link:
            dest = src
        else:
            need = info.file_size
            free = free_disk(self.paths.models)
            if free < need + DISK_MARGIN:
                raise LibraryError(f"Not enough free disk to import “{shown(src.name)}”: it needs "
                                   f"{human_bytes(need)} and {human_bytes(free)} is free.")
            stem = _stem(src.name).strip(" .") or "model"
            folder = self._new_folder(stem)
            dest = folder / (safe_component(stem, MAX_NAME_BYTES - 5) + ".gguf")  # the ending always kept
            try:
                digest = _copy_hashing(src, dest, progress)
            except BaseException:
                _remove_empty(folder)
                raise
        record = self._record(dest, info, origin="linked" if link else "imported", sha256=digest or "",
                              label=label or src.name)  # named as the user knows it, not as stored
        try:
            return self.store.add_model(replace(record, id=self._unique_id(record.id)))
        except BaseException:
            if not link:
                dest.unlink(missing_ok=True)
                _remove_empty(dest.parent)
            raise

    def locate(self, ref: str, path: str | Path) -> ModelRecord:
        """Point a model whose file went missing at the file found again. The file is accepted only
        if its sha256 matches the one stored (or, when none is stored, if it parses as GGUF).
        A file outside the models folder is linked (Hearth never deletes it). Raises LibraryError
        (or GGUFError) with a sentence, and changes nothing then."""
        record = self.get(ref)
        src = Path(path).expanduser().absolute()
        if not is_regular_file(src):
            raise LibraryError(f"“{shown(src.name)}” is not a file Hearth can read.")
        info = gguf.read_info(src)
        if record.sha256:
            digest = sha256_of(src)
            if digest != record.sha256:
                raise LibraryError(f"“{shown(src.name)}” is not the file of {shown(record.name)}: its content "
                                   "differs (sha256). Nothing was changed.")
        elif info.file_size <= 0:
            raise LibraryError(f"“{shown(src.name)}” is empty. Nothing was changed.")
        owned = self.paths.models in src.parents
        origin = record.origin if owned else "linked"
        return self.store.set_model_path(record.id, str(src), origin)

    def find_downloaded(self, repo: str, file: str) -> ModelRecord | None:
        for m in self.store.models():
            if m.repo == repo and m.file == file:
                return m
        return None

    def find_path(self, path: Path) -> ModelRecord | None:
        for m in self.store.models():
            if Path(m.path) == path:
                return m
        return None

    def add_downloaded(self, path: Path, *, repo: str, file: str, revision: str, sha256: str,
                       size: int) -> ModelRecord:
        """Record a model the downloader has put in place (and verified) under the models folder."""
        info = gguf.read_info(path)
        record = replace(self._record(path, info, origin="downloaded", sha256=sha256),
                         repo=repo, file=file, revision=revision, size=size)
        return self.store.add_model(replace(record, id=self._unique_id(record.id)))

    def remove(self, ref: str) -> tuple[ModelRecord, int]:
        """Forget a model and delete its file if Hearth owns it; returns (record, bytes freed).
        `ref` is resolved as `get` does: an exact id, a name, or an unambiguous start of at least
        3 characters; an empty or blank ref removes nothing (LibraryError)."""
        record = self.get(ref)
        freed = 0
        path = Path(record.path)
        if record.origin != "linked" and is_regular_file(path) and self.paths.models in path.parents:
            for part in split_parts(path):
                freed += part.stat().st_size
                part.unlink()
            _remove_empty(path.parent)  # the model's own folder, if nothing else is in it
        self.store.remove_model(record.id)
        return record, freed


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (something else lives there) or already gone: left as it is
