"""What Stop's abort callback costs while llama.cpp reads a prompt (engine_server.PromptAbort).

The callback is Python, asked by llama.cpp at every step of its compute graph, and armed only
until the first token. This reads a ~1,100-token prompt to its first token with the callback
armed and bare, alternating in one process, and prints the medians, ranges and their ratio.

Usage: python tests/bench/prompt_abort.py [--runs N]   (not part of `make bench` yet)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.stream import starter_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs of each kind (default 6)")
    args = parser.parse_args()
    from llama_cpp import Llama

    from desktop.core.engine_server import PromptAbort

    llama = Llama(str(starter_model()), n_ctx=2048, n_threads=2, verbose=False)
    abort, stop = PromptAbort(llama), threading.Event()
    text = ("<|im_start|>user\n" + "The river runs past the old mill and the quiet town. " * 90
            + "Summarise.<|im_end|>\n<|im_start|>assistant\n")
    tokens = llama.tokenize(text.encode(), special=True)
    times: dict[str, list[float]] = {"armed": [], "bare": []}
    for i in range(2 * args.runs):
        kind = "armed" if i % 2 else "bare"
        llama.reset()  # nothing cached: the whole prompt is read each time
        started = time.perf_counter()
        stream = llama.create_completion(prompt=tokens, max_tokens=1, stream=True, temperature=0)
        if kind == "armed":
            abort.arm(stop)
        for _ in stream:
            break
        abort.disarm()
        times[kind].append((time.perf_counter() - started) * 1000)
    print(f"prompt of {len(tokens)} tokens, {args.runs} runs each, interleaved")
    for kind, values in times.items():
        print(f"{kind:5}  median {statistics.median(values):7.1f} ms  range {min(values):.1f}-{max(values):.1f} ms")
    print(f"armed / bare: {statistics.median(times['armed']) / statistics.median(times['bare']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
