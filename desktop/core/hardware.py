"""What this machine has: memory, cores, free disk; and whether a model fits in memory."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from desktop.core.units import human_bytes


def total_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def process_memory(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), in bytes; 0 if it is gone."""
    import psutil

    try:
        return int(psutil.Process(pid or os.getpid()).memory_info().rss)
    except psutil.Error:
        return 0


DISK_MARGIN = 50_000_000  # what a copy or a download leaves free on the disk, at least


def free_disk(path: Path) -> int:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


@dataclass(frozen=True)
class MemoryEstimate:
    """What a model needs in memory to run with a given context length."""

    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def explain(self) -> str:
        return (f"{human_bytes(self.total)} (weights {human_bytes(self.weights)}, context "
                f"{human_bytes(self.kv_cache)}, working memory {human_bytes(self.overhead)})")


def estimate_memory(weights: int, kv_cache: int) -> MemoryEstimate:
    # llama.cpp's compute buffers and the engine process itself: measured at roughly
    # 100-200 MB for small models and a few percent of the weights for large ones.
    overhead = max(200_000_000, weights // 20)
    return MemoryEstimate(weights=weights, kv_cache=kv_cache, overhead=overhead)


@dataclass(frozen=True)
class Gpu:
    name: str
    total: int
    free: int


def gpus() -> list[Gpu]:
    """NVIDIA GPUs the CUDA build of llama.cpp could use, from nvidia-smi; [] when there is none
    or this build has no GPU backend that can be asked."""
    from desktop.core import runtime

    if runtime.backend() != "CUDA" or shutil.which("nvidia-smi") is None:
        return []
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


def parse_nvidia_smi(text: str) -> list[Gpu]:
    found = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.append(Gpu(parts[0], int(parts[1]) * 1024 * 1024, int(parts[2]) * 1024 * 1024))
    return found
