"""The embedding routes of the local API server: OpenAI's `POST /v1/embeddings` and Ollama's
`POST /api/embed` and `POST /api/embeddings`, answered by the named model in llama.cpp's
embedding mode (an engine child of its own, through `ModelPool.use(..., embedding=True)`).

Any installed model answers; an embedding model (the catalog's `kind: "embedding"` entries) gives
far better vectors than a chat model. The engine child's `/hearth/v1/embeddings`
(engine_server.add_embedding_routes) pools each input into ONE vector (the model's own pooling,
or the last token for a chat model) of unit length, and refuses an input longer than the context
with both numbers. llama-cpp-python's stock `/v1/embeddings` is not used: it cuts long inputs to
the batch size without a word, does not normalise, and gives per-token vectors for chat models.

Shapes follow OpenAI's API reference (embeddings: `input` a string, an array of strings, an
array of token ids or an array of such arrays; `encoding_format` "float" or "base64", the latter
little-endian float32 as the openai SDK decodes it; `dimensions`) and Ollama's docs/api.md
(`/api/embed`: `input`, `truncate` default true, `keep_alive`, `dimensions`; the older
`/api/embeddings`: `prompt` -> `embedding`).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from desktop.core.server import RequestRecord
from desktop.core.server.app import ApiError, _type_for, body_of, client_of, leased
from desktop.core.server.ollama import OllamaError, find_model, keep_alive_s
from desktop.core.server.pool import Lease, ModelUnavailable

log = logging.getLogger(__name__)

MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request
TRUNCATED_HEADER = "X-Hearth-Input-Truncated"  # Ollama's truncate: "index: tokens -> n_ctx; ..."


def openai_inputs(value: Any) -> list[str | list[int]]:
    """OpenAI's `input` as a list of inputs, each a text or a list of token ids: a string, a list
    of strings, a list of token ids (one input) or a list of such lists. Raises ApiError 400
    (param "input") for anything else, an empty input or list, or more than MAX_INPUTS."""
    def bad(sentence: str) -> ApiError:
        return ApiError(400, sentence, param="input")

    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(_is_id(t) for t in value):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise bad("input must be a string, a list of strings, a list of token ids or a list of such lists.")
    if not items:
        raise bad("input is empty: give at least one text to embed.")
    if len(items) > MAX_INPUTS:
        raise bad(f"input has {len(items)} items; at most {MAX_INPUTS} may be embedded in one request.")
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise bad(f"input {index} is an empty string: there is nothing to embed.")
        elif isinstance(item, list) and all(_is_id(t) for t in item):
            if not item:
                raise bad(f"input {index} is an empty list of tokens: there is nothing to embed.")
        else:
            raise bad(f"input {index} is neither a string nor a list of token ids.")
    return items


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def ollama_inputs(value: Any) -> list[str]:
    """Ollama's `input`: a string or a list of strings; empty ("" or []) gives no inputs (the
    request then only loads the model, as Ollama does). Raises OllamaError 400."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if len(value) > MAX_INPUTS:
            raise OllamaError(400, f"input has {len(value)} items; at most {MAX_INPUTS} may be embedded at once.")
        if any(not v for v in value):
            raise OllamaError(400, "input has an empty string: there is nothing to embed in it.")
        return list(value)
    raise OllamaError(400, "input must be a string or a list of strings.")


def shorten(vectors, dimensions: int | None, param_error: Callable[[str], Exception]):
    """The vectors cut to their first `dimensions` numbers and made unit length again, as OpenAI
    shortens text-embedding-3 vectors ("Matryoshka" training keeps the first numbers meaningful:
    nomic-embed-text v1.5 is trained for 768, 512, 256, 128 and 64). Any model accepts it, but
    the vectors of a model not trained that way lose more than they would. `dimensions` larger
    than the model's, or not a whole number above 0, raises param_error(sentence)."""
    import numpy as np

    if dimensions is None:
        return vectors
    size = vectors.shape[1]
    if not _is_id(dimensions) or dimensions < 1:
        raise param_error("dimensions must be a whole number above 0.")
    if dimensions > size:
        raise param_error(f"dimensions is {dimensions}, but this model's vectors have {size} numbers: ask for "
                          f"{size} or fewer.")
    if dimensions == size:
        return vectors
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.where(norms == 0, 1, norms)


class EngineRefused(Exception):
    """The engine child refused the inputs: `status`, its sentence, its error `code`, and for an
    input over the context `index`, `tokens` and `n_ctx`."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message") or "The model's engine refused the request."))
        self.status, self.error = status, error


async def embed_on(http: httpx.AsyncClient, lease: Lease, items: list[Any], *,
                   truncate: bool = False) -> dict[str, Any]:
    """Ask the lease's engine child (embedding mode) for one unit vector per input, through
    `http` (a loopback client). Returns {"vectors": (n, dim) float32 array, "tokens": [per
    input], "n_ctx", "pooling", "truncated": [indices cut to the context]}. Raises EngineRefused
    (an input over the context: code context_length_exceeded) or EngineGone with the reason
    the engine stopped."""
    import numpy as np

    try:
        response = await http.post(f"{lease.root}/hearth/v1/embeddings", json={"input": items, "truncate": truncate},
                                   headers={"Authorization": f"Bearer {lease.endpoint.api_key}"})
    except httpx.TransportError:
        why = await lease.engine.confirm_death() or "The model's engine stopped answering."
        raise EngineGone(why) from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": {"message": response.text[:300]}}
    if response.status_code != 200:
        error = data.get("error") if isinstance(data, dict) else None
        raise EngineRefused(response.status_code, error if isinstance(error, dict) else {"message": str(data)[:300]})
    raw = base64.b64decode(data["embeddings"])
    vectors = np.frombuffer(raw, dtype="<f4").reshape(len(items), int(data["dim"]))
    return {"vectors": vectors, "tokens": list(data["tokens"]), "n_ctx": int(data["n_ctx"]),
            "pooling": data.get("pooling", ""), "truncated": list(data.get("truncated") or [])}


class EngineGone(Exception):
    """The engine child stopped answering; str() says why, in words."""


async def _body(request: Request, error: Callable[[str], Exception]) -> dict[str, Any]:
    """The request's JSON object (app.body_of), its refusal made by `error` (Ollama's shape on
    Ollama's routes)."""
    try:
        return await body_of(request)
    except ApiError as exc:
        raise error(exc.message) from None


def register(app: FastAPI, services, pool, record) -> None:
    """Add the embedding routes to the server's app (see the module). `record` hears of every
    request (a RequestRecord: client, model, status, tokens in, duration)."""

    engine_client = app.state.engine_client

    def log_request(request: Request, started: float, model: str, status: int, tokens: int | None) -> None:
        record(RequestRecord(at=started, client=client_of(request), method=request.method, path=request.url.path,
                             model=model, status=status, tokens_in=tokens, tokens_out=None,
                             duration_ms=(time.time() - started) * 1000))

    def openai_lease(body: dict[str, Any]) -> contextlib.AbstractAsyncContextManager[Lease]:
        return leased(pool, body, embedding=True)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        """OpenAI's embeddings: one unit vector per input, `model` the Hearth id, usage counted.
        An input over the context: 400 context_length_exceeded with both numbers (never cut)."""
        started = time.time()
        state = {"model": "", "status": 200, "tokens": None}
        try:
            body = await _body(request, lambda s: ApiError(400, s))
            state["model"] = body.get("model") if isinstance(body.get("model"), str) else ""
            items = openai_inputs(body.get("input"))
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise ApiError(400, "encoding_format must be \"float\" or \"base64\".", param="encoding_format")
            dimensions = body.get("dimensions")
            if dimensions is not None and (not _is_id(dimensions) or dimensions < 1):
                raise ApiError(400, "dimensions must be a whole number above 0.", param="dimensions")
            async with openai_lease(body) as lease:
                state["model"] = lease.model.id
                try:
                    got = await embed_on(engine_client(), lease, items)
                except EngineRefused as exc:
                    error = exc.error
                    if error.get("code") == "context_length_exceeded":
                        raise ApiError(400, f"This model's maximum context length is {error['n_ctx']} tokens, but "
                                       f"input {error['index']} is {error['tokens']} tokens. Shorten it or split "
                                       "it (nothing was cut).", code="context_length_exceeded",
                                       param="input") from None
                    raise ApiError(exc.status if exc.status >= 400 else 502, str(exc),
                                   type=_type_for(exc.status), code=error.get("code"), param="input") from None
                except EngineGone as exc:
                    raise ApiError(503, str(exc), type="server_error", code="engine_failed") from None
            vectors = shorten(got["vectors"], dimensions,
                              lambda s: ApiError(400, s, param="dimensions"))
            tokens = sum(got["tokens"])
            state["tokens"] = tokens
            data = [{"object": "embedding", "index": i,
                     "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                                   if fmt == "base64" else v.tolist())}
                    for i, v in enumerate(vectors)]
            return JSONResponse({"object": "list", "data": data, "model": lease.model.id,
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        except ApiError as exc:
            state["status"] = exc.status
            raise
        except Exception:
            state["status"] = 500
            raise
        finally:
            log_request(request, started, state["model"], state["status"], state["tokens"])

    async def ollama_embed(request: Request, old: bool) -> JSONResponse:
        started = time.time()
        clock = time.perf_counter_ns()
        model_id, status, tokens = "", 200, None
        try:
            body = await _body(request, lambda s: OllamaError(400, s))
            named = body.get("model") or body.get("name")
            if not isinstance(named, str):
                raise OllamaError(400, "model is required: name an installed model (`hearth models list` shows them).")
            model = find_model(services.library.models(), services.library.get, named)
            model_id = model.id
            ttl = keep_alive_s(body.get("keep_alive"))
            if old:
                prompt = body.get("prompt")
                if prompt is not None and not isinstance(prompt, str):
                    raise OllamaError(400, "prompt must be text.")
                items, truncate = ([prompt] if prompt else []), False
            else:
                items = ollama_inputs(body.get("input"))
                truncate = body.get("truncate")
                truncate = True if truncate is None else bool(truncate)
            headers: dict[str, str] = {}
            try:
                async with pool.use(model.id, ttl_s=ttl, embedding=True) as lease:
                    loaded = time.perf_counter_ns()
                    got = await embed_on(engine_client(), lease, items, truncate=truncate) if items else None
            except ModelUnavailable as exc:
                raise OllamaError(exc.status, str(exc)) from None
            except EngineRefused as exc:
                error = exc.error
                if error.get("code") == "context_length_exceeded":
                    raise OllamaError(400, f"input {error['index']} is {error['tokens']} tokens, more than the "
                                      f"model's context length of {error['n_ctx']} tokens (truncate is false, "
                                      "so nothing was cut).") from None
                raise OllamaError(exc.status if exc.status >= 400 else 500, str(exc)) from None
            except EngineGone as exc:
                raise OllamaError(500, str(exc)) from None
            vectors = got["vectors"] if got else None
            if got:
                tokens = sum(got["tokens"])
                if got["truncated"]:
                    # Ollama's documented behaviour (truncate defaults to true): cut to the context.
                    # Said in a header and the log, so an app that looks can tell.
                    said = "; ".join(f"{i}: -> {got['n_ctx']}" for i in got["truncated"])
                    headers[TRUNCATED_HEADER] = said
                    log.info("embedding inputs cut to the context of %s (%s)", model.id, said)
                if not old:
                    vectors = shorten(vectors, body.get("dimensions"), lambda s: OllamaError(400, s))
            if old:
                return JSONResponse({"embedding": vectors[0].tolist() if vectors is not None else []})
            now = time.perf_counter_ns()
            return JSONResponse({"model": named, "embeddings": vectors.tolist() if vectors is not None else [],
                                 "total_duration": now - clock, "load_duration": loaded - clock,
                                 "prompt_eval_count": tokens or 0}, headers=headers)
        except OllamaError as exc:
            status = exc.status
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except Exception:
            status = 500
            raise
        finally:
            log_request(request, started, model_id, status, tokens)

    @app.post("/api/embed")
    async def embed(request: Request) -> JSONResponse:
        """Ollama's embed: `{"model", "input": str | [str], "truncate": true, "keep_alive",
        "dimensions"}` -> `{"model", "embeddings", "total_duration", "load_duration",
        "prompt_eval_count"}` (durations in nanoseconds). No input: the model is loaded, and
        `embeddings` is empty."""
        return await ollama_embed(request, old=False)

    @app.post("/api/embeddings")
    async def embeddings_old(request: Request) -> JSONResponse:
        """Ollama's older route: `{"model", "prompt", "keep_alive"}` -> `{"embedding": [...]}`
        (unit length here too; a prompt over the context is refused, not cut)."""
        return await ollama_embed(request, old=True)
