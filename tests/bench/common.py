"""Shared pieces of the benchmarks: the machine's description, medians, percentiles, results file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def machine() -> dict[str, object]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "llama_cpp_python": version("llama-cpp-python"),
        "pyside6": version("PySide6-Essentials"),
    }


def machine_line() -> str:
    """What every benchmark prints first: the machine and the versions its figures belong to."""
    m = machine()
    return (f"Machine: {m['cpu']}, {m['physical_cores']} cores, {m['ram_gb']} GB; Python {m['python']}, "
            f"llama-cpp-python {m['llama_cpp_python']}, PySide6 {m['pyside6']}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def save(section: str, data: dict[str, object]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = machine()
    results[section] = data
    RESULTS.write_text(json.dumps(results, indent=2))
