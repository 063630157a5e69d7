"""Hearth's benchmark suite (`make bench`): every benchmark in its own process, one after the
other, then one table of every figure with its reference, ratio and target.

Writes tests/bench/results.json (every figure, the machine and the versions) and
tests/bench/results.md (the table), and puts the table into README.md between the
`<!-- bench:begin -->` and `<!-- bench:end -->` lines.

--quick runs one short pass of each (the smoke test) into a folder of its own (--out), leaving
the real results and README.md alone.

Usage: python tests/bench/run.py [--quick] [--out DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import RESULTS  # noqa: E402

# In the order they run: the ones that need all the cores to themselves first.
BENCHMARKS = ("stream", "engine", "serve", "embed", "docs", "startup", "big_data", "smooth", "render", "download",
              "faults")
TITLES = {"stream": "Generation", "engine": "Model load and memory", "serve": "Local API server", "embed": "Embeddings",
          "docs": "Document search", "startup": "Start-up",
          "big_data": "Big data", "smooth": "GUI smoothness", "render": "Drawing long answers",
          "download": "Downloads", "faults": "Faults"}
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def cell(value: object) -> str:
    if value is None or value != value:  # None or NaN
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}".removesuffix(".0")
    return str(value)


def table(results: dict) -> str:
    m = results.get("machine", {})
    lines = [f"Measured on {m.get('cpu', '?')}, {m.get('physical_cores', '?')} cores, {m.get('ram_gb', '?')} GB "
             f"RAM, {m.get('os', '?')}; Python {m.get('python', '?')}, llama-cpp-python "
             f"{m.get('llama_cpp_python', '?')}, PySide6 {m.get('pyside6', '?')}. Each reference was measured "
             "in the same run, interleaved; figures are medians.", "",
             "| | Figure | Hearth | Reference | Ratio | Target | Met |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for name in BENCHMARKS:
        section = results.get(name)
        if not section:
            continue
        for i, r in enumerate(section.get("rows", [])):
            reference = f"{cell(r['reference'])} ({r['reference_name']})" if r["reference"] is not None else ""
            met = {True: "yes", False: "**no**", None: ""}[r["met"]]
            lines.append(f"| {TITLES[name] if i == 0 else ''} | {r['figure']} | {cell(r['hearth'])} | {reference} | "
                         f"{cell(r['ratio'])} | {r['target']} | {met} |")
    return "\n".join(lines) + "\n"


def put_in_readme(markdown: str) -> None:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block for the table")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{markdown}{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short pass of each, into --out")
    parser.add_argument("--out", type=Path, help="folder for results.json and results.md")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run these, keep the others' figures")
    args = parser.parse_args()
    out = args.out or (None if not args.quick else Path(os.environ.get("TMPDIR", "/tmp")) / "hearth-bench-quick")
    results_file = out / "results.json" if out else RESULTS
    results_file.parent.mkdir(parents=True, exist_ok=True)
    if args.quick and results_file.exists():
        results_file.unlink()
    env = dict(os.environ, HEARTH_BENCH_RESULTS=str(results_file),
               QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "bench" / f"{name}.py"),
                               *(["--quick"] if args.quick else [])], cwd=ROOT, env=env)
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
        if done.returncode != 0:
            failed.append(name)
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    markdown = table(results)
    results_file.with_suffix(".md").write_text(markdown)
    print()
    print(markdown)
    if failed:
        print(f"These benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if out is None:
        put_in_readme(markdown)
        print(f"Saved {results_file.relative_to(ROOT)}, {results_file.with_suffix('.md').relative_to(ROOT)} "
              "and the table in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
