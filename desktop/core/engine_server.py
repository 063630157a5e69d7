"""What runs inside the engine child: llama-cpp-python's OpenAI-compatible server for one model.

Started by `hearth engine ...` (so a frozen app can start itself). Binds to 127.0.0.1 only and
requires the per-launch API key on every route, including the one Hearth adds for context use.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time


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


def serve(*, model: str, port: int, api_key: str, n_ctx: int, n_gpu_layers: int, n_threads: int,
          parent_pid: int) -> int:
    if parent_pid:
        _die_with_parent(parent_pid)
    import uvicorn
    from fastapi import Depends
    from llama_cpp.server.app import authenticate, create_app, get_llama_proxy
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
        verbose=True,  # llama.cpp's own words go to the engine log: the app reads them on failure
    )
    print(f"hearth-engine: loading {model}", file=sys.stderr, flush=True)
    app = create_app(server_settings=server, model_settings=[model_settings])

    @app.get("/hearth/status", dependencies=[Depends(authenticate)])
    async def status(llama_proxy=Depends(get_llama_proxy)) -> dict[str, int]:
        llama = llama_proxy(None)
        return {"n_tokens": int(llama.n_tokens), "n_ctx": int(llama.n_ctx())}

    print(f"hearth-engine: ready on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0
