"""Embeddings through the local API server against bare llama-cpp-python, in one run.

(a) bare: llama_cpp.Llama(embedding=True) in this process, `create_embedding`, with llama.cpp's
    own last-token pooling (the vectors Hearth gives for a chat model, so both do the same work).
(b) Hearth: `LocalServer` on 127.0.0.1 (the app's ASGI server, the model's engine child in
    embedding mode), asked by the real `openai` SDK (`embeddings.create`).
Same model (the SmolLM2 starter), threads and context. 100 short passages, embedded two ways:
one request of 100 inputs, and 100 requests of one. Runs interleaved a, b, a, b...; the
engine's load is outside the timings (one request first). Figures: median seconds and the
spread (min-max) over the runs.

Usage: python tests/bench/embed.py [--runs N] [--passages N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import machine_line, median, row, save  # noqa: E402
from tests.bench.stream import starter_model  # noqa: E402

TOPICS = ("the weather", "a recipe for bread", "train timetables", "a football match", "tax forms",
          "a garden in spring", "repairing a bicycle", "the history of Rome", "a job interview", "bird song")


def passages(count: int) -> list[str]:
    """`count` short, different passages (15-20 tokens each)."""
    return [f"Passage {i}: a short note about {TOPICS[i % len(TOPICS)]}, written on day {i // len(TOPICS) + 1}."
            for i in range(count)]


class Bare:
    def __init__(self, model: Path, n_ctx: int, threads: int) -> None:
        import llama_cpp

        self.llama = llama_cpp.Llama(str(model), embedding=True, n_ctx=n_ctx, n_threads=threads,
                                     n_threads_batch=threads, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST,
                                     verbose=False)

    def batch(self, texts: list[str]) -> float:
        started = time.perf_counter()
        got = self.llama.create_embedding(texts)
        assert len(got["data"]) == len(texts)
        return time.perf_counter() - started

    def one_by_one(self, texts: list[str]) -> float:
        started = time.perf_counter()
        for text in texts:
            self.llama.create_embedding(text)
        return time.perf_counter() - started


class Served:
    """A LocalServer with the starter model installed, and the openai SDK pointed at it."""

    def __init__(self, model: Path, n_ctx: int, threads: int) -> None:
        from openai import AsyncOpenAI

        from desktop.core.server import LocalServer, ServerConfig
        from desktop.core.services import open_services
        from desktop.core.settings import LoadOptions

        self.loop = asyncio.new_event_loop()
        self.services = open_services()
        self.services.settings = replace(self.services.settings, load=LoadOptions(n_ctx=n_ctx, n_threads=threads))
        self.model = self.services.library.import_file(model, link=True).id
        self.server = LocalServer(self.services, ServerConfig(port=0))
        self.loop.run_until_complete(self.server.start())
        self.client = AsyncOpenAI(base_url=self.server.address + "/v1", api_key="hearth", max_retries=0, timeout=600)

    def _time(self, coro) -> float:
        started = time.perf_counter()
        self.loop.run_until_complete(coro)
        return time.perf_counter() - started

    def batch(self, texts: list[str]) -> float:
        async def go() -> None:
            got = await self.client.embeddings.create(model=self.model, input=texts)
            assert len(got.data) == len(texts)
        return self._time(go())

    def one_by_one(self, texts: list[str]) -> float:
        async def go() -> None:
            for text in texts:
                await self.client.embeddings.create(model=self.model, input=text)
        return self._time(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.run_until_complete(self.server.stop())
        self.services.close()
        self.loop.close()


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.passages = 1, 10
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-bench-embed-")
    import psutil

    print(machine_line())
    threads = psutil.cpu_count(logical=False) or 1
    model = starter_model()
    n_ctx = 2048
    texts = passages(args.passages)

    served = Served(model, n_ctx, threads)
    served.batch(texts[:2])  # the engine's load, outside the timings
    bare = Bare(model, n_ctx, threads)
    bare.batch(texts[:2])
    figures: dict[str, list[float]] = {"bare_batch": [], "served_batch": [], "bare_single": [], "served_single": []}
    for i in range(args.runs):
        figures["bare_batch"].append(bare.batch(texts))
        figures["served_batch"].append(served.batch(texts))
        figures["bare_single"].append(bare.one_by_one(texts))
        figures["served_single"].append(served.one_by_one(texts))
        print(f"run {i + 1}: one request of {len(texts)}: bare {figures['bare_batch'][-1]:.2f} s, server "
              f"{figures['served_batch'][-1]:.2f} s; {len(texts)} requests of one: bare "
              f"{figures['bare_single'][-1]:.2f} s, server {figures['served_single'][-1]:.2f} s",
              file=sys.stderr, flush=True)
    served.close()

    med = {k: median(v) for k, v in figures.items()}
    n = len(texts)
    print(f"{n} passages, medians of {args.runs} (spread): one request of {n}: bare {med['bare_batch']:.2f} s "
          f"({spread(figures['bare_batch'])}), through the server {med['served_batch']:.2f} s "
          f"({spread(figures['served_batch'])}); {n} requests of one: bare {med['bare_single']:.2f} s "
          f"({spread(figures['bare_single'])}), through the server {med['served_single']:.2f} s "
          f"({spread(figures['served_single'])})")
    rows = [
        row(f"Embed {n} passages in one request (openai SDK), s", med["served_batch"], med["bare_batch"],
            reference_name="bare llama-cpp-python", digits=2),
        row(f"Embed {n} passages, one request each, s", med["served_single"], med["bare_single"],
            reference_name="bare llama-cpp-python", digits=2),
    ]
    save("embed", {"runs": args.runs, "passages": n, "threads": threads, "n_ctx": n_ctx,
                   **{f"{k}_s": [round(x, 3) for x in v] for k, v in figures.items()}}, rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
