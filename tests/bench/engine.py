"""Model load and engine memory: Hearth's engine against bare llama-cpp-python, in one run.

Both run in a new process, as Hearth's engine does: (a) bare is `python -c` that imports llama_cpp
and makes a Llama; (b) Hearth is Engine.ensure(), which starts `hearth engine` (llama-cpp-python's
server with Hearth's routes) and waits until it answers. Timed from launching the process until
the model can be used. "First" loads start with the model file dropped from the page cache
(posix_fadvise DONTNEED, no root needed); "second" loads follow at once, the file cached.
Memory is each process's resident set after one short answer (compute buffers allocated).
Same model, context and threads; runs alternate a, b, b, a...

Usage: python tests/bench/engine.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import machine_line, median, row, save  # noqa: E402
from tests.bench.stream import starter_model  # noqa: E402

BARE = """
import json, sys, time
launched, model, n_ctx, threads = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import psutil
from llama_cpp import Llama
llm = Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
loaded = time.time() - launched
llm.create_chat_completion(messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0.0)
print(json.dumps({"load_s": loaded, "rss": psutil.Process().memory_info().rss}))
"""


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache, as after a reboot (for this file only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bare(model: Path, n_ctx: int, threads: int) -> dict[str, float]:
    launched = time.time()
    out = subprocess.run([sys.executable, "-c", BARE, str(launched), str(model), str(n_ctx), str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Hearth:
    def __init__(self, model: Path, n_ctx: int, threads: int) -> None:
        from desktop.core.services import open_services
        from desktop.core.settings import LoadOptions

        services = open_services()
        self.model = services.library.import_file(model, link=True)
        self.options = LoadOptions(n_ctx=n_ctx, n_threads=threads)
        self.paths = services.paths
        services.close()

    def run(self) -> dict[str, float]:
        return asyncio.run(self._run())

    async def _run(self) -> dict[str, float]:
        import psutil

        from desktop.core.engine import Engine
        from desktop.core.providers import open_client
        from desktop.core.settings import Sampling

        engine = Engine(self.paths)
        try:
            started = time.time()
            await engine.ensure(self.model, self.options)
            loaded = time.time() - started
            client = open_client(engine.endpoint())
            async for _ in client.stream([{"role": "user", "content": "Say hello."}],
                                         Sampling(temperature=0.0, max_tokens=8)):
                pass
            await client.aclose()
            return {"load_s": loaded, "rss": psutil.Process(engine.pid).memory_info().rss}
        finally:
            await engine.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one run of each (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-bench-")
    import psutil

    threads = args.threads or psutil.cpu_count(logical=False) or 1
    model, n_ctx = starter_model(), 2048
    hearth = Hearth(model, n_ctx, threads)
    runs: dict[str, list[dict[str, float]]] = {"bare_first": [], "bare_second": [], "hearth_first": [],
                                               "hearth_second": []}
    for i in range(args.runs):
        for side in (("bare", "hearth") if i % 2 == 0 else ("hearth", "bare")):
            load = (lambda: bare(model, n_ctx, threads)) if side == "bare" else hearth.run
            evict(model)
            runs[f"{side}_first"].append(load())
            runs[f"{side}_second"].append(load())
            print(f"run {i + 1} {side}: first {runs[f'{side}_first'][-1]['load_s']:.3f} s, second "
                  f"{runs[f'{side}_second'][-1]['load_s']:.3f} s, "
                  f"{runs[f'{side}_second'][-1]['rss'] / 1e6:.0f} MB", file=sys.stderr)

    def load_s(key: str) -> float:
        return median([r["load_s"] for r in runs[key]])

    def rss_mb(side: str) -> float:
        return median([r["rss"] for r in runs[f"{side}_first"] + runs[f"{side}_second"]]) / 1e6

    name = "bare llama-cpp-python process"
    rows = [
        row("Model load, file not cached, s", load_s("hearth_first"), load_s("bare_first"), reference_name=name,
            digits=3),
        row("Model load, file cached, s", load_s("hearth_second"), load_s("bare_second"), reference_name=name,
            digits=3),
        row("Engine memory (RSS) after an answer, MB", rss_mb("hearth"), rss_mb("bare"), reference_name=name,
            digits=0),
    ]
    print(machine_line())
    print(f"Model {model.name} ({model.stat().st_size / 1e6:.0f} MB), context {n_ctx}, {threads} threads, "
          f"{args.runs} alternating runs each")
    print(f"{'':40}{'bare process':>14}{'Hearth engine':>15}{'ratio':>8}")
    for r in rows:
        print(f"{r['figure']:40}{r['reference']:>14}{r['hearth']:>15}{r['ratio']:>8.2f}")
    save("engine", {"model": model.name, "n_ctx": n_ctx, "threads": threads, "runs": args.runs,
                    **{k: [round(r["load_s"], 3) for r in v] for k, v in runs.items()},
                    "hearth_rss_mb": round(rss_mb("hearth")), "bare_rss_mb": round(rss_mb("bare"))},
         rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
