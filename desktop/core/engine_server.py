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
import signal
import sys
import threading
import time
from typing import Any

COALESCE_S = 0.1
FIRST_WORDS_WAIT_S = 0.1
# Request fields passed through to llama-cpp-python's create_chat_completion.
CHAT_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed",
               "stop", "presence_penalty", "frequency_penalty")


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


def _merge(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join consecutive content deltas into one chunk; keep role and finish chunks as they are."""
    merged: list[dict[str, Any]] = []
    for chunk in chunks:
        choice = chunk["choices"][0] if chunk.get("choices") else {}
        content = choice.get("delta", {}).get("content")
        last = merged[-1] if merged else None
        if (content and last is not None and not last["choices"][0].get("finish_reason")
                and last["choices"][0]["delta"].get("content") is not None
                and set(last["choices"][0]["delta"]) == {"content"}):
            last["choices"][0]["delta"]["content"] += content
        else:
            merged.append(chunk)
    return merged


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


def add_hearth_routes(app: Any) -> None:
    from fastapi import Depends, Request
    from fastapi.responses import StreamingResponse
    from llama_cpp.server.app import authenticate, get_llama_proxy

    @app.post("/hearth/v1/chat/completions", dependencies=[Depends(authenticate)])
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        kwargs = {k: body[k] for k in CHAT_FIELDS if body.get(k) is not None}
        messages = body["messages"]
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
                        stream = llama.create_chat_completion(messages=messages, stream=True, **kwargs)
                        for chunk in stream:
                            choice = chunk["choices"][0]
                            if choice["delta"].get("content"):
                                counted["tokens"] += 1
                            if choice.get("finish_reason"):
                                counted["finish"] = choice["finish_reason"]
                            pending.append(chunk)
                            if not first_sent.is_set():  # until the first words are out: at once
                                loop.call_soon_threadsafe(arrived.set)
                                if choice["delta"].get("content"):
                                    # Let the event loop have the GIL to send them, rather than
                                    # have it wait on this thread's next token.
                                    first_sent.wait(FIRST_WORDS_WAIT_S)
                            if stop.is_set():
                                stream.close()
                                break
                    except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
                        pending.append(exc)
                    finally:
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
                        has_words = any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks)
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
                        prompt = max(in_context - completion, 0)
                        yield _sse({"id": "usage", "object": "chat.completion.chunk", "created": int(time.time()),
                                    "model": body.get("model", "local"), "choices": [],
                                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                              "total_tokens": prompt + completion}})
                    yield "data: [DONE]\n\n"
                finally:
                    # The reader left (Stop) or the answer is done: end generation before the
                    # model is free for the next request.
                    stop.set()
                    await asyncio.shield(asyncio.to_thread(worker.join))

        return StreamingResponse(events(), media_type="text/event-stream")


def _quiet(llama: Any) -> None:
    """Stop the per-answer debug output (about 20 ms before every answer); errors still print."""
    from llama_cpp import _logger

    llama.verbose = False
    _logger.set_verbose(False)


def serve(*, model: str, port: int, api_key: str, n_ctx: int, n_gpu_layers: int, n_threads: int,
          parent_pid: int) -> int:
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
    )
    print(f"hearth-engine: loading {model}", file=sys.stderr, flush=True)
    app = create_app(server_settings=server, model_settings=[model_settings])
    _quiet(app_module._llama_proxy(None))
    add_hearth_routes(app)
    print(f"hearth-engine: ready on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0
