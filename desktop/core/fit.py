"""Will a model run on this machine? A label for each variant, with the numbers behind it.

The need is the same estimate the engine checks before loading (hardware.estimate_memory):
weights + KV cache for the chosen context + working memory. It is compared with free video
memory (when llama.cpp was built with a GPU backend and a GPU was found), then with free RAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop.core.hardware import MemoryEstimate, estimate_memory
from desktop.core.units import human_bytes

FITS_GPU, FITS_RAM, TIGHT, TOO_LARGE = "fits on GPU", "fits in RAM", "tight", "too large"
# Leave room for the system and the apps already open.
GPU_SHARE = 0.9
RAM_SHARE = 0.8
# The variant Hearth recommends: the largest that fits, up to Q6_K; bigger ones (Q8_0, F16) are
# barely better and run at about half the speed, so they are only chosen when nothing else fits.
NEAR_LOSSLESS = ("Q8_0", "F16", "BF16", "F32")


@dataclass(frozen=True)
class Machine:
    ram_total: int
    ram_free: int
    vram_free: int = 0  # 0: no usable GPU

    @staticmethod
    def here() -> "Machine":
        from desktop.core import hardware

        found = hardware.gpus()
        return Machine(hardware.total_memory(), hardware.available_memory(),
                       max((g.free for g in found), default=0))


@dataclass(frozen=True)
class Fit:
    label: str
    memory: MemoryEstimate
    machine: Machine
    context_counted: bool = True

    @property
    def runs(self) -> bool:
        return self.label in (FITS_GPU, FITS_RAM)

    def explain(self) -> str:
        need = self.memory.explain() if self.context_counted else (
            f"{human_bytes(self.memory.total)} (weights {human_bytes(self.memory.weights)}, working "
            f"memory {human_bytes(self.memory.overhead)}; the context is not counted yet)")
        have = f"{human_bytes(self.machine.ram_free)} of {human_bytes(self.machine.ram_total)} RAM free"
        if self.machine.vram_free:
            have = f"{human_bytes(self.machine.vram_free)} of video memory and {have}"
        return f"Needs about {need}. This computer has {have}."


def assess(weights: int, kv_cache: int | None, machine: Machine) -> Fit:
    memory = estimate_memory(weights, kv_cache or 0)
    need = memory.total
    if machine.vram_free and need <= machine.vram_free * GPU_SHARE:
        label = FITS_GPU
    elif need <= machine.ram_free * RAM_SHARE:
        label = FITS_RAM
    elif need <= max(machine.ram_free, machine.ram_total * RAM_SHARE):
        label = TIGHT  # fits once other apps are closed, or just barely
    else:
        label = TOO_LARGE
    return Fit(label, memory, machine, context_counted=kv_cache is not None)


def recommend(fits: dict[str, tuple[int, Fit]]) -> str | None:
    """The quantization to suggest, from {quantization: (size, fit)}; None when nothing runs."""
    running = {q: size for q, (size, f) in fits.items() if f.runs}
    if not running:
        return None
    usual = {q: size for q, size in running.items() if q.upper() not in NEAR_LOSSLESS}
    if usual:
        return max(usual, key=usual.__getitem__)
    return min(running, key=running.__getitem__)


def assess_variants(variants, kv_cache: int | None, machine: Machine) -> tuple[dict[str, tuple[int, Fit]], str | None]:
    """Each variant's fit, {quantization: (size, fit)}, and the quantization to recommend."""
    fits = {v.quantization: (v.size, assess(v.size, kv_cache, machine)) for v in variants}
    return fits, recommend(fits)
