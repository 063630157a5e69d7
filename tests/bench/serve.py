"""The local API server against bare llama-cpp-python, in one run.

(a) bare: llama_cpp.Llama in this process, streaming a chat completion.
(b) Hearth: `LocalServer` on 127.0.0.1 (the app's ASGI server, the model's engine child), asked
    by the real `openai` SDK, streaming.
Same model, prompt, threads, context and greedy sampling; runs interleaved a, b, a, b... Then:
the first request's time including the model's load (a fresh server), and 8 clients asking at
once (every one answered; how long each waited for its answer, p50 and p99).

Usage: python tests/bench/serve.py [--runs N] [--max-tokens N] [--quick]
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

from tests.bench.common import machine_line, median, percentile, row, save  # noqa: E402
from tests.bench.stream import PROMPT, SYSTEM, Bare, starter_model  # noqa: E402

CLIENTS = 8


class Served:
    """A LocalServer with the starter model installed, and the openai SDK pointed at it."""

    def __init__(self, model: Path, n_ctx: int, threads: int) -> None:
        from openai import AsyncOpenAI

        from desktop.core.server import LocalServer, ServerConfig
        from desktop.core.services import open_services
        from desktop.core.settings import LoadOptions

        self.loop = asyncio.new_event_loop()
        self.services = open_services()
        self.services.settings = replace(self.services.settings,
                                         load=LoadOptions(n_ctx=n_ctx, n_threads=threads))
        self.model = self.services.library.import_file(model, link=True).id
        self.server = LocalServer(self.services, ServerConfig(port=0))
        self.loop.run_until_complete(self.server.start())
        self.client = AsyncOpenAI(base_url=self.server.address + "/v1", api_key="hearth", max_retries=0,
                                  timeout=600)

    def run(self, max_tokens: int, prompt: str = PROMPT) -> dict[str, float]:
        return self.loop.run_until_complete(self._run(max_tokens, prompt))

    async def _run(self, max_tokens: int, prompt: str) -> dict[str, float]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        started = time.perf_counter()
        stamps: list[float] = []
        tokens = 0
        stream = await self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=max_tokens,
                                                           temperature=0.0, stream=True,
                                                           # bare's sampling (llama-cpp-python's defaults),
                                                           # not Hearth's (repeat penalty 1.1) it fills in
                                                           extra_body={"top_k": 1, "repeat_penalty": 1.0,
                                                                       "min_p": 0.05, "top_p": 0.95},
                                                           stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                stamps.append(time.perf_counter())
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        # The server sends the first token at once, then what has arrived a tenth of a second at a
        # time: decoding speed is the tokens after the first over the time from the first to the last.
        speed = (tokens - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else float("nan")
        return {"tokens": tokens, "tokens_per_s": speed,
                "ttft_ms": (stamps[0] - started) * 1000 if stamps else float("nan")}

    def together(self, clients: int, max_tokens: int) -> tuple[list[float], int]:
        """`clients` requests at once: the seconds each waited for its whole answer, and how
        many were answered with text."""

        async def one(i: int) -> tuple[float, bool]:
            started = time.perf_counter()
            answer = await self.client.chat.completions.create(
                model=self.model, max_tokens=max_tokens, temperature=0.0,
                messages=[{"role": "user", "content": f"Name a colour. ({i})"}])
            return time.perf_counter() - started, bool(answer.choices[0].message.content)

        async def all_of() -> list[tuple[float, bool]]:
            return await asyncio.gather(*(one(i) for i in range(clients)))

        done = self.loop.run_until_complete(all_of())
        return [d for d, _ in done], sum(ok for _, ok in done)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.run_until_complete(self.server.stop())
        self.services.close()
        self.loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="one short run of each (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.max_tokens = 1, 32
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-bench-serve-")
    import psutil

    print(machine_line())
    threads = psutil.cpu_count(logical=False) or 1
    model = starter_model()
    n_ctx = 2048

    started = time.perf_counter()
    served = Served(model, n_ctx, threads)
    first = served.run(4, "Say hello.")
    first_s = time.perf_counter() - started  # a fresh server: the model's load is in the first answer
    bare = Bare(model, n_ctx, threads)
    bare.run(16), served.run(16)  # warm both up
    a_runs, b_runs = [], []
    for i in range(args.runs):
        a_runs.append(bare.run(args.max_tokens))
        b_runs.append(served.run(args.max_tokens))
        print(f"run {i + 1}: bare {a_runs[-1]['tokens_per_s']:.1f} tokens/s, through the server "
              f"{b_runs[-1]['tokens_per_s']:.1f}", file=sys.stderr, flush=True)
    del bare  # its memory and threads, before the clients arrive together
    waits, answered = served.together(CLIENTS, 16 if args.quick else 64)
    served.close()

    a_rate = median([r["tokens_per_s"] for r in a_runs])
    b_rate = median([r["tokens_per_s"] for r in b_runs])
    pairs = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(a_runs, b_runs, strict=True)]
    p50, p99 = median(waits), percentile(waits, 99)
    print(f"tokens/s: bare {a_rate:.1f}, through the server {b_rate:.1f} (ratio {b_rate / a_rate:.3f}, "
          f"pairs {min(pairs):.3f}–{max(pairs):.3f}); first answer with the load {first_s:.2f} s "
          f"({first['tokens']} tokens); {CLIENTS} clients at once: {answered} answered, wait p50 {p50:.2f} s, "
          f"p99 {p99:.2f} s")
    rows = [
        row("Through the local server (openai SDK), tokens/s", b_rate, a_rate, reference_name="bare llama-cpp-python",
            target="ratio ≥ 0.97", met=b_rate / a_rate >= 0.97),
        row("First request to a fresh server, model load included, s", first_s, digits=2),
        row(f"{CLIENTS} clients at once: answered", answered, CLIENTS, reference_name="asked", target="all",
            met=answered == CLIENTS, digits=0),
        row(f"{CLIENTS} clients at once: wait p50 / p99, s", p50, p99, reference_name="p99", digits=2),
    ]
    save("serve", {"runs": args.runs, "max_tokens": args.max_tokens, "threads": threads, "n_ctx": n_ctx,
                   "bare_tokens_per_s": round(a_rate, 2), "served_tokens_per_s": round(b_rate, 2),
                   "pair_ratios": [round(p, 3) for p in pairs], "first_request_s": round(first_s, 2),
                   "waits_s": [round(w, 2) for w in waits], "answered": answered}, rows, quick=args.quick)
    return 0 if answered == CLIENTS else 1


if __name__ == "__main__":
    sys.exit(main())
