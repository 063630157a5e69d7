"""Generation speed through Hearth's whole path against bare llama-cpp-python, in one run.

(a) bare: llama_cpp.Llama in this process, streaming a chat completion.
(b) Hearth: the engine child, the OpenAI client on the qasync loop, and the real chat window
    (offscreen) receiving the text.
Same model, prompt, threads, context and greedy sampling; runs interleaved a, b, a, b...
While (b) streams, a 10 ms timer on the GUI thread measures how late it fires (the stall), in
runs of their own: the probe's 100 wake-ups a second cost generation up to 8 % here, which is the
benchmark's cost, not Hearth's.

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

from tests.bench.common import Lateness, machine_line, median, percentile, row, save  # noqa: E402

PROMPT = "Count from 1 to 300, separating the numbers with commas."
SYSTEM = "You are a helpful assistant."
LONG_PROMPT_TOKENS = 1000
PARAGRAPH = ("A heat pump moves heat from a cold place to a warm one. In winter it takes heat from the air "
             "or the ground outside and releases it inside the house; a fridge does the same from its "
             "inside to the kitchen. The ratio of heat delivered to electricity used is often three or "
             "more, which is why heat pumps cost less to run than electric heaters. ")


def long_prompt(llm, run: int, tokens: int = LONG_PROMPT_TOKENS) -> str:
    """A user message that makes a prompt of `tokens` tokens with the system prompt and the chat
    template (about 20 tokens), new at its first line."""
    def size(text: str) -> int:
        return len(llm.tokenize((SYSTEM + text).encode(), add_bos=True)) + 20

    text = f"Reading {run}. Summarise this text in one sentence.\n\n"
    while size(text + PARAGRAPH) <= tokens:
        text += PARAGRAPH
    for word in PARAGRAPH.split():
        if size(text + word + " ") > tokens:
            break
        text += word + " "
    return text


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

    def run(self, max_tokens: int, prompt: str = PROMPT) -> dict[str, float]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
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
        self.probe = Lateness()

    def run(self, max_tokens: int, prompt: str = PROMPT, *, probe: bool = False) -> dict[str, float]:
        return self.loop.run_until_complete(self._run(max_tokens, prompt, probe))

    async def _run(self, max_tokens: int, prompt: str, probe: bool) -> dict[str, float]:
        store = self.services.store
        conversation = self.services.chat.new_conversation(model_id=self.model.id)
        store.update_conversation(conversation.id, sampling=asdict(replace(self.sampling, max_tokens=max_tokens)))
        self.window.open_conversation(conversation.id)
        await self.services.engine.ensure(self.model, self.services.settings.load)
        if probe:
            self.probe.start()
        first_words: list[float] = []
        window_on_text = type(self.window)._on_text

        def on_text(window, delta: str) -> None:  # the window hears of the first words: note when
            if not first_words:
                first_words.append(time.perf_counter())
            window_on_text(window, delta)

        self.window._on_text = on_text.__get__(self.window)
        sent = time.perf_counter()
        self.window.send(prompt)
        await asyncio.gather(*self.window._tasks)  # the answer's task: no polling to steal CPU
        lateness = self.probe.stop() if probe else []
        answer = store.messages(conversation.id)[-1]
        assert answer.status == "complete", answer.error
        return {"tokens": answer.tokens_out, "tokens_per_s": answer.tokens_per_s, "prompt_tokens": answer.tokens_in,
                "ttft_ms": (first_words[0] - sent) * 1000 if first_words else float("nan"), "lateness": list(lateness)}

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
    a_runs, b_runs, a_long, b_long = [], [], [], []
    for i in range(args.runs):
        a_runs.append(bare.run(args.max_tokens))
        b_runs.append(hearth.run(args.max_tokens))
        print(f"run {i + 1}: bare {a_runs[-1]['tokens_per_s']:.1f} tokens/s, Hearth {b_runs[-1]['tokens_per_s']:.1f}",
              file=sys.stderr, flush=True)
        a_long.append(bare.run(4, long_prompt(bare.llm, 2 * i)))
        b_long.append(hearth.run(4, long_prompt(bare.llm, 2 * i + 1)))
    probed = [hearth.run(args.max_tokens, probe=True) for _ in range(max(1, args.runs // 3))]
    probed.append(hearth.run(4, long_prompt(bare.llm, 2 * args.runs + 1), probe=True))
    prompt_tokens = b_long[0]["prompt_tokens"] or LONG_PROMPT_TOKENS
    hearth.close()

    a_rate = median([r["tokens_per_s"] for r in a_runs])
    b_rate = median([r["tokens_per_s"] for r in b_runs])
    a_ttft, b_ttft = median([r["ttft_ms"] for r in a_runs]), median([r["ttft_ms"] for r in b_runs])
    a_long_ttft, b_long_ttft = median([r["ttft_ms"] for r in a_long]), median([r["ttft_ms"] for r in b_long])
    stalls = [x for r in probed for x in r["lateness"]]  # every tick of every probed run
    p99, worst = percentile(stalls, 99), max(stalls)
    result = {
        "model": model.name, "prompt": PROMPT, "runs": args.runs, "max_tokens": args.max_tokens,
        "threads": threads, "n_ctx": n_ctx, "long_prompt_tokens": prompt_tokens,
        "tokens": {"bare": [r["tokens"] for r in a_runs], "hearth": [r["tokens"] for r in b_runs]},
        "bare_tokens_per_s": round(a_rate, 2), "hearth_tokens_per_s": round(b_rate, 2),
        "ratio": round(b_rate / a_rate, 3),
        # The machine's speed drifts between runs; each Hearth run against the bare run just before it:
        "pair_ratio_median": round(median([b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(a_runs, b_runs, strict=True)]),
                                   3),
        "bare_ttft_ms": round(a_ttft, 1), "hearth_ttft_ms": round(b_ttft, 1),
        "bare_long_ttft_ms": round(a_long_ttft, 1), "hearth_long_ttft_ms": round(b_long_ttft, 1),
        "gui_stall_p99_ms": round(p99, 2), "gui_stall_max_ms": round(worst, 2),
    }
    bare_name = "bare llama-cpp-python"
    rows = [
        row("Generation, tokens/s", b_rate, a_rate, reference_name=bare_name, target="ratio ≥ 0.97",
            met=b_rate / a_rate >= 0.97),
        row("Generation, Hearth ÷ bare run by run (median of the pairs)", result["pair_ratio_median"], digits=3),
        row("Time to first token, short prompt, ms", b_ttft, a_ttft, reference_name=bare_name),
        row(f"Time to first token, {prompt_tokens}-token prompt, ms", b_long_ttft, a_long_ttft,
            reference_name=bare_name, target="ratio ≤ 1.05", met=b_long_ttft / a_long_ttft <= 1.05),
        row("GUI stall while generating, p99 ms", p99, target="≤ 16", met=p99 <= 16),
        row("GUI stall while generating, max ms", worst, target="≤ 50", met=worst <= 50),
    ]
    print(machine_line())
    print(f"Model {model.name}, {threads} threads, context {n_ctx}, greedy, {args.max_tokens} tokens max, "
          f"{args.runs} interleaved runs each")
    print(f"{'':34}{'bare llama-cpp-python':>24}{'Hearth (full path)':>22}{'ratio':>8}  target")
    print(f"{'generation, tokens/s':34}{a_rate:>24.1f}{b_rate:>22.1f}{b_rate / a_rate:>8.3f}  >= 0.97")
    print(f"{'  run by run (median of ratios)':34}{'':>24}{'':>22}{result['pair_ratio_median']:>8.3f}")
    print(f"{'time to first token, ms':34}{a_ttft:>24.1f}{b_ttft:>22.1f}{b_ttft / a_ttft:>8.2f}")
    print(f"{f'first token, {prompt_tokens}-token prompt, ms':34}{a_long_ttft:>24.1f}{b_long_ttft:>22.1f}"
          f"{b_long_ttft / a_long_ttft:>8.2f}  <= 1.05")
    print(f"{'GUI stall p99 / max, ms':34}{'':>24}{p99:>13.1f} / {worst:<6.1f}{'':>8}  p99 <= 16, max <= 50")
    save("stream", result, rows, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
