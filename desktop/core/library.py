"""Installed models: the index in the database and the files under the models folder."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from desktop.core import gguf
from desktop.core.errors import HearthError
from desktop.core.hardware import DISK_MARGIN, free_disk
from desktop.core.paths import Paths
from desktop.core.store import ModelRecord, Store
from desktop.core.units import human_bytes

CHUNK = 4 * 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class LibraryError(HearthError):
    """A library operation failed; str() is a sentence for the user."""


class AlreadyInstalled(LibraryError):
    def __init__(self, record: ModelRecord) -> None:
        super().__init__(f"This model is already installed as “{record.id}”.")
        self.record = record


def model_id_for(filename: str) -> str:
    stem = filename[:-5] if filename.lower().endswith(".gguf") else filename
    return re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-") or "model"


def display_name(filename: str, quantization: str) -> str:
    """The file's name without the extension and the quantization suffix."""
    stem = filename[:-5] if filename.lower().endswith(".gguf") else filename
    if quantization:
        stem = re.sub(rf"[.\-_]{re.escape(quantization)}$", "", stem, flags=re.IGNORECASE)
    return stem


def safe_component(name: str) -> str:
    """A single, harmless path component made from untrusted text (no separators, no '..')."""
    cleaned = re.sub(r"[^A-Za-z0-9._ -]+", "_", name)
    cleaned = re.sub(r"_+", "_", re.sub(r"\.{2,}", "_", cleaned)).strip(" .")
    return cleaned or "_"


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
    """Copy into `<dest>.part`, hashing on the way, then rename: no half-copied file looks complete."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    total = src.stat().st_size
    done = 0
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
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
            raise LibraryError(f"The disk filled up while copying “{src.name}”. Free "
                               f"{human_bytes(total)} and import it again.") from exc
        raise LibraryError(f"Could not copy “{src.name}”: {exc.strerror or exc}.") from exc
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


class Library:
    def __init__(self, store: Store, paths: Paths) -> None:
        self.store = store
        self.paths = paths

    def models(self) -> list[ModelRecord]:
        return self.store.models()

    def get(self, ref: str) -> ModelRecord:
        """An installed model by id (or a unique start of one), else a LibraryError that lists them."""
        try:
            return self.store.model(ref)
        except KeyError:
            pass
        models = self.store.models()
        matches = [m for m in models if m.id.startswith(ref.lower())]
        if len(matches) == 1:
            return matches[0]
        if not models:
            raise LibraryError(f"No model called “{ref}” is installed, and no model is installed at "
                               "all. Import a .gguf file with `hearth models import PATH`.")
        if matches:
            names = ", ".join(m.id for m in matches)
            raise LibraryError(f"“{ref}” could mean several models: {names}.")
        names = ", ".join(m.id for m in models)
        raise LibraryError(f"No model called “{ref}” is installed. Installed: {names}.")

    def resolve(self, ref: str) -> ModelRecord:
        """An installed model's id, or a path to a .gguf file (checked, not added to the library)."""
        candidate = Path(ref).expanduser()
        if candidate.suffix.lower() == ".gguf" or candidate.is_file():
            info = gguf.read_info(candidate)
            return self._record(candidate.resolve(), info, origin="linked", sha256="")
        return self.get(ref)

    def _record(self, path: Path, info: gguf.GGUFInfo, origin: str, sha256: str,
                label: str | None = None) -> ModelRecord:
        filename = label or path.name
        return ModelRecord(
            id=model_id_for(filename),
            name=display_name(filename, info.quantization),
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
        )

    def _unique_id(self, base: str) -> str:
        taken = {m.id for m in self.store.models()}
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def import_file(self, source: str | Path, *, link: bool = False, progress: Progress | None = None,
                    label: str | None = None) -> ModelRecord:
        """Check a .gguf file and add it: copied into the models folder, or linked where it is.
        `label` names a file whose own name says nothing (another app's blob)."""
        src = Path(source).expanduser().absolute()
        info = gguf.read_info(src)  # raises a GGUFError with a sentence for the user
        if link:
            digest = sha256_of(src, progress)
            dest = src
        else:
            folder = self.paths.models / "local" / safe_component(src.stem)
            folder.mkdir(parents=True, exist_ok=True)
            dest = folder / safe_component(src.name)
            need = info.file_size
            free = free_disk(folder)
            if free < need + DISK_MARGIN:
                raise LibraryError(f"Not enough free disk to import “{src.name}”: it needs "
                                   f"{human_bytes(need)} and {human_bytes(free)} is free.")
            digest = None
        for existing in self.store.models():
            if digest and existing.sha256 == digest:
                raise AlreadyInstalled(existing)
            if Path(existing.path) == dest:
                raise AlreadyInstalled(existing)
        if digest is None:
            digest = _copy_hashing(src, dest, progress)
        record = self._record(dest, info, origin="linked" if link else "imported", sha256=digest, label=label)
        record = replace(record, id=self._unique_id(record.id))
        return self.store.add_model(record)

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
        """Forget a model and delete its file if Hearth owns it; returns (record, bytes freed)."""
        record = self.get(ref)
        freed = 0
        path = Path(record.path)
        if record.origin != "linked" and path.is_file() and self.paths.models in path.parents:
            for part in split_parts(path):
                freed += part.stat().st_size
                part.unlink()
            try:
                path.parent.rmdir()  # the model's own folder, if nothing else is in it
            except OSError:
                pass
        self.store.remove_model(record.id)
        return record, freed
