"""Generation speed through Hearth's whole path against bare llama-cpp-python, in one run.

(a) bare: llama_cpp.Llama in this process, streaming a chat completion.
(b) Hearth: the engine child, the OpenAI client on the qasync loop, and the real chat window
    (offscreen) receiving the text.
Same model, prompt, threads, context and greedy sampling; runs interleaved a, b, a, b...
While (b) streams, a 10 ms timer on the GUI thread measures how late it fires (the stall).

Usage: python tests/bench/stream.py [--runs N] [--max-tokens N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import machine_line, median, percentile, save  # noqa: E402

PROMPT = "Count from 1 to 300, separating the numbers with commas."
SYSTEM = "You are a helpful assistant."


def starter_model() -> Path:
    path = os.environ.get("HEARTH_STARTER_MODEL")
    if path and Path(path).is_file():
        return Path(path)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hearth-build" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def rate(stamps: list[float]) -> float:
    """Tokens per second of decoding: from the first token to the last."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


class Bare:
    def __init__(self, model: Path, n_ctx: int, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                         verbose=False)

    def run(self, max_tokens: int) -> dict[str, float]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
        started = time.perf_counter()
        stamps: list[float] = []
        for chunk in self.llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                     temperature=0.0, top_k=1, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
        return {"tokens": len(stamps), "tokens_per_s": rate(stamps),
                "ttft_ms": (stamps[0] - started) * 1000 if stamps else float("nan")}


class Hearth:
    """The real window, driven the way a person would: a prompt sent, the answer streamed in."""

    def __init__(self, model: Path, n_ctx: int, threads: int) -> None:
        import qasync
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer
        from PySide6.QtWidgets import QApplication

        from desktop.core.services import open_services
        from desktop.core.settings import LoadOptions, Sampling
        from desktop.ui.main_window import MainWindow
        from desktop.ui.theme import apply_theme

        self.app = QApplication.instance() or QApplication([])
        self.loop = qasync.QEventLoop(self.app)
        asyncio.set_event_loop(self.loop)
        self.services = open_services()
        self.services.settings = replace(self.services.settings, system_prompt=SYSTEM,
                                         load=LoadOptions(n_ctx=n_ctx, n_threads=threads))
        self.model = self.services.library.import_file(model, link=True)
        self.window = MainWindow(self.services, apply_theme(self.app, dark=False), preload_model=False)
        self.window.show()
        self.sampling = Sampling(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                 seed=1)
        self.lateness: list[float] = []
        self._clock = QElapsedTimer()
        self._ticker = QTimer(interval=10)
        self._ticker.setTimerType(Qt.TimerType.PreciseTimer)
        self._ticker.timeout.connect(self._tick)
        self._last = 0

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed()
        self.lateness.append(max(0.0, (now - self._last) / 1e6 - 10.0))
        self._last = now

    def run(self, max_tokens: int) -> dict[str, float]:
        return self.loop.run_until_complete(self._run(max_tokens))

    async def _run(self, max_tokens: int) -> dict[str, float]:
        store = self.services.store
        conversation = self.services.chat.new_conversation(model_id=self.model.id)
        store.update_conversation(conversation.id, sampling=asdict(replace(self.sampling, max_tokens=max_tokens)))
        self.window.open_conversation(conversation.id)
        await self.services.engine.ensure(self.model, self.services.settings.load)
        self.lateness = []
        self._clock.start()
        self._last = 0
        self._ticker.start()
        self.window.send(PROMPT)
        await asyncio.gather(*self.window._tasks)  # the answer's task: no polling to steal CPU
        self._ticker.stop()
        answer = store.messages(conversation.id)[-1]
        assert answer.status == "complete", answer.error
        return {"tokens": answer.tokens_out, "tokens_per_s": answer.tokens_per_s, "ttft_ms": answer.ttft_ms,
                "lateness": list(self.lateness)}

    def close(self) -> None:
        self.window.close()
        self.services.close()
        self.loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one short run of each (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.max_tokens = 1, 32
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-bench-")
    import psutil

    threads = args.threads or psutil.cpu_count(logical=False) or 1
    model = starter_model()
    n_ctx = 2048
    bare, hearth = Bare(model, n_ctx, threads), Hearth(model, n_ctx, threads)
    bare.run(16), hearth.run(16)  # warm both up: first-request costs are not generation speed
    a_runs, b_runs = [], []
    for _ in range(args.runs):
        a_runs.append(bare.run(args.max_tokens))
        b_runs.append(hearth.run(args.max_tokens))
    hearth.close()

    a_rate = median([r["tokens_per_s"] for r in a_runs])
    b_rate = median([r["tokens_per_s"] for r in b_runs])
    result = {
        "model": model.name, "prompt": PROMPT, "runs": args.runs, "max_tokens": args.max_tokens,
        "threads": threads, "n_ctx": n_ctx,
        "tokens": {"bare": [r["tokens"] for r in a_runs], "hearth": [r["tokens"] for r in b_runs]},
        "bare_tokens_per_s": round(a_rate, 2),
        "hearth_tokens_per_s": round(b_rate, 2),
        "ratio": round(b_rate / a_rate, 3),
        "bare_ttft_ms": round(median([r["ttft_ms"] for r in a_runs]), 1),
        "hearth_ttft_ms": round(median([r["ttft_ms"] for r in b_runs]), 1),
        # every tick of every Hearth run, pooled
        "gui_stall_p99_ms": round(percentile([x for r in b_runs for x in r["lateness"]], 99), 2),
        "gui_stall_max_ms": round(max(x for r in b_runs for x in r["lateness"]), 2),
    }
    print(machine_line())
    print(f"Model {model.name}, {threads} threads, context {n_ctx}, greedy, {args.max_tokens} tokens max, "
          f"{args.runs} interleaved runs each")
    print(f"{'':28}{'bare llama-cpp-python':>24}{'Hearth (full path)':>22}{'ratio':>8}  target")
    print(f"{'generation, tokens/s':28}{a_rate:>24.1f}{b_rate:>22.1f}{b_rate / a_rate:>8.3f}  >= 0.97")
    print(f"{'time to first token, ms':28}{result['bare_ttft_ms']:>24.1f}{result['hearth_ttft_ms']:>22.1f}"
          f"{result['hearth_ttft_ms'] / result['bare_ttft_ms']:>8.2f}")
    print(f"{'GUI stall p99 / max, ms':28}{'':>24}{result['gui_stall_p99_ms']:>13.1f} / "
          f"{result['gui_stall_max_ms']:<6.1f}{'':>8}  p99 <= 16")
    if not args.quick:
        save("stream", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
