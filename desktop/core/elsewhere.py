"""GGUF models that other apps already keep on this machine, to link instead of downloading again.

Looks in the model folders of LM Studio, GPT4All and Jan, the Hugging Face cache and Ollama's
store (whose files are GGUF under a hash name; its manifests give the model's name).
Nothing is read beyond each file's header, and nothing is changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from desktop.core import gguf
from desktop.core.library import SPLIT

MAX_DEPTH = 6


@dataclass(frozen=True)
class Found:
    app: str
    path: Path
    name: str  # what to call it: the file's name, or Ollama's model:tag
    size: int
    architecture: str
    quantization: str


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


def _walk(root: Path, depth: int = 0):
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH:
                yield from _walk(Path(entry.path), depth + 1)
            elif entry.name.lower().endswith(".gguf") and entry.is_file():  # HF cache: symlinks to blobs
                yield Path(entry.path)
        except OSError:
            continue


def _worth_offering(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith("mmproj") or "-mmproj" in name:
        return False  # a vision projector, not a model
    match = SPLIT.search(path.name)
    return match is None or int(match.group(1)) == 1


def _ollama(home: Path) -> list[tuple[Path, str]]:
    root = Path(os.environ.get("OLLAMA_MODELS") or home / ".ollama" / "models")
    manifests = root / "manifests"
    found = []
    for manifest in _walk_files(manifests):
        try:
            layers = json.loads(manifest.read_text())["layers"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for layer in layers:
            if layer.get("mediaType") == "application/vnd.ollama.image.model":
                blob = root / "blobs" / str(layer.get("digest", "")).replace(":", "-")
                if blob.is_file() and blob.parent == root / "blobs":
                    found.append((blob, f"{manifest.parent.name}:{manifest.name}"))
    return found


def _walk_files(root: Path):
    try:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                yield Path(dirpath) / f
    except OSError:
        return


def scan(known_paths: set[Path], home: Path | None = None) -> list[Found]:
    """GGUF files other apps keep, minus those already in Hearth's library (`known_paths`)."""
    home = home or Path.home()
    candidates: list[tuple[str, Path, str]] = []
    for app, folder in _folders(home):
        if folder.is_dir():
            candidates += [(app, p, p.name) for p in _walk(folder) if _worth_offering(p)]
    candidates += [("Ollama", blob, name) for blob, name in _ollama(home)]
    known = {p.resolve() for p in known_paths}
    found, seen = [], set()
    for app, path, name in candidates:
        real = path.resolve()
        if real in known or real in seen:
            continue
        seen.add(real)
        try:
            info = gguf.read_info(path)
        except gguf.GGUFError:
            continue  # not a usable model file; nothing to offer
        found.append(Found(app, path, name, info.file_size, info.architecture, info.quantization))
    return sorted(found, key=lambda f: (f.app, f.name.lower()))
