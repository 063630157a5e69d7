"""What runs inside the engine child: llama-cpp-python's OpenAI-compatible server for one model,
plus the streaming route Hearth itself uses.

Started by `hearth engine ...` (so a frozen app can start itself). Binds to 127.0.0.1 only and
requires the per-launch API key on every route.

Why a route of our own: the stock route sends every token as its own HTTP chunk and hops threads
for each one. On a laptop whose cores are all busy generating, that per-token work (and the
client's work of reading it) takes CPU from llama.cpp. `/hearth/v1/chat/completions` speaks the
same OpenAI protocol but generates in one thread and sends the first token at once, then what
has arrived every COALESCE_S, and ends with a `usage` chunk counted here.

Every batch wakes the app, which reads it and may draw it; with both cores generating each
wake-up costs tokens. Ten batches a second (rather than 33) took generation from 82 to 99-110
tokens/s on two cores (tests/bench/stream.py); text still appears in steps of a tenth of a second.
"""

import asyncio
import collections
import contextlib
import ctypes
import json
import os
import secrets
import signal
import sys
import threading
import time
from typing import Any

from desktop.core.model_kinds import ENCODER_ARCHITECTURES, POOLING_NAMES

COALESCE_S = 0.1
FIRST_WORDS_WAIT_S = 0.1
# Request fields passed through to llama-cpp-python's create_chat_completion.
CHAT_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed",
               "stop", "presence_penalty", "frequency_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta")


def _die_with_parent(parent_pid: int) -> None:
    """The engine must never outlive the app, even when the app is killed outright."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


WORDS = ("content", "reasoning_content")


def _words(chunk: dict[str, Any]) -> str | None:
    """The kind of text a chunk carries alone ("content" or "reasoning_content"), else None."""
    choices = chunk.get("choices")
    if not choices or choices[0].get("finish_reason"):
        return None
    delta = choices[0].get("delta", {})
    return next(iter(delta)) if len(delta) == 1 and next(iter(delta)) in WORDS else None


def _merge(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join consecutive deltas of the same kind of text into one chunk; keep role, finish and
    notice chunks as they are."""
    merged: list[dict[str, Any]] = []
    for chunk in chunks:
        kind = _words(chunk)
        if kind is not None and merged and _words(merged[-1]) == kind:
            merged[-1]["choices"][0]["delta"][kind] += chunk["choices"][0]["delta"][kind]
        else:
            merged.append(chunk)
    return merged


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


RENDER_GRACE_S = 5.0  # past the template's own time limit: the engine gives up on itself
TEMPLATE_HUNG_EXIT = 70  # exit status when a chat template could not be stopped (see Watchdog)


class Watchdog:
    """The last line of defence against a chat template that ignores its time limit: the
    sandbox checks the clock at every step, but should one step ever run on, the engine logs
    why and exits; the app reports it and starts the engine again with a known format."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._since: float | None = None
        threading.Thread(target=self._watch, name="template-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def rendering(self):
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.25)
            since = self._since
            if since is not None and time.monotonic() - since > self.limit_s:
                from desktop.core.templates import HUNG_LOG

                print(HUNG_LOG, file=sys.stderr, flush=True)
                os._exit(TEMPLATE_HUNG_EXIT)


class Stopped(Exception):
    """The reader left (Stop) before the model wrote anything."""


class PromptAbort:
    """Lets Stop interrupt llama.cpp while it reads a prompt, which takes seconds to minutes on a
    laptop and happens inside one llama_decode call. llama.cpp asks an abort callback between the
    steps of its compute graph (llama_set_abort_callback, llama.h); llama-cpp-python does not
    wrap that function, so it is bound here from the same library.

    The callback is Python, called from llama.cpp's threads for every graph node: cheap beside a
    prompt batch, but not beside one token, so it is armed only until the first token arrives."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp import llama_cpp as lib

        self._ctx = llama.ctx
        self._set = lib._lib.llama_set_abort_callback
        self._set.argtypes = [ctypes.c_void_p, lib.ggml_abort_callback, ctypes.c_void_p]
        self._set.restype = None
        self._event: threading.Event | None = None
        self._callback = lib.ggml_abort_callback(self._should_abort)  # kept: llama.cpp holds a pointer
        self._null = lib.ggml_abort_callback()

    def _should_abort(self, _data: Any) -> bool:
        event = self._event
        return bool(event is not None and event.is_set())

    def arm(self, stop: threading.Event) -> None:
        self._event = stop
        self._set(self._ctx, self._callback, None)

    def disarm(self) -> None:
        if self._event is not None:
            self._set(self._ctx, self._null, None)
            self._event = None


class ThinkingSplitter:
    """Splits the words of a model whose prompt opened a thinking block into reasoning_content
    and content deltas, with the same parser the app uses (reasoning.py)."""

    def __init__(self) -> None:
        from desktop.core.reasoning import ReasoningParser

        self.parser = ReasoningParser(opened=True)
        self.sent = {"reasoning_content": 0, "content": 0}

    def split(self, text: str, *, end: bool = False) -> list[dict[str, str]]:
        """The deltas for `text` (the next words), and at `end` whatever was held back."""
        if text:
            self.parser.feed(text)
        if end:
            self.parser.finish()
        deltas = []
        for kind, value in (("reasoning_content", self.parser.thinking), ("content", self.parser.answer)):
            if len(value) > self.sent[kind]:
                deltas.append({kind: value[self.sent[kind]:]})
                self.sent[kind] = len(value)
        return deltas


class Prompter:
    """The engine's prompts: the model's chat template or a known format (templates.py), the
    tokens they become, and the token ids that end a turn."""

    def __init__(self, llama: Any, model_path: str, choice: str) -> None:
        from desktop.core import gguf, templates

        self.llama = llama
        try:
            info = gguf.read_info(model_path)
            chat_template, architecture, tokens = info.chat_template, info.architecture, info.markup_tokens
        except gguf.GGUFError:
            chat_template, architecture, tokens = "", "", {}
        # Trying the template at start-up renders it at most twice (with the system prompt, then
        # folded into the first message), each within the time limit.
        self.watchdog = Watchdog(2 * templates.TIME_LIMIT_S + RENDER_GRACE_S)
        with self.watchdog.rendering():
            self.builder = templates.PromptBuilder(
                chat_template=chat_template, architecture=architecture, tokens=tokens,
                bos_token=self._token_text(llama.token_bos()), eos_token=self._token_text(llama.token_eos()),
                choice=choice)
        self.abort = PromptAbort(llama)
        if self.builder.notice:
            print(f"hearth-engine: {self.builder.notice}", file=sys.stderr, flush=True)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        try:
            return self.llama._model.token_get_text(token)
        except Exception:  # noqa: BLE001 - a model without that token's text: no such marker
            return ""

    def prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None):
        """(templates.Prompt, prompt tokens, ids of single-token stop markers). `tools`: OpenAI's
        tool list, for templates that take them. Raises templates.TemplateError with a sentence."""
        with self.watchdog.rendering():
            prompt = self.builder.build(messages, tools=tools)
        llama = self.llama
        tokens = llama.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=True)
        bos = llama.token_bos()
        if len(tokens) > 1 and tokens[0] == tokens[1] == bos:  # the template wrote BOS as well
            tokens = tokens[1:]
        stop_ids = set()
        for marker in prompt.stops:
            ids = llama.tokenize(marker.encode("utf-8"), add_bos=False, special=True)
            if len(ids) == 1:
                stop_ids.add(ids[0])
        return prompt, tokens, stop_ids


def _chat_chunk(model: str, delta: dict[str, Any], finish: str | None = None, *, id: str = "hearth") -> dict[str, Any]:
    return {"id": id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def add_hearth_routes(app: Any, prompter: Prompter) -> None:
    from fastapi import Depends, Request
    from fastapi.responses import StreamingResponse
    from llama_cpp import StoppingCriteriaList
    from llama_cpp.server.app import authenticate, get_llama_proxy


    @app.get("/hearth/v1/info", dependencies=[Depends(authenticate)])
    async def info() -> dict[str, Any]:
        return prompter.builder.info()

    @app.post("/hearth/v1/tokens", dependencies=[Depends(authenticate)])
    async def tokens(request: Request) -> dict[str, Any]:
        """How many tokens `messages` make as a prompt, by the model's template (the local API
        server checks a prompt against the context before sending it). Needs no model lock:
        tokenizing reads only the vocabulary."""
        from fastapi.responses import JSONResponse

        from desktop.core.templates import TemplateError

        body = await request.json()
        try:
            _prompt, ids, _stops = await asyncio.to_thread(prompter.prompt, body.get("messages") or [],
                                                           body.get("tools") or None)
        except TemplateError as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                           "code": "template_failed"}}, status_code=400)
        return {"count": len(ids)}

    @app.post("/hearth/v1/chat/completions", dependencies=[Depends(authenticate)])
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        kwargs = {k: body[k] for k in CHAT_FIELDS if body.get(k) is not None}
        kwargs.setdefault("max_tokens", None)  # as in chat completions: until the turn ends (not 16)
        # No seed asked for: a fresh one. llama-cpp-python would otherwise start every engine from
        # the same seed, and a "random" answer would be the same after every restart.
        kwargs.setdefault("seed", secrets.randbelow(2**31 - 1))
        if body.get("logit_bias"):  # OpenAI's keys are token ids written as strings
            kwargs["logit_bias"] = {int(k): float(v) for k, v in body["logit_bias"].items()}
        if body.get("grammar"):  # GBNF (JSON answers, a schema, a forced tool call: the local server's)
            from fastapi.responses import JSONResponse
            from llama_cpp import LlamaGrammar

            try:
                kwargs["grammar"] = LlamaGrammar.from_string(body["grammar"], verbose=False)
            except (ValueError, RuntimeError) as exc:
                return JSONResponse({"error": {"message": f"The grammar cannot be used: {exc}.",
                                               "type": "invalid_request_error", "code": "bad_grammar"}},
                                    status_code=400)
        tools = body.get("tools") or None
        messages = body["messages"]
        model = body.get("model", "local")
        answer_id = f"chatcmpl-{secrets.token_hex(12)}"  # one id for every chunk of this answer, as OpenAI's
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        loop = asyncio.get_running_loop()

        async def events():
            async with contextlib.asynccontextmanager(get_llama_proxy)() as proxy:
                llama = proxy(None)
                pending: collections.deque[Any] = collections.deque()
                stop = threading.Event()
                arrived = asyncio.Event()
                first_sent = threading.Event()  # after the first words, batches go every COALESCE_S
                finished = threading.Event()
                ended = asyncio.Event()  # finished, as the event loop hears of it
                counted = {"tokens": 0, "finish": None}

                def generate() -> None:
                    try:
                        prompt, tokens, stop_ids = prompter.prompt(messages, tools)
                        if prompt.notice:
                            pending.append({"hearth_notice": prompt.notice})
                        if stop.is_set():
                            raise Stopped()
                        stops = list(prompt.stops) + list(kwargs.pop("stop", None) or [])
                        criteria = StoppingCriteriaList([lambda ids, _logits: int(ids[-1]) in stop_ids])
                        stream = llama.create_completion(prompt=tokens, stream=True, stop=stops,
                                                         stopping_criteria=criteria, **kwargs)
                        prompter.abort.arm(stop)  # Stop may interrupt the reading of the prompt
                        # The template opened a reasoning block, so the model's first words are
                        # thinking with no <think> of their own: sent as reasoning_content, as
                        # llama-server does, since a reader of the stream cannot know the prompt.
                        thinking = ThinkingSplitter() if prompt.opens_thinking else None
                        pending.append(_chat_chunk(model, {"role": "assistant"}, id=answer_id))
                        for chunk in stream:
                            prompter.abort.disarm()
                            choice = chunk["choices"][0]
                            text = choice.get("text") or ""
                            if text:
                                counted["tokens"] += 1
                            if choice.get("finish_reason"):
                                counted["finish"] = choice["finish_reason"]
                            if thinking is not None:
                                for delta in thinking.split(text, end=bool(choice.get("finish_reason"))):
                                    pending.append(_chat_chunk(model, delta, id=answer_id))
                                text = ""
                            delta = {"content": text} if text else {}
                            pending.append(_chat_chunk(model, delta, choice.get("finish_reason"), id=answer_id))
                            if not first_sent.is_set():  # until the first words are out: at once
                                loop.call_soon_threadsafe(arrived.set)
                                if text:
                                    # Let the event loop have the GIL to send them, rather than
                                    # have it wait on this thread's next token.
                                    first_sent.wait(FIRST_WORDS_WAIT_S)
                            if stop.is_set():
                                stream.close()
                                break
                    except Stopped:
                        pass
                    except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
                        if isinstance(exc, RuntimeError) and "llama_decode" in str(exc):
                            # A decode that failed or was aborted (Stop): llama.cpp has dropped this
                            # sequence's KV cache from position 0 ("removing memory module entries"),
                            # so llama-cpp-python must forget what it thinks is cached, or the next
                            # prompt is read at the wrong positions (llama_decode returned -1).
                            llama.reset()
                        if not stop.is_set():  # else llama_decode was aborted by Stop: not an error
                            pending.append(exc)
                    finally:
                        prompter.abort.disarm()
                        finished.set()
                        loop.call_soon_threadsafe(arrived.set)
                        loop.call_soon_threadsafe(ended.set)

                worker = threading.Thread(target=generate, name="generate", daemon=True)
                worker.start()
                batch: list[Any] = []
                try:
                    while True:
                        if not pending and not finished.is_set():
                            if not first_sent.is_set():
                                arrived.clear()
                                if not pending and not finished.is_set():
                                    await arrived.wait()
                            else:  # the next batch, or the end at once (not up to COALESCE_S late)
                                with contextlib.suppress(asyncio.TimeoutError):
                                    await asyncio.wait_for(ended.wait(), COALESCE_S)
                        while pending:
                            batch.append(pending.popleft())
                        errors = [c for c in batch if isinstance(c, Exception)]
                        chunks = _merge([c for c in batch if not isinstance(c, Exception)])
                        has_words = any(c.get("choices") and any(c["choices"][0]["delta"].get(k) for k in WORDS)
                                        for c in chunks)
                        if not has_words and not errors and not finished.is_set():
                            continue  # the role alone is not worth a write: it goes with the first words
                        batch = []
                        # One write per batch: small writes in a row can wait on each other's ACKs.
                        out = "".join(_sse(chunk) for chunk in chunks)
                        if errors:
                            out += _sse({"error": {"message": str(errors[0])}})
                        if out:
                            yield out
                        if has_words:
                            first_sent.set()
                        if errors:
                            break
                        if finished.is_set() and not pending:
                            break
                    if want_usage:
                        # The KV cache now holds the prompt and the answer, except the last
                        # token when the answer was cut at max_tokens.
                        completion = counted["tokens"]
                        in_context = int(llama.n_tokens) + (1 if counted["finish"] == "length" else 0)
                        prompt_tokens = max(in_context - completion, 0)
                        yield _sse({"id": answer_id, "object": "chat.completion.chunk", "created": int(time.time()),
                                    "model": model, "choices": [],
                                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                              "total_tokens": prompt_tokens + completion}})
                    yield "data: [DONE]\n\n"
                finally:
                    # The reader left (Stop) or the answer is done: end generation before the
                    # model is free for the next request.
                    stop.set()
                    try:
                        await asyncio.shield(asyncio.to_thread(worker.join))
                    except asyncio.CancelledError:
                        # The reader left, and the server cancels this response again at every
                        # await: a shielded wait then ends at once, the lock would be released and
                        # the next request would decode beside this one in the same context (a
                        # GGML_ASSERT crash). Generation stops within a step once `stop` is set
                        # (the abort callback), so wait for it here.
                        worker.join()
                        raise

        return StreamingResponse(events(), media_type="text/event-stream")


# --- embedding mode ------------------------------------------------------------------------------
#
# Pooling: an embedding model's GGUF says how its token vectors become one (`<arch>.pooling_type`:
# 1 mean, 2 CLS, 3 last; written by llama.cpp's convert_hf_to_gguf from the model's
# sentence-transformers config), and llama.cpp then pools inside the graph. A chat model's GGUF
# says nothing, and llama.cpp gives one vector per token, which is not what OpenAI's or Ollama's
# API returns. For those Hearth takes the LAST token's vector: in a causal model it is the only
# position that has read the whole input; it is what Ollama does (runner.go: when
# GetEmbeddingsSeq gives nil it takes GetEmbeddingsIth of the sequence's last token) and how
# decoder embedding models are trained (e5-mistral, gte-Qwen, Qwen3-Embedding all pool "last").
# llama-server instead refuses pooling "none" on its OpenAI route. Measured here on SmolLM2 with
# llama.cpp's own pooling, last was also 7x faster than mean for one input at a time (a mean
# over a 256-sequence context). Only the last token of each input is marked as an output, so
# llama.cpp computes no logits for the others: marking every token (as llama-cpp-python's
# embed does) costs n_batch x vocabulary floats (805 MB for SmolLM2 at 4096 tokens).
# A non-causal model (BERT-like) with no pooling in its file is averaged here (mean).
NON_CAUSAL = ENCODER_ARCHITECTURES  # (model_kinds: llama.cpp's encoder-only architectures)
LLAMA_POOLING = POOLING_NAMES


def embedding_plan(metadata: dict[str, Any], n_ctx: int) -> dict[str, Any]:
    """How the engine embeds with a model, from its GGUF metadata: {"pooling": "mean" | "cls" |
    "last" | "rank", "by": "model" (llama.cpp pools, as the file says) or "hearth" (no pooling
    in the file: Hearth takes the last token of a causal model, the mean of a non-causal one),
    "n_batch", "n_ubatch", "n_ctx"}; n_ctx is the longest input in tokens (the context asked for:
    llama.cpp rounds its own up to 256, past what a model with learned positions can read). A model that pools, and any non-causal model, reads each input in
    one batch and one micro-batch (its attention sees the whole input at once, and llama.cpp
    asserts n_ubatch >= tokens for them), so both are n_ctx; a causal model without pooling
    keeps llama-cpp-python's 512 and reads a long input in steps."""
    arch = str(metadata.get("general.architecture", ""))
    declared = metadata.get(f"{arch}.pooling_type")
    causal = bool(metadata.get(f"{arch}.attention.causal", arch not in NON_CAUSAL))
    if isinstance(declared, int) and declared in LLAMA_POOLING:
        return {"pooling": LLAMA_POOLING[declared], "by": "model", "n_batch": n_ctx, "n_ubatch": n_ctx, "n_ctx": n_ctx}
    if causal:
        return {"pooling": "last", "by": "hearth", "n_batch": min(512, n_ctx), "n_ubatch": min(512, n_ctx),
                "n_ctx": n_ctx}
    return {"pooling": "mean", "by": "hearth", "n_batch": n_ctx, "n_ubatch": n_ctx, "n_ctx": n_ctx}


class TooLong(ValueError):
    """An input has more tokens than the context: `index` (of the input), `tokens`, `n_ctx`."""

    def __init__(self, index: int, tokens: int, n_ctx: int) -> None:
        super().__init__(f"Input {index} is {tokens} tokens, but this model's maximum context length is "
                         f"{n_ctx} tokens.")
        self.index, self.tokens, self.n_ctx = index, tokens, n_ctx


class Embedder:
    """One vector per input, of unit length (L2), as float32, from a model loaded in embedding
    mode. llama-cpp-python's `Llama.embed` is not used: it cuts an input to n_batch tokens
    without a word, takes only text, and returns per-token vectors for a chat model."""

    def __init__(self, llama: Any, plan: dict[str, Any]) -> None:
        self.llama, self.plan = llama, plan

    @property
    def n_ctx(self) -> int:
        """The longest input, in tokens: the context the engine was asked for."""
        return int(self.plan.get("n_ctx") or self.llama.n_ctx())

    @property
    def dim(self) -> int:
        return int(self.llama.n_embd())

    def tokens(self, items: list[Any], truncate: bool) -> tuple[list[list[int]], list[int]]:
        """The tokens of each input (a text, tokenized with the model's BOS/CLS and EOS/SEP as
        llama-cpp-python's embed does, or a list of token ids taken as they are), and the
        indices of the inputs cut to the context (only when `truncate`). Raises TooLong, or
        ValueError for a token id outside the vocabulary."""
        n_vocab, n_ctx = int(self.llama.n_vocab()), self.n_ctx
        out, cut = [], []
        for index, item in enumerate(items):
            if isinstance(item, str):
                ids = self.llama.tokenize(item.encode("utf-8"), add_bos=True, special=False)
            else:
                ids = [int(t) for t in item]
                bad = next((t for t in ids if not 0 <= t < n_vocab), None)
                if bad is not None:
                    raise ValueError(f"Input {index} has the token id {bad}, but this model's vocabulary "
                                     f"has ids 0 to {n_vocab - 1}.")
            if len(ids) > n_ctx:
                if not truncate:
                    raise TooLong(index, len(ids), n_ctx)
                ids, _ = ids[:n_ctx], cut.append(index)
            out.append(ids)
        return out, cut

    def embed(self, seqs: list[list[int]]):
        """A (len(seqs), dim) float32 numpy array of unit vectors. Inputs are packed into one
        decode while they fit in n_batch tokens and the context's parallel sequences."""
        import numpy as np

        llama = self.llama
        n_batch = int(llama.n_batch)
        n_seq_max = max(1, int(llama.context_params.n_seq_max))
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        group: list[int] = []
        used = 0
        try:
            for index, ids in enumerate(seqs):
                if len(ids) > n_batch:  # only a causal model without pooling (n_batch < n_ctx): in steps
                    if self.plan["pooling"] != "last" or self.plan["by"] != "hearth":
                        raise TooLong(index, len(ids), n_batch)
                    self._decode(group, seqs, out)
                    group, used = [], 0
                    self._long(index, ids, out)
                    continue
                if group and (used + len(ids) > n_batch or len(group) >= n_seq_max):
                    self._decode(group, seqs, out)
                    group, used = [], 0
                group.append(index)
                used += len(ids)
            self._decode(group, seqs, out)
        finally:
            llama._ctx.kv_cache_clear()
            llama.reset()  # llama-cpp-python's idea of what the context holds: nothing
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def _fill(self, ids: list[int], seq_id: int, start: int, outputs: str) -> None:
        batch = self.llama._batch.batch
        first = batch.n_tokens
        for i, token in enumerate(ids):
            j = first + i
            batch.token[j] = token
            batch.pos[j] = start + i
            batch.seq_id[j][0] = seq_id
            batch.n_seq_id[j] = 1
            batch.logits[j] = outputs == "all"
        if outputs == "last" and ids:
            batch.logits[first + len(ids) - 1] = True
        batch.n_tokens = first + len(ids)

    def _vector(self, pointer: Any):
        import numpy as np

        if not pointer:
            raise RuntimeError("llama.cpp gave no embedding for an input")
        return np.ctypeslib.as_array(pointer, shape=(self.dim,)).astype(np.float32)

    def _decode(self, group: list[int], seqs: list[list[int]] | None = None, out: Any = None) -> None:
        if not group:
            return
        from llama_cpp import llama_cpp as lib

        llama = self.llama
        llama._ctx.kv_cache_clear()
        llama._batch.reset()
        by, pooling = self.plan["by"], self.plan["pooling"]
        outputs = "all" if by == "model" or pooling == "mean" else "last"
        spans = []
        for seq_id, index in enumerate(group):
            start = llama._batch.batch.n_tokens
            self._fill(seqs[index], seq_id, 0, outputs)
            spans.append((start, len(seqs[index])))
        llama._ctx.decode(llama._batch)
        ctx = llama._ctx.ctx
        for seq_id, (index, (start, length)) in enumerate(zip(group, spans, strict=True)):
            if by == "model":
                out[index] = self._vector(lib.llama_get_embeddings_seq(ctx, seq_id))
            elif pooling == "last":
                out[index] = self._vector(lib.llama_get_embeddings_ith(ctx, start + length - 1))
            else:
                out[index] = sum(self._vector(lib.llama_get_embeddings_ith(ctx, start + k)) for k in range(length)) / length
        llama._batch.reset()

    def _long(self, index: int, ids: list[int], out: Any) -> None:
        """An input longer than n_batch, in a causal model: read in n_batch steps (the KV cache
        keeps the earlier ones), the last token's vector taken."""
        from llama_cpp import llama_cpp as lib

        llama = self.llama
        n_batch = int(llama.n_batch)
        llama._ctx.kv_cache_clear()
        for start in range(0, len(ids), n_batch):
            llama._batch.reset()
            part = ids[start:start + n_batch]
            last = start + n_batch >= len(ids)
            self._fill(part, 0, start, "last" if last else "none")
            llama._ctx.decode(llama._batch)
            if last:
                out[index] = self._vector(lib.llama_get_embeddings_ith(llama._ctx.ctx, len(part) - 1))
        llama._batch.reset()


def add_embedding_routes(app: Any, embedder: Embedder) -> None:
    """`POST /hearth/v1/embeddings` in the engine child: `{"input": [text | [token id, ...], ...],
    "truncate": false}` -> `{"embeddings": base64 of little-endian float32, rows of "dim", "dim",
    "tokens": [per input], "n_ctx", "pooling", "truncated": [indices cut to the context]}`.
    An input over the context without truncate: 400, code context_length_exceeded, with
    `index`, `tokens` and `n_ctx`. The model's lock is held as for any other request."""
    import base64

    from fastapi import Depends, Request
    from fastapi.responses import JSONResponse
    from llama_cpp.server.app import authenticate, get_llama_proxy

    @app.post("/hearth/v1/embeddings", dependencies=[Depends(authenticate)])
    async def embeddings(request: Request):
        body = await request.json()
        items, truncate = body.get("input") or [], bool(body.get("truncate"))

        def run() -> dict[str, Any]:
            seqs, cut = embedder.tokens(items, truncate)
            vectors = embedder.embed(seqs)
            return {"embeddings": base64.b64encode(vectors.astype("<f4").tobytes()).decode("ascii"),
                    "dim": embedder.dim, "tokens": [len(s) for s in seqs], "n_ctx": embedder.n_ctx,
                    "pooling": embedder.plan["pooling"], "truncated": cut}

        async with contextlib.asynccontextmanager(get_llama_proxy)():
            try:
                return await asyncio.to_thread(run)
            except TooLong as exc:
                return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                               "code": "context_length_exceeded", "index": exc.index,
                                               "tokens": exc.tokens, "n_ctx": exc.n_ctx}}, status_code=400)
            except ValueError as exc:
                return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                               "code": "invalid_input"}}, status_code=400)

    @app.get("/hearth/v1/embeddings/info", dependencies=[Depends(authenticate)])
    async def embedding_info() -> dict[str, Any]:
        return {"dim": embedder.dim, "n_ctx": embedder.n_ctx, **embedder.plan}


def _quiet(llama: Any) -> None:
    """Stop the per-answer debug output (about 20 ms before every answer); errors still print."""
    from llama_cpp import _logger

    llama.verbose = False
    _logger.set_verbose(False)


def _tolerate_unreadable_templates() -> None:
    """llama-cpp-python compiles every chat template in a file while it loads the model, for its
    own /v1/chat/completions route, and a template with a syntax error stops the load. Hearth
    reads templates itself (Prompter) and says what is wrong with them, so such a template must
    not keep the model from loading: it becomes one that refuses to render."""
    from llama_cpp import llama_chat_format

    stock = llama_chat_format.Jinja2ChatFormatter
    if getattr(stock, "hearth_tolerant", False):
        return

    class Tolerant(stock):
        hearth_tolerant = True

        def __init__(self, template: str, *args: Any, **kwargs: Any) -> None:
            try:
                super().__init__(template, *args, **kwargs)
            except Exception:  # noqa: BLE001 - any template llama-cpp-python cannot compile
                super().__init__("{{ raise_exception('This model\\'s chat template could not be read.') }}",
                                 *args, **kwargs)

    llama_chat_format.Jinja2ChatFormatter = Tolerant


def serve(*, model: str, port: int, api_key: str, n_ctx: int, n_gpu_layers: int, n_threads: int,
          parent_pid: int, chat_format: str = "auto", embedding: bool = False) -> int:
    if parent_pid:
        _die_with_parent(parent_pid)
    import uvicorn
    from llama_cpp.server import app as app_module
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    # These settings are pydantic BaseSettings: they read environment variables named like their
    # fields (MODEL, CACHE, PORT, N_CTX...). Only Hearth decides how its engine runs.
    named_like_a_setting = set(ServerSettings.model_fields) | set(ModelSettings.model_fields) | {"config_file"}
    for name in [n for n in os.environ if n.lower() in named_like_a_setting]:
        del os.environ[name]
    server = ServerSettings(host="127.0.0.1", port=port, api_key=api_key, interrupt_requests=True)
    model_settings = ModelSettings(
        model=model,
        model_alias="local",
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        # The server's default (True) keeps logits for every token: n_ctx x vocabulary floats
        # (400 MB for SmolLM2 at 2048 tokens) and slower prompts. Hearth never asks for logprobs.
        logits_all=False,
        # Verbose while loading: llama.cpp's reasons for failing (an unknown architecture, a failed
        # allocation) reach the engine log only then, and the app reads them. Quiet afterwards.
        verbose=True,
        embedding=embedding,
    )
    plan: dict[str, Any] = {}
    if embedding:
        from desktop.core import gguf

        try:
            metadata = gguf.read_info(model).metadata
        except gguf.GGUFError:
            metadata = {}
        plan = embedding_plan(metadata, n_ctx or int(metadata.get(
            f"{metadata.get('general.architecture', '')}.context_length") or 4096))
        model_settings.n_batch, model_settings.n_ubatch = plan["n_batch"], plan["n_ubatch"]
        print(f"hearth-engine: embedding mode, pooling {plan['pooling']} (by the {plan['by']}), "
              f"batch {plan['n_batch']}", file=sys.stderr, flush=True)
    _tolerate_unreadable_templates()
    print(f"hearth-engine: loading {model}", file=sys.stderr, flush=True)
    app = create_app(server_settings=server, model_settings=[model_settings])
    llama = app_module._llama_proxy(None)
    _quiet(llama)
    add_hearth_routes(app, Prompter(llama, model, chat_format))
    if embedding:
        add_embedding_routes(app, Embedder(llama, plan))
    print(f"hearth-engine: ready on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0
