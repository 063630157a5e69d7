"""The local API server's ASGI app: the security checks every request passes, and the OpenAI
routes, which forward to the engine child of the model a request names (llama-cpp-python's
OpenAI-compatible server) and answer with the model's Hearth id.

Security, outermost first: a `Host` that is not this machine gets 403 (a web page cannot reach
the server through DNS rebinding); a request from a web page whose `Origin` is not allowed gets
403 and no CORS headers; CORS for allowed origins (preflight included); the key, when set, on
every route (401). Errors are in OpenAI's shape (`{"error": {"message", "type", "param",
"code"}}`), or Ollama's (`{"error": "..."}`) under /api/.

Other modules add routes with `app.state`: `services`, `config`, `pool`, `record(RequestRecord)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from desktop.core import net
from desktop.core.model_kinds import not_for_chat
from desktop.core.server import LOOPBACK, RequestRecord, ServerConfig
from desktop.core.server import forward as cloud_forward
from desktop.core.server.pool import Lease, ModelPool, ModelUnavailable, context_for
from desktop.core.server.tools import ToolRequest, ToolsError, call_schema, parse_calls, tool_request
from desktop.core.server.tools import describe as describe_tools

log = logging.getLogger(__name__)

CAPPED_HEADER = "X-Hearth-Max-Tokens-Capped"  # "asked -> given" when max_tokens was cut to what fits
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "localhost.localdomain"})
# Sampling fields passed through to the engine's own chat route as the client sent them.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                   "frequency_penalty", "stop", "seed", "logit_bias", "mirostat_mode", "mirostat_tau", "mirostat_eta")
# Chat fields no engine here serves: a request that sets them gets a 400 saying so, not an
# answer that silently ignores them. (Log-probabilities need logits kept for every token, which
# costs n_ctx x vocabulary floats; Hearth's engines do not keep them.)
UNSERVED = {"logprobs": "log-probabilities", "top_logprobs": "log-probabilities", "min_tokens": "min_tokens",
            "audio": "audio answers", "modalities": "other modalities than text", "prediction": "predicted outputs"}
MAX_BODY = 32 * 2**20  # bytes: far more than any context holds (a 128k-token prompt is ~0.5 MB)
MAX_CHARS_PER_TOKEN = 128  # no tokenizer's token is longer (the longest in common vocabularies: runs of spaces)
NUMBER_FIELDS = ("temperature", "top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty",
                 "mirostat_tau", "mirostat_eta")
WHOLE_FIELDS = ("top_k", "seed", "mirostat_mode")
COMPLETION_FIELDS = ("prompt", "suffix", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                     "presence_penalty", "frequency_penalty", "stop", "seed", "logit_bias", "logprobs", "echo",
                     "n", "best_of", "user", "grammar", "min_tokens")


class ApiError(Exception):
    """An answer in OpenAI's error shape: HTTP `status`, a sentence, its `type` and `code`."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}


def error_response(path: str, status: int, message: str, *, type: str = "invalid_request_error",
                   code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the shape the calling API expects: Ollama's under /api/, else OpenAI's."""
    if path.startswith("/api/"):
        body: dict[str, Any] = {"error": message}
    else:
        body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _type_for(status: int) -> str:
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error", 501: "not_implemented"}.get(status, "invalid_request_error"
                                                                   if status < 500 else "server_error")


# -- security ------------------------------------------------------------------------------------

def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.1, ::1, localhost and the like: the server needs no key there."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def machine_names(config: ServerConfig) -> frozenset[str]:
    """The names and addresses a request's Host may give for this machine: loopback always, and
    when serving the network this machine's host name and every address of its interfaces."""
    names = set(LOOPBACK_NAMES)
    if not is_loopback_host(config.host):
        import psutil

        if config.host not in ("0.0.0.0", "::", ""):
            names.add(config.host.lower())
        hostname = socket.gethostname().lower()
        names.update({hostname, f"{hostname}.local", socket.getfqdn().lower()})
        # Docker's names for the computer it runs on (Open WebUI in a container): reserved names
        # no web page's DNS can answer for, so no door for DNS rebinding.
        names.update({"host.docker.internal", "gateway.docker.internal"})
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    names.add(address.address.split("%")[0].lower())
    return frozenset(names)


def host_name(header: str) -> str:
    """The host of a Host header, without its port or IPv6 brackets, lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Guard:
    """Refuses, before anything else runs: a Host that is not this machine, an Origin not allowed."""

    def __init__(self, app: ASGIApp, config: ServerConfig,
                 on_refused: Callable[[Scope, int], None] | None = None) -> None:
        self.app, self.config, self.on_refused = app, config, on_refused
        self.names = machine_names(config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope.get("path", "")
        if host_name(headers.get("host", "")) not in self.names:
            log.warning("refused a request for host %r (not this machine)", headers.get("host", ""))
            response = error_response(path, 403, "This server answers only requests addressed to this computer "
                                      "(the Host header names another).", type="permission_error",
                                      code="host_not_allowed")
            _refused(self.on_refused, scope, 403)
            return await response(scope, receive, send)
        origin = headers.get("origin")
        if origin and origin not in self.config.origins:
            response = error_response(path, 403, f"Web pages from {origin} may not use this server: allow the "
                                      "origin in Hearth's Local server settings.", type="permission_error",
                                      code="origin_not_allowed")
            _refused(self.on_refused, scope, 403)
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _refused(listener: Callable[[Scope, int], None] | None, scope: Scope, status: int) -> None:
    if listener is not None:
        listener(scope, status)


class _KeyCheck:
    """Every request carries `Authorization: Bearer KEY` when the server has a key (CORS preflight,
    which browsers send without it, is answered outside this check)."""

    def __init__(self, app: ASGIApp, key: str, on_refused: Callable[[Scope, int], None] | None = None) -> None:
        self.app, self.key, self.on_refused = app, key.encode("utf-8"), on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key:
            given = b""
            for name, value in scope["headers"]:
                if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
                    given = value[7:].strip()
            if not hmac.compare_digest(given, self.key):
                response = error_response(scope.get("path", ""), 401,
                                          "This server needs its API key: send it as 'Authorization: Bearer "
                                          "KEY' (Hearth shows the key in its Local server page)." if not given else
                                          "The API key is not this server's key.",
                                          type="authentication_error", code="invalid_api_key",
                                          headers={"WWW-Authenticate": "Bearer"})
                _refused(self.on_refused, scope, 401)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


# -- what every route does ------------------------------------------------------------------------

def client_of(request: Request) -> str:
    """Who asked, as the log and the ledger keep it: "ADDRESS USER-AGENT"."""
    host = request.client.host if request.client else "?"
    return f"{host} {request.headers.get('user-agent', '')}".strip()


async def body_of(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to MAX_BODY bytes. Raises ApiError 413 beyond, 400 for
    what is not a JSON object."""
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"The request is larger than {MAX_BODY // 2**20} MB, far more than any model's "
                           "context holds; send less.", code="request_too_large")
    try:
        body = json.loads(bytes(raw) or b"null")
    except ValueError:
        raise ApiError(400, "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def ttl_of(body: dict[str, Any]) -> float | None:
    """A request's `ttl` (idle seconds before its model is unloaded; 0 at once, -1 kept), or None.
    Raises ApiError 400 for what is not a number."""
    ttl = body.get("ttl")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl != ttl:
        raise ApiError(400, "ttl must be a number of seconds (0: unload after this request; -1: keep loaded).",
                       param="ttl")
    return float(ttl)


@contextlib.asynccontextmanager
async def leased(pool: ModelPool, body: dict[str, Any], *, embedding: bool = False) -> AsyncIterator[Lease]:
    """The turn of the model a request names (`pool.use`), its refusals as ApiError in OpenAI's
    shape: 400 no model named, 404 not installed, 507 does not fit, 500 failed to load."""
    try:
        async with pool.use(body.get("model"), ttl_s=ttl_of(body), embedding=embedding) as lease:
            yield lease
    except ModelUnavailable as exc:
        code = {400: "model_missing", 404: "model_not_found", 507: "insufficient_memory"}.get(
            exc.status, "model_load_failed")
        raise ApiError(exc.status, str(exc), type=_type_for(exc.status), code=code, param="model") from None


# -- the app -------------------------------------------------------------------------------------

def create_app(services, config: ServerConfig, pool: ModelPool,
               on_request: Callable[[RequestRecord], None] | None = None) -> FastAPI:
    """The ASGI app of the local API server. `on_request` is called (on the event loop) with a
    RequestRecord after every request to a model route; its errors are logged, never answered."""
    holder: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        client = holder.pop("client", None)
        if client is not None:
            await client.aclose()

    app = FastAPI(title="Hearth local API", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def engine_client() -> httpx.AsyncClient:
        """One loopback client for every request to the engine children (a new one per request
        cost 15-50 ms), closed when the server stops."""
        if "client" not in holder:
            holder["client"] = net.async_client(local_only=True, timeout=httpx.Timeout(900.0, connect=10.0))
        return holder["client"]

    def lease_for(body: dict[str, Any]) -> contextlib.AbstractAsyncContextManager[Lease]:
        return leased(pool, body)

    def record(entry: RequestRecord) -> None:
        if on_request is not None:
            try:
                on_request(entry)
            except Exception:  # noqa: BLE001 - a listener's bug must not fail the request
                log.exception("the request listener failed")

    app.state.services, app.state.config, app.state.pool, app.state.record = services, config, pool, record
    app.state.engine_client = engine_client
    app.state.stopping = asyncio.Event()  # set by LocalServer.stop: answers being streamed end, saying so

    def refused(scope: Scope, status: int) -> None:
        """A request the security checks turned away, in the log and the ledger (failed key
        attempts on the network must not be invisible)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        address = scope["client"][0] if scope.get("client") else "?"
        record(RequestRecord(at=time.time(), client=f"{address} {headers.get('user-agent', '')}".strip(),
                             method=scope.get("method", ""), path=scope.get("path", ""), model="", status=status,
                             tokens_in=None, tokens_out=None, duration_ms=0.0))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, type=exc.type, code=exc.code,
                              param=exc.param, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"There is no route {request.method} {request.url.path} here.",
                   405: f"{request.url.path} does not take {request.method}."}.get(exc.status_code, str(exc.detail))
        return error_response(request.url.path, exc.status_code, message, type=_type_for(exc.status_code))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("the local server failed on %s %s", request.method, request.url.path)
        return error_response(request.url.path, 500, f"Hearth could not answer this request: {type(exc).__name__}: "
                              f"{exc}. The log (hearth.log) has the details.", type="server_error")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request.url.path, 400, f"The request is not valid: {exc.errors()[:1]}")

    async def count_chat(lease: Lease, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        """The tokens `messages` (and `tools`) make as the model's prompt (the engine's template,
        /hearth/v1/tokens). Raises ApiError 400 when the template cannot render them."""
        root = lease.root
        try:
            response = await engine_client().post(f"{root}/hearth/v1/tokens", json={"messages": messages, "tools": tools},
                                                  headers={"Authorization": f"Bearer {lease.endpoint.api_key}"})
        except httpx.TransportError:
            why = await lease.engine.confirm_death() or "The model's engine stopped answering."
            raise ApiError(503, why, type="server_error", code="engine_failed") from None
        if response.status_code == 200:
            return int(response.json()["count"])
        raise _engine_error(response.status_code, response.content)

    async def count_text(lease: Lease, text: str) -> int:
        """The tokens `text` makes for the model (BOS included, as a completion reads it)."""
        root = lease.root
        try:
            response = await engine_client().post(f"{root}/extras/tokenize/count", json={"input": text},
                                                  headers={"Authorization": f"Bearer {lease.endpoint.api_key}"})
        except httpx.TransportError:
            why = await lease.engine.confirm_death() or "The model's engine stopped answering."
            raise ApiError(503, why, type="server_error", code="engine_failed") from None
        if response.status_code != 200:
            raise _engine_error(response.status_code, response.content)
        return int(response.json()["count"])

    def surely_too_long(text_chars: int, n_ctx: int, param: str) -> None:
        """Refuse at once a prompt too long for the context whatever the tokenizer: no
        tokenizer writes more than MAX_CHARS_PER_TOKEN characters per token, so counting
        tokens (seconds of the engine's time for megabytes) is not needed to say no."""
        if text_chars > n_ctx * MAX_CHARS_PER_TOKEN:
            least = text_chars // MAX_CHARS_PER_TOKEN
            raise ApiError(400, f"This model's maximum context length is {n_ctx} tokens, but the prompt is "
                           f"{text_chars:,} characters, at least {least:,} tokens. Shorten the "
                           f"{'messages' if param == 'messages' else 'prompt'} (nothing was cut).",
                           code="context_length_exceeded", param=param)

    def fit_max_tokens(body: dict[str, Any], prompt_tokens: int, n_ctx: int, param: str) -> tuple[int, str]:
        """The max_tokens to send and the capped header's value ("" when not capped). Raises
        ApiError 400 context_length_exceeded when the prompt leaves no room."""
        if prompt_tokens >= n_ctx:
            raise ApiError(400, f"This model's maximum context length is {n_ctx} tokens, but the prompt is "
                           f"{prompt_tokens} tokens. Shorten the {'messages' if param == 'messages' else 'prompt'}"
                           " (nothing was cut).", code="context_length_exceeded", param=param)
        room = n_ctx - prompt_tokens
        asked = body.get("max_completion_tokens", body.get("max_tokens"))
        if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int)):
            raise ApiError(400, "max_tokens must be a whole number.", param="max_tokens")
        if asked is None or asked <= 0:
            return room, ""
        if asked > room:
            log.info("max_tokens %d capped to %d: the prompt takes %d of %d tokens", asked, room,
                     prompt_tokens, n_ctx)
            return room, f"{asked} -> {room}"
        return asked, ""

    async def chat_payload(checked: CheckedChat, lease: Lease) -> tuple[int, dict[str, Any]]:
        """The prompt's size in tokens and the request for the engine's own route, for a model
        now loaded. Raises ApiError 400 tools_not_supported when tools are offered to a model
        whose template has no place for them and the request lets the model choose."""
        messages, tools = checked.messages, checked.tools
        engine_tools = None
        if tools.offered:
            if lease.engine.prompt_info.get("tools"):
                engine_tools = list(tools.tools)
            elif tools.forced:  # the grammar makes it call one; the prompt says what it fills in
                messages = [{"role": "system", "content": describe_tools(tools)}, *messages]
            else:
                raise ApiError(400, f"“{lease.model.name}”'s chat template has no place for tools, so the model "
                               "cannot choose to call one. Name the function in tool_choice to make it call that "
                               "function, or use a model whose template takes tools (Qwen 2.5, Llama 3.1 and "
                               "later, Mistral…).", code="tools_not_supported", param="tools")
        surely_too_long(sum(len(m.get("content") or "") for m in messages), lease.n_ctx, "messages")
        prompt_tokens = await count_chat(lease, messages, engine_tools)
        # Hearth's sampling defaults (the window's) for what the client leaves out: OpenAI's API
        # has no repeat_penalty, top_k or min_p, and without them small models loop.
        d = services.settings.sampling
        payload = {"temperature": d.temperature, "top_p": d.top_p, "top_k": d.top_k, "min_p": d.min_p,
                   "repeat_penalty": d.repeat_penalty, **({"seed": d.seed} if d.seed >= 0 else {})}
        payload.update({k: checked.body[k] for k in SAMPLING_FIELDS if checked.body.get(k) is not None})
        payload["messages"] = messages
        if engine_tools:
            payload["tools"] = engine_tools
        if checked.grammar:
            payload["grammar"] = checked.grammar
        return prompt_tokens, payload

    async def collect_chat(upstream: httpx.Response, lease: Lease, tools: ToolRequest,
                           usage: dict[str, int | None]) -> dict[str, Any]:
        """The engine's streamed answer read whole, as OpenAI's chat.completion object: the text,
        its reasoning (`reasoning_content`, as llama-server sends it), the tool calls read from
        it when tools were offered, the finish reason and the usage. Raises ApiError when the
        engine reports an error or the answer stops short."""
        text: list[str] = []
        thought: list[str] = []
        finish = None
        async for line in upstream.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if not isinstance(chunk, dict) or "hearth_notice" in chunk:
                continue
            if isinstance(chunk.get("error"), dict):
                raise ApiError(500, str(chunk["error"].get("message") or "The model's engine failed."),
                               type="server_error", code="engine_failed")
            if chunk.get("usage") and not chunk.get("choices"):
                usage["in"] = chunk["usage"].get("prompt_tokens") or usage["in"]
                usage["out"] = chunk["usage"].get("completion_tokens")
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text.append(delta.get("content") or "")
                thought.append(delta.get("reasoning_content") or "")
                finish = choice.get("finish_reason") or finish
        if finish is None:
            why = await lease.engine.confirm_death(within=0.5) or (
                "The answer was cut off before its end: the engine stopped it (the chat window may have asked "
                "the same model something meanwhile). Ask again.")
            raise ApiError(503, why, type="server_error", code="answer_interrupted")
        content, calls = "".join(text), []
        if tools.offered:
            content, calls = parse_calls(content, tools.names)
        message: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
        if "".join(thought):
            message["reasoning_content"] = "".join(thought)
        if calls:
            message["tool_calls"] = calls
            finish = "tool_calls"
        out = usage["out"] or 0
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": lease.model.id, "choices": [{"index": 0, "message": message, "logprobs": None,
                                                      "finish_reason": finish}],
                "usage": {"prompt_tokens": usage["in"], "completion_tokens": out,
                          "total_tokens": (usage["in"] or 0) + out}}

    def renamed(data: dict[str, Any], model_id: str) -> dict[str, Any]:
        if "model" in data:
            data["model"] = model_id
        return data

    async def forward(request: Request, kind: str) -> Response:
        started = time.time()
        path = request.url.path
        usage: dict[str, int | None] = {"in": None, "out": None}
        status = {"code": 200}
        body: dict[str, Any] = {}
        model_name = ""
        answer: list[str] = []  # the words sent back, for a log with bodies
        where = {"on": "", "bytes": 0}  # a forwarded request: the provider's host and the bytes sent there

        def done() -> None:
            logged = ""
            if config.log_bodies:
                logged = json.dumps({"prompt": body.get("messages", body.get("prompt")), "answer": "".join(answer)},
                                    ensure_ascii=False)
            record(RequestRecord(at=started, client=client_of(request), method=request.method, path=path,
                                 model=model_name, status=status["code"], tokens_in=usage["in"],
                                 tokens_out=usage["out"], duration_ms=(time.time() - started) * 1000,
                                 body=logged, processed_on=where["on"], bytes_sent=where["bytes"]))

        stack = contextlib.AsyncExitStack()
        streaming = False
        try:
            body = await body_of(request)
            model_name = body.get("model") if isinstance(body.get("model"), str) else ""
            target = cloud_forward.target_for(services, body.get("model"))
            if target is not None and kind != "chat":
                raise ApiError(400, "Raw completions are not forwarded to cloud models; use /v1/chat/completions.",
                               code="not_forwarded", param="model")
            if kind == "chat":
                checked = check_chat(body)  # before any model is loaded for it
            else:
                check_sampling(body)
                if body.get("suffix"):
                    raise ApiError(400, "Hearth's server does not fill in the middle (suffix); leave it out.",
                                   param="suffix")
            if target is None:  # an embedding model cannot write: said before anything is loaded
                with contextlib.suppress(ModelUnavailable):  # no such model: lease_for says so
                    if (named := pool.model(model_name)).for_embeddings:
                        raise ApiError(400, not_for_chat(named.name), code="model_not_for_chat", param="model")
            if target is not None:
                model_name = target.id
                try:
                    cloud_forward.check(services, target, config.cloud, body)
                    sent = cloud_forward.start(target, checked.messages, body)
                except cloud_forward.ForwardRefused as exc:
                    raise ApiError(exc.status, str(exc), type=_type_for(exc.status), code=exc.code,
                                   param=exc.param) from None
                where["on"] = sent.processed_on
                if not body.get("stream"):
                    try:
                        data = await cloud_forward.answer(sent)
                    except cloud_forward.ForwardRefused as exc:
                        raise ApiError(exc.status, str(exc), type=_type_for(exc.status), code=exc.code,
                                       param=exc.param) from None
                    finally:
                        where["bytes"] = sent.bytes_sent
                    usage["in"], usage["out"] = data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"]
                    answer.append(data["choices"][0]["message"]["content"])
                    return JSONResponse(data)
                want = bool((body.get("stream_options") or {}).get("include_usage"))
                streaming = True
                return StreamingResponse(cloud_relay(sent, want, usage, status, where, answer, done),
                                         media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
            lease = await stack.enter_async_context(lease_for(body))
            model_name = lease.model.id
            if await request.is_disconnected():  # it left while waiting for its turn: nothing to write
                status["code"] = 499
                return Response(status_code=499)
            if kind == "chat":
                prompt_tokens, payload = await chat_payload(checked, lease)
                param = "messages"
            else:
                prompt = body.get("prompt")
                if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                    prompt = prompt[0]
                if not isinstance(prompt, str):
                    raise ApiError(400, "prompt must be a string (one prompt per request here).", param="prompt")
                surely_too_long(len(prompt), lease.n_ctx, "prompt")
                prompt_tokens = await count_text(lease, prompt)
                payload = {k: body[k] for k in COMPLETION_FIELDS if body.get(k) is not None}
                payload["prompt"] = prompt
                param = "prompt"
            max_tokens, capped = fit_max_tokens(body, prompt_tokens, lease.n_ctx, param)
            streamed = bool(body.get("stream"))
            payload.update(model="local", max_tokens=max_tokens, stream=streamed)
            headers = {CAPPED_HEADER: capped} if capped else {}
            usage["in"] = prompt_tokens
            route = "/chat/completions" if kind == "chat" else "/completions"
            base = lease.openai_base
            if kind == "chat":
                # Every chat goes through Hearth's own route (the window's): the model's chat
                # template in Hearth's sandbox, with its time limit, grammars and tools; tokens
                # sent in batches, a usage chunk at the end. Streaming through llama-cpp-python's
                # stock route ran at 0.57 of bare llama.cpp (tests/bench/serve.py).
                base = lease.endpoint.base_url
                payload.update(stream=True, stream_options={"include_usage": True})
            auth = {"Authorization": f"Bearer {lease.endpoint.api_key}"}
            client = engine_client()
            try:
                upstream = await client.send(client.build_request("POST", base + route,
                                                                  json=payload, headers=auth), stream=True)
            except httpx.TransportError:
                why = await lease.engine.confirm_death() or "The model's engine stopped answering."
                raise ApiError(503, why, type="server_error", code="engine_failed") from None
            stack.push_async_callback(upstream.aclose)
            if upstream.status_code != 200:
                raw = await upstream.aread()
                raise _engine_error(upstream.status_code, raw)
            if kind == "chat" and (not streamed or checked.tools.offered):
                # Whole answers, and answers that may be tool calls (read whole, then sent).
                data = await while_listening(request, collect_chat(upstream, lease, checked.tools, usage))
                message = data["choices"][0]["message"]
                answer.append(message.get("content") or json.dumps(message.get("tool_calls") or []))
                if not streamed:
                    return JSONResponse(data, headers=headers)
                want = bool((body.get("stream_options") or {}).get("include_usage"))
                return StreamingResponse(_as_events(data, want), media_type="text/event-stream",
                                         headers={**headers, "Cache-Control": "no-cache"})
            if not payload["stream"]:
                data = renamed(json.loads(await while_listening(request, upstream.aread())), lease.model.id)
                got = data.get("usage") or {}
                usage["in"] = got.get("prompt_tokens", prompt_tokens)
                usage["out"] = got.get("completion_tokens")
                for choice in data.get("choices") or []:
                    answer.append(str((choice.get("message") or {}).get("content") or choice.get("text") or ""))
                return JSONResponse(data, headers=headers)
            want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            streaming = True
            return StreamingResponse(_relay(upstream, lease, usage, want_usage, stack, done, status, answer),
                                     media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})
        except ClientGone:  # nobody waits for the answer: the engine was told to stop (its connection closed)
            status["code"] = 499
            return Response(status_code=499)
        except ApiError as exc:
            status["code"] = exc.status
            raise
        except Exception:
            status["code"] = 500
            raise
        finally:
            if not streaming:
                await stack.aclose()
                done()

    async def cloud_relay(sent: cloud_forward.Forwarded, want_usage: bool, usage: dict[str, int | None],
                          status: dict[str, int], where: dict[str, Any], answer: list[str],
                          done: Callable[[], None]) -> AsyncIterator[bytes]:
        """A forwarded answer's events, passed on; the figures kept for the record at its end."""
        try:
            async for event in cloud_forward.events(sent, want_usage):
                if event.startswith(b'data: {"error"'):
                    status["code"] = 502
                elif event.startswith(b"data: {"):
                    for choice in json.loads(event[6:]).get("choices") or []:
                        answer.append((choice.get("delta") or {}).get("content") or "")
                yield event
        finally:
            got = sent.client.usage
            usage["in"], usage["out"] = (got.prompt_tokens, got.completion_tokens) if got else (None, None)
            where["bytes"] = sent.bytes_sent
            done()

    async def _relay(upstream: httpx.Response, lease: Lease, usage: dict[str, int | None], want_usage: bool,
                     stack: contextlib.AsyncExitStack, done: Callable[[], None],
                     status: dict[str, int], answer: list[str]) -> AsyncIterator[bytes]:
        """The engine's SSE stream with the model named by its Hearth id, a usage chunk at the end
        when asked for (llama-cpp-python's server sends none), and an error event if it breaks or
        ends with no finish_reason (the engine cut it: a request from the window on a shared
        engine interrupts a stream there), so a cut answer is never taken for a whole one."""
        out = 0
        counted: int | None = None  # the engine's own count of the answer's tokens, when it gives one
        last: dict[str, Any] = {}
        finished = False
        try:
            async for line in upstream.aiter_lines():
                if app.state.stopping.is_set():
                    status["code"] = 503
                    yield ("data: " + json.dumps({"error": {
                        "message": "Hearth's server is stopping, so this answer ends here (it is not whole).",
                        "type": "server_error", "param": None, "code": "server_stopping"}}) + "\n\n").encode()
                    return
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = renamed(json.loads(data), lease.model.id)
                except ValueError:
                    continue
                if not isinstance(chunk, dict) or "hearth_notice" in chunk:
                    continue  # Hearth's own route: a sentence for the window, not for an app
                if chunk.get("usage") and not chunk.get("choices"):  # Hearth's route counts the tokens
                    counted = chunk["usage"].get("completion_tokens")
                    if want_usage:
                        yield f"data: {json.dumps(chunk)}\n\n".encode()
                        want_usage = False  # said: not made up again below
                    continue
                for choice in chunk.get("choices") or []:
                    words = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if words:
                        out += 1
                        answer.append(words)
                    finished = finished or bool(choice.get("finish_reason"))
                last = chunk
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            out = counted if counted is not None else out
            usage["out"] = out
            if not finished:
                why = await lease.engine.confirm_death(within=0.5) or (
                    "The answer was cut off before its end: the engine stopped it (the chat window may have "
                    "asked the same model something meanwhile). Ask again.")
                status["code"] = 503
                yield ("data: " + json.dumps({"error": {"message": why, "type": "server_error", "param": None,
                                                        "code": "answer_interrupted"}}) + "\n\n").encode()
                return
            if want_usage:
                yield ("data: " + json.dumps({
                    "id": last.get("id", f"chatcmpl-{uuid.uuid4().hex}"), "object": last.get("object", "chat.completion.chunk"),
                    "created": last.get("created", int(time.time())), "model": lease.model.id, "choices": [],
                    "usage": {"prompt_tokens": usage["in"], "completion_tokens": out,
                              "total_tokens": (usage["in"] or 0) + out}}) + "\n\n").encode()
            yield b"data: [DONE]\n\n"
        except httpx.TransportError:
            why = await lease.engine.confirm_death() or "The model's engine stopped answering."
            status["code"] = 503
            yield ("data: " + json.dumps({"error": {"message": why, "type": "server_error", "param": None,
                                                    "code": "engine_failed"}}) + "\n\n").encode()
        finally:
            usage["out"] = out
            await stack.aclose()
            done()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """Every installed model by its Hearth id, in OpenAI's list shape; then the cloud models
        the user allowed the server to forward to (`PROVIDER/MODEL`, owned by the provider)."""
        data = [{"id": m.id, "object": "model", "created": int(m.added_at), "owned_by": "hearth",
                 "name": m.name, "context_length": context_for(m, services.settings.load)}
                for m in services.library.models()]
        data += [{"id": t.id, "object": "model", "created": int(t.provider.added_at), "owned_by": t.provider.name,
                  "name": t.title} for t in cloud_forward.allowed_targets(services, config.cloud)]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_id:path}")
    async def model_info(model_id: str) -> dict[str, Any]:
        try:
            m = pool.model(model_id)
        except ModelUnavailable as exc:
            raise ApiError(404, str(exc), type="not_found_error", code="model_not_found", param="model") from None
        return {"id": m.id, "object": "model", "created": int(m.added_at), "owned_by": "hearth",
                "name": m.name, "context_length": context_for(m, services.settings.load)}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await forward(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await forward(request, "completion")

    from desktop.core.server import embed, ollama

    for module in (embed, ollama):  # more routes on the same app, checks and errors
        module.register(app, services, pool, record)

    # Outermost last: the Host and Origin guard, then CORS (answers preflight), then the key.
    app.add_middleware(_KeyCheck, key=config.api_key, on_refused=refused)
    app.add_middleware(CORSMiddleware, allow_origins=list(config.origins), allow_credentials=False,
                       allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
                       expose_headers=[CAPPED_HEADER])
    app.add_middleware(_Guard, config=config, on_refused=refused)
    return app


def schema_grammar(schema: Any) -> str:
    """A GBNF grammar for answers that are JSON valid against `schema`, from llama-cpp-python's
    converter, with its string characters limited as JSON's are (its `char` rule lets a raw
    newline or tab into a string, which no JSON parser accepts). Raises ApiError 400."""
    from llama_cpp import llama_grammar

    try:
        grammar = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # noqa: BLE001 - any schema the converter cannot follow
        raise ApiError(400, f"The JSON schema cannot be followed here: {exc}.", param="response_format") from None
    return grammar.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]', 1)


def format_grammar(fmt: Any) -> str:
    """The grammar for OpenAI's response_format: "" for text or none, llama-cpp-python's JSON
    grammar for `json_object`, one made from the schema for `json_schema` (and json_object with a
    schema). Raises ApiError 400 for anything else."""
    if fmt is None:
        return ""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise ApiError(400, "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                       "{\"type\": \"json_schema\", \"json_schema\": {\"schema\": …}}.", param="response_format")
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else fmt.get("schema")
    if fmt["type"] == "json_schema" and not isinstance(schema, dict):
        raise ApiError(400, "response_format json_schema needs a schema (json_schema.schema).", param="response_format")
    if schema is not None:
        return schema_grammar(schema)
    if fmt["type"] == "json_object":
        from llama_cpp.llama_grammar import JSON_GBNF

        return JSON_GBNF
    return ""


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI chat messages as the engine's template takes them: content as text (a list of text
    parts joined; `developer` is the system role, legacy `function` a tool result); an
    assistant's `tool_calls` and a tool's `tool_call_id` kept. Raises ApiError 400 for what is
    not a message list, and for images or audio (Hearth's engines read text)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a list of at least one message.", param="messages")
    out = []
    for n, message in enumerate(messages, 1):
        role = message.get("role") if isinstance(message, dict) else None
        role = {"developer": "system", "function": "tool"}.get(role, role)
        if role not in ("system", "user", "assistant", "tool"):
            raise ApiError(400, f"message {n} needs a role: system, developer, user, assistant or tool.",
                           param="messages")
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in ("text", "input_text"):
                    raise ApiError(400, f"message {n} carries {kind or 'a part'} content; Hearth's models read text "
                                   "only.", param="messages")
                parts.append(str(part.get("text") or ""))
            content = "\n".join(parts)
        elif content is not None and not isinstance(content, str):
            raise ApiError(400, f"message {n}'s content must be text or a list of text parts.", param="messages")
        if content is None and role in ("system", "user"):
            raise ApiError(400, f"message {n} ({role}) has no content.", param="messages")
        turn: dict[str, Any] = {"role": role, "content": content or ""}
        if role == "assistant" and message.get("tool_calls"):
            calls = message["tool_calls"]
            if not isinstance(calls, list):
                raise ApiError(400, f"message {n}'s tool_calls must be a list.", param="messages")
            turn["tool_calls"] = [_call_for_template(c) for c in calls]
        if role == "tool":
            turn["tool_call_id"] = str(message.get("tool_call_id") or "")
            if message.get("name"):
                turn["name"] = str(message["name"])
        out.append(turn)
    return out


def _call_for_template(call: Any) -> dict[str, Any]:
    """An earlier tool call as chat templates read it: `arguments` as an object (Qwen's and
    Llama's templates write it with tojson; OpenAI sends it as JSON text)."""
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise ApiError(400, "a tool call must be {\"id\", \"type\": \"function\", \"function\": {\"name\", "
                       "\"arguments\"}}.", param="messages")
    function = dict(call["function"])
    if isinstance(function.get("arguments"), str):
        with contextlib.suppress(ValueError):
            function["arguments"] = json.loads(function["arguments"])
    return {**call, "type": "function", "function": function}


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


async def while_listening(request: Request, work: Any, every_s: float = 0.25) -> Any:
    """Await `work` while watching the client: one that leaves cancels it (and with it the
    engine's answer) and raises ClientGone. Starlette does not cancel a request's handler when
    its client leaves; without this a model would write a long answer for nobody while the next
    request waits."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@dataclass(frozen=True)
class CheckedChat:
    """A chat request checked before any model is loaded for it: its body, its messages as the
    engine takes them, its tools, and the grammar its answer must follow ("" for none)."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]
    tools: ToolRequest
    grammar: str


def check_sampling(body: dict[str, Any]) -> None:
    """Check the sampling fields of a chat or completion request as OpenAI documents their types
    (numbers, whole numbers, `stop` a string or a list of strings, `logit_bias` token ids to
    numbers), and what no engine here serves (n other than 1, log-probabilities). Raises ApiError
    400 with a sentence naming the field."""
    for name, what in UNSERVED.items():
        if body.get(name) not in (None, False, 0, [], {}):
            raise ApiError(400, f"Hearth's server does not offer {what} ({name}); leave it out.", param=name)
    for name in ("n", "best_of"):
        if body.get(name) not in (None, 1):
            raise ApiError(400, f"Hearth's server writes one answer per request: {name} must be 1.", param=name)
    for name in NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise ApiError(400, f"{name} must be a number, not {json.dumps(value)[:40]}.", param=name)
    for name in WHOLE_FIELDS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ApiError(400, f"{name} must be a whole number, not {json.dumps(value)[:40]}.", param=name)
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 16
                                                           and all(isinstance(x, str) for x in stop))):
        raise ApiError(400, "stop must be a string or a list of up to 16 strings.", param="stop")
    bias = body.get("logit_bias")
    if bias is not None:
        try:
            ok = isinstance(bias, dict) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                and int(k) >= 0 for k, v in bias.items())
        except ValueError:
            ok = False
        if not ok:
            raise ApiError(400, "logit_bias must map token ids to numbers (-100 to 100).", param="logit_bias")


def check_chat(body: dict[str, Any]) -> CheckedChat:
    """Check an OpenAI chat request. Raises ApiError 400 with a sentence for what cannot be
    served: malformed messages, tools or sampling fields, n other than 1, log-probabilities."""
    check_sampling(body)
    messages = chat_messages(body.get("messages"))
    try:
        tools = tool_request(body)
    except ToolsError as exc:
        raise ApiError(400, str(exc), param=exc.param) from None
    grammar = schema_grammar(call_schema(tools)) if tools.forced else format_grammar(body.get("response_format"))
    if body.get("grammar"):  # llama-cpp-python's own extension: GBNF text
        if not isinstance(body["grammar"], str):
            raise ApiError(400, "grammar must be GBNF text.", param="grammar")
        grammar = grammar or body["grammar"]
    return CheckedChat(body=body, messages=messages, tools=tools, grammar=grammar)


async def _as_events(data: dict[str, Any], want_usage: bool) -> AsyncIterator[bytes]:
    """A whole chat.completion sent as OpenAI's stream of chunks: the role and the text (or the
    tool calls, each with its index), the finish reason, the usage when asked for, [DONE]."""
    message = data["choices"][0]["message"]
    base = {"id": data["id"], "object": "chat.completion.chunk", "created": data["created"], "model": data["model"]}
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("reasoning_content"):
        delta["reasoning_content"] = message["reasoning_content"]
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
    chunks = [{**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                    "finish_reason": data["choices"][0]["finish_reason"]}]}]
    if want_usage:
        chunks.append({**base, "choices": [], "usage": data["usage"]})
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _engine_error(status: int, raw: bytes) -> ApiError:
    """The engine child's error answer as our ApiError (its own OpenAI-shaped error kept)."""
    try:
        error = json.loads(raw).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if status < 500 and isinstance(error, dict) and error.get("message"):
        return ApiError(status, str(error["message"]), type=str(error.get("type") or _type_for(status)),
                        code=error.get("code"), param=error.get("param"))
    # An engine's failure may carry a Python traceback with this computer's paths: logged here,
    # never sent to an app (which may be on another computer).
    log.warning("the engine failed a request (%s): %s", status, raw.decode("utf-8", "replace")[:2000])
    if status < 500:
        return ApiError(status, "The model's engine refused the request as it was written; check its fields.",
                        type=_type_for(status))
    return ApiError(500, "The model's engine failed on this request. Hearth's engine log has the details.",
                    type="server_error", code="engine_failed")


__all__ = ["create_app", "error_response", "is_loopback_host", "machine_names", "CAPPED_HEADER", "LOOPBACK"]
