"""What the llama.cpp that Hearth carries can do, found without importing it (importing llama_cpp
loads its shared libraries: slow, and not needed to answer these questions).

- its version (the llama-cpp-python release that wraps it);
- its compute backend (CPU, CUDA, Vulkan, Metal), from the libraries it was built with;
- whether it knows a model architecture: llama.cpp names every architecture it supports in its
  library's string table, so a name absent from `libllama` is certainly unknown to it. (A name
  present is very likely known; if not, loading fails and the engine's log says so.)
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

BACKENDS = (("cuda", "CUDA"), ("vulkan", "Vulkan"), ("metal", "Metal"), ("hip", "ROCm"), ("sycl", "SYCL"))


def llama_cpp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "unknown"


def _library_folder() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return folder if folder.is_dir() else None


@functools.cache
def backend() -> str:
    """The GPU backend llama.cpp was built with ("CUDA", "Vulkan", "Metal", ...), or "CPU"."""
    folder = _library_folder()
    if folder is None:
        return "CPU"
    names = " ".join(p.name.lower() for p in folder.iterdir())
    for key, label in BACKENDS:
        if f"ggml-{key}" in names:
            return label
    return "CPU"


@functools.cache
def _llama_strings() -> bytes:
    folder = _library_folder()
    if folder is None:
        return b""
    for name in ("libllama.so", "libllama.dylib", "llama.dll"):
        if (folder / name).is_file():
            return (folder / name).read_bytes()
    return b""


def knows_architecture(name: str) -> bool | None:
    """False when llama.cpp certainly does not know `name`; True when it very likely does; None
    when Hearth cannot tell (no llama.cpp library found)."""
    data = _llama_strings()
    if not data or not name:
        return None
    return name.encode() + b"\0" in data


def unknown_architecture_reason(name: str, model: str) -> str:
    return (f"“{model}” is a {name} model, which the llama.cpp inside Hearth (llama-cpp-python "
            f"{llama_cpp_version()}) does not know. Choose another model, or update Hearth.")
