"""Ollama's API on Hearth's local server, so tools that speak only Ollama (Open WebUI's Ollama
connection, `ollama` clients, editor plugins) use the models Hearth keeps.

Each route is translated to the OpenAI API of the model's engine child (llama-cpp-python's
server, see engine_server.py) and the answer back to Ollama's shapes, as documented in Ollama's
docs/api.md (github.com/ollama/ollama): NDJSON streaming, durations in nanoseconds, errors as
`{"error": "…"}`. Routes: GET /api/version, GET /api/tags, POST /api/show, POST /api/chat,
POST /api/generate, GET /api/ps.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from anyascii import anyascii
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from desktop.core import net
from desktop.core.errors import HearthError
from desktop.core.library import LibraryError
from desktop.core.providers import api_url
from desktop.core.server import RequestRecord
from desktop.core.server.tools import ToolRequest, ToolsError, parse_calls, tool_request
from desktop.core.settings import Sampling
from desktop.core.store import ModelRecord
from desktop.core.units import human_count

if TYPE_CHECKING:
    import httpx

# The Ollama release whose API these routes follow. Tools read /api/version to decide what they
# may ask for (Open WebUI, for one), so it is Ollama's numbering, not Hearth's.
OLLAMA_VERSION = "0.9.0"
LATEST = "latest"
NS = 1_000_000_000
UPSTREAM_TIMEOUT_S = 600.0  # longest wait for the engine's next bytes, as for the window's chats

# Ollama's `options` that have an OpenAI-compatible field of the same meaning in the engine.
_SAME_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "seed", "repeat_penalty", "presence_penalty",
                 "frequency_penalty")


class OllamaError(Exception):
    """A request the Ollama routes refuse: `status` is the HTTP status, str() the sentence that
    goes into Ollama's `{"error": …}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- names -------------------------------------------------------------------------------------

def ollama_name(model: ModelRecord) -> str:
    """The name Ollama clients see for an installed model: its Hearth id with Ollama's default
    tag, `smollm2-135m-instruct-q4_1:latest`. Both that and the bare id are accepted back."""
    return f"{model.id}:{LATEST}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "-", anyascii(text).lower()).strip("-")


def _listing(models: list[ModelRecord]) -> str:
    return ", ".join(m.id for m in models)


_HUB_NAME = re.compile(r"^(?:https?://)?(?:hf\.co|huggingface\.co)/([^/:\s]+/[^/:\s]+)(?::([^/:\s]+))?$", re.I)


def find_model(models: list[ModelRecord], get: Callable[[str], ModelRecord], ref: str) -> ModelRecord:
    """The installed model an Ollama client names, in this order:

    1. `id` or `id:latest`, and whatever `Library.get` accepts (name, file name, a start of the id);
    2. a hub model as Ollama names one, `hf.co/OWNER/REPO:QUANT` (also huggingface.co/…; no tag
       or `latest`: the repo's only installed file): the model downloaded from that repo whose
       quantization or file name is QUANT;
    3. an Ollama-style `name:tag` (`smollm2:135m`, `SmolLM2:135M-Instruct-Q4_1`): the one model
       whose id starts with the name's words and contains every word of the tag.

    `models` are the installed ones, `get` is `Library.get`. Raises OllamaError: 404 (a sentence
    naming `hearth models list`) when none matches, 400 when several could be meant."""
    ref = ref.strip()
    if not ref:
        raise OllamaError(400, "model is required: name an installed model (`hearth models list` shows them).")
    bare = ref[: -len(":" + LATEST)] if ref.lower().endswith(":" + LATEST) else ref
    several = ""
    try:
        return get(bare)
    except LibraryError as exc:
        if "could mean several" in str(exc):
            several = str(exc)
    hub = _HUB_NAME.match(ref)
    if hub:
        repo, quant = hub.group(1).lower(), (hub.group(2) or LATEST).lower()
        matches = [m for m in models if m.repo.lower() == repo]
        if quant != LATEST:
            matches = [m for m in matches if m.quantization.lower() == quant or _slug(quant) in _slug(m.file).split("-")]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise OllamaError(400, f"model “{ref}” could mean several files of that repo: {_listing(matches)}. "
                                   "Add the quantization after a colon, or give the id.")
    elif ":" in bare:
        name, tag = bare.split(":", 1)
        head, words = _slug(name).split("-"), set(_slug(tag).split("-")) - {""}
        matches = [m for m in models
                   if m.id.split("-")[: len(head)] == head and words <= set(m.id.split("-")[len(head):])]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise OllamaError(400, f"model “{ref}” could mean several installed models: {_listing(matches)}. "
                                   "Give the id of the one you mean.")
    if several:
        raise OllamaError(400, several)
    if hub:
        wanted = hub.group(1) + (f":{hub.group(2)}" if hub.group(2) and hub.group(2).lower() != LATEST else "")
        raise OllamaError(404, f"model “{ref}” not found: it is not installed in Hearth. `hearth models pull "
                               f"{wanted}` downloads it; `hearth models list` shows the installed ones.")
    raise OllamaError(404, f"model “{ref}” not found: no model by that name is installed in Hearth. "
                           "`hearth models list` shows the installed ones; `hearth models pull` adds one.")


# --- model descriptions ------------------------------------------------------------------------

def _timestamp(seconds: float | None = None) -> str:
    """RFC 3339 in UTC with a Z, as Ollama writes `created_at` and `modified_at`."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def details(model: ModelRecord) -> dict[str, Any]:
    """Ollama's `details` of a model: format, family (the GGUF architecture), parameter size as
    model cards write it ("135M") and the quantization ("Q4_1")."""
    family = model.architecture or "unknown"
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family],
            "parameter_size": human_count(model.parameters) if model.parameters else "",
            "quantization_level": model.quantization}


def tag_entry(model: ModelRecord) -> dict[str, Any]:
    """One model in `/api/tags`: name and model (`id:latest`), size in bytes, digest (the file's
    sha256 in hex, "" for a linked model not hashed yet), modified_at and details."""
    name = ollama_name(model)
    return {"name": name, "model": name, "modified_at": _timestamp(model.added_at or None), "size": model.size,
            "digest": model.sha256, "details": details(model)}


def parameters_text(sampling: Sampling, n_ctx: int = 0) -> str:
    """The default sampling of a model, and `num_ctx` (the context in tokens it is loaded with,
    when known), as Ollama's `/api/show` writes `parameters`: one `name value` per line (a
    Modelfile's PARAMETER lines without the keyword). Tools such as Continue read num_ctx to
    know how long a prompt may be."""
    lines = [f"num_ctx {n_ctx}"] if n_ctx else []
    lines += [f"temperature {sampling.temperature:g}", f"top_p {sampling.top_p:g}", f"top_k {sampling.top_k}",
             f"min_p {sampling.min_p:g}", f"repeat_penalty {sampling.repeat_penalty:g}"]
    if sampling.seed >= 0:
        lines.append(f"seed {sampling.seed}")
    return "\n".join(lines)


def show_body(model: ModelRecord, sampling: Sampling, template: str, n_ctx: int = 0) -> dict[str, Any]:
    """Ollama's `/api/show` answer: a Modelfile-like summary, the parameters, the chat template
    (the GGUF's Jinja template: Hearth renders it, not Ollama's Go templates), details,
    `model_info` with the GGUF keys Ollama shows (`<arch>.context_length` among them) and
    capabilities: ["completion"] for a chat model, ["embedding"] for an embedding model (as
    Ollama says of nomic-embed-text; clients such as Open WebUI read it to tell them apart)."""
    params = parameters_text(sampling, n_ctx)
    modelfile = "\n".join([f"# Served by Hearth from {model.path}", f"FROM {model.path}",
                           f"TEMPLATE {json.dumps(template)}" if template else "",
                           *(f"PARAMETER {line}" for line in params.splitlines()),
                           f"LICENSE {json.dumps(model.license)}" if model.license else ""])
    arch = model.architecture or "unknown"
    info: dict[str, Any] = {"general.architecture": arch, "general.basename": model.name,
                            "general.parameter_count": model.parameters, "general.file_type": model.quantization}
    if model.context_length:
        info[f"{arch}.context_length"] = model.context_length
    return {"license": model.license, "modelfile": "\n".join(line for line in modelfile.splitlines() if line),
            "parameters": params, "template": template, "details": details(model), "model_info": info,
            "capabilities": ["embedding"] if model.for_embeddings else ["completion"],
            "modified_at": _timestamp(model.added_at or None)}


# --- requests: Ollama -> OpenAI ----------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_s(value: Any) -> float | None:
    """Ollama's `keep_alive` in seconds: None when absent (the server's idle time applies), 0 to
    unload right after this request, -1.0 for any negative value (kept loaded, as the pool reads it). A number is
    seconds; a string is a number or a Go duration ("5m", "1h30m", "300ms", "-1m").
    Raises OllamaError(400) for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise OllamaError(400, f"keep_alive must be a duration such as \"5m\" or a number of seconds, not {value}.")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)
        except ValueError:
            parts = _DURATION.findall(body)
            if not parts or "".join(n + u for n, u in parts) != body:
                raise OllamaError(400, f"keep_alive “{value}” is not a duration: write it like \"5m\", "
                                       "\"1h30m\", \"30s\", 0 or -1.") from None
            seconds = sign * sum(float(n) * _UNIT_S[u] for n, u in parts)
    else:
        raise OllamaError(400, "keep_alive must be a duration such as \"5m\" or a number of seconds.")
    if math.isnan(seconds):
        raise OllamaError(400, "keep_alive must be a number of seconds or a duration.")
    return -1.0 if seconds < 0 else seconds


def sampling_fields(options: dict[str, Any] | None, defaults: Sampling) -> dict[str, Any]:
    """Ollama `options` as the engine's OpenAI-compatible fields, Hearth's default sampling where
    an option is not given. `num_predict` becomes `max_tokens` (-1 and -2, "until the end" and
    "fill the context", leave it unset: the answer runs to its end, as in Ollama); `stop` a list.
    `num_ctx` and the load options are not per request here (the model keeps its own context).
    Raises OllamaError(400) when `options` is not an object or a value has the wrong type."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise OllamaError(400, "options must be an object such as {\"temperature\": 0.2}.")
    body: dict[str, Any] = {"temperature": defaults.temperature, "top_p": defaults.top_p, "top_k": defaults.top_k,
                            "min_p": defaults.min_p, "repeat_penalty": defaults.repeat_penalty}
    if defaults.seed >= 0:
        body["seed"] = defaults.seed
    for key in _SAME_OPTIONS:
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OllamaError(400, f"option {key} must be a number, not {json.dumps(value)}.")
        body[key] = int(value) if key in ("top_k", "seed") else float(value)
    predict = options.get("num_predict")
    if predict is not None:
        if isinstance(predict, bool) or not isinstance(predict, int | float):
            raise OllamaError(400, f"option num_predict must be a whole number, not {json.dumps(predict)}.")
        if predict >= 0:
            body["max_tokens"] = int(predict)
    stop = options.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise OllamaError(400, "option stop must be a string or a list of strings.")
        if stops:
            body["stop"] = stops
    return body


def response_format(fmt: Any) -> dict[str, Any] | None:
    """Ollama's `format` as llama-cpp-python's `response_format`: "json" is any JSON object, a
    JSON schema (an object) constrains the answer to it (a grammar in llama.cpp); "" or None is
    free text. Raises OllamaError(400) for anything else."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_object", "schema": fmt}
    raise OllamaError(400, f"format must be \"json\" or a JSON schema object, not {json.dumps(fmt)}.")


def chat_messages(messages: Any) -> list[dict[str, str]]:
    """Ollama chat messages as OpenAI ones (role and text). Raises OllamaError(400) for a list
    that is not one, a message without a known role, or images (Hearth's engines read text)."""
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise OllamaError(400, "messages must be a list of {\"role\": …, \"content\": …} objects.")
    out = []
    for n, message in enumerate(messages, 1):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise OllamaError(400, f"message {n} needs a role: system, user, assistant or tool.")
        if message.get("images"):
            raise OllamaError(400, "Hearth's models read text only: this request carries images.")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise OllamaError(400, f"message {n}'s content must be text.")
        turn: dict[str, Any] = {"role": message["role"], "content": content}
        calls = message.get("tool_calls")
        if message["role"] == "assistant" and calls:
            # Ollama's calls ({"function": {"name", "arguments": {…}}}) as chat templates read them.
            if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("function"), dict)
                                                      for c in calls):
                raise OllamaError(400, f"message {n}'s tool_calls must be a list of {{\"function\": {{\"name\", "
                                       "\"arguments\"}}} objects.")
            turn["tool_calls"] = [{"type": "function", "function": c["function"]} for c in calls]
        if message["role"] == "tool" and message.get("tool_name"):
            turn["name"] = str(message["tool_name"])
        out.append(turn)
    return out


def generate_messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    """`/api/generate` without `raw`: the prompt as the user's turn, after the system prompt if
    one is given (the model's chat template is applied by the engine, as Ollama applies its own)."""
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": prompt}]


# --- answers: OpenAI -> Ollama -----------------------------------------------------------------

@dataclass
class Timing:
    """The clock of one request, in perf_counter_ns: when it arrived, when the model was ready,
    when the first words came and when the answer ended; and the tokens counted."""

    started: int = field(default_factory=time.perf_counter_ns)
    loaded: int = 0
    first: int = 0
    ended: int = 0
    prompt_tokens: int = 0
    answer_tokens: int = 0

    def done_fields(self, reason: str) -> dict[str, Any]:
        """The figures of Ollama's last line: done, done_reason, and durations in nanoseconds."""
        ended = self.ended or time.perf_counter_ns()
        loaded = self.loaded or ended
        first = self.first or ended
        return {"done": True, "done_reason": reason, "total_duration": ended - self.started,
                "load_duration": loaded - self.started, "prompt_eval_count": self.prompt_tokens,
                "prompt_eval_duration": first - loaded, "eval_count": self.answer_tokens,
                "eval_duration": ended - first}


def done_reason(finish_reason: str | None) -> str:
    """OpenAI's finish_reason in Ollama's words: "length" when cut at num_predict, else "stop"."""
    return "length" if finish_reason == "length" else "stop"


def chat_line(model: str, content: str, thinking: str = "") -> dict[str, Any]:
    """One streamed `/api/chat` line with the next words of the answer."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return {"model": model, "created_at": _timestamp(), "message": message, "done": False}


def generate_line(model: str, text: str, thinking: str = "") -> dict[str, Any]:
    """One streamed `/api/generate` line with the next words of the answer."""
    line: dict[str, Any] = {"model": model, "created_at": _timestamp(), "response": text, "done": False}
    if thinking:
        line["thinking"] = thinking
    return line


def ndjson(obj: dict[str, Any]) -> bytes:
    """One line of Ollama's stream (application/x-ndjson)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass
class Piece:
    """What one OpenAI chunk adds: answer text, thinking text, a finish reason, and usage."""

    text: str = ""
    thinking: str = ""
    finish: str | None = None
    usage: dict[str, Any] | None = None


def read_chunk(chunk: dict[str, Any]) -> Piece:
    """An OpenAI chat or text completion chunk (streamed or whole) as a Piece. Raises
    OllamaError(500) for an error event from the engine (400 when the prompt does not fit)."""
    if chunk.get("error"):
        raise upstream_error(500, chunk["error"])
    piece = Piece(usage=chunk.get("usage") or None)
    choices = chunk.get("choices") or []
    if choices:
        choice = choices[0]
        piece.finish = choice.get("finish_reason")
        delta = choice.get("delta") or choice.get("message") or {}
        piece.text = (delta.get("content") or "") if delta else (choice.get("text") or "")
        piece.thinking = delta.get("reasoning_content") or "" if delta else ""
    return piece


def upstream_error(status: int, detail: Any) -> OllamaError:
    """The engine's error answer in Ollama's shape: a prompt beyond the context is the client's
    fault (400, with the engine's numbers), anything else 500."""
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("detail") or json.dumps(detail)
    text = str(detail)
    if any(words in text for words in ("exceed context window", "context_length_exceeded", "maximum context length")):
        return OllamaError(400, f"The prompt does not fit in the model's context: {text}. Shorten it, or raise the "
                                "context length in the model's settings in Hearth.")
    return OllamaError(status if 400 <= status < 600 else 500, f"The model's engine failed: {text}")


# --- upstream ----------------------------------------------------------------------------------

def stock_url(base_url: str, path: str) -> str:
    """A route of llama-cpp-python's own server in the engine child, `path` from its root
    ("/v1/completions", "/extras/tokenize/count"). Hearth's engine endpoint points at its
    streaming route (`…/hearth/v1`); JSON grammars and raw prompts are served by the stock routes."""
    parts = urlsplit(base_url)
    root = parts.path.rstrip("/")
    for tail in ("/hearth/v1", "/v1"):
        if root.endswith(tail):
            root = root[: -len(tail)]
            break
    return api_url(urlunsplit(parts._replace(path=root)), path)


async def count_tokens(http: httpx.AsyncClient, base_url: str, api_key: str, text: str) -> int:
    """How many tokens the engine's model makes of `text` (llama-cpp-python's
    /extras/tokenize/count, BOS included as in a completion); 0 when the engine cannot say."""
    import httpx
    try:
        response = await http.post(stock_url(base_url, "/extras/tokenize/count"), json={"input": text},
                                   headers={"Authorization": f"Bearer {api_key or 'none'}"})
        return int(response.json().get("count") or 0) if response.status_code == 200 else 0
    except (httpx.HTTPError, ValueError, AttributeError):
        return 0


async def _error_of(response: httpx.Response) -> OllamaError:
    await response.aread()
    try:
        detail = response.json()
        detail = detail.get("error") or detail.get("detail") or detail
    except ValueError:
        detail = response.text[:500]
    return upstream_error(response.status_code, detail)


async def upstream_pieces(http: httpx.AsyncClient, url: str, api_key: str,
                          body: dict[str, Any]) -> AsyncIterator[Piece]:
    """POST `body` to the engine and yield the answer as Pieces: read as server-sent events when
    `body["stream"]`, else one Piece for the whole answer. Raises OllamaError for an error
    answer or a broken connection."""
    import httpx
    headers = {"Authorization": f"Bearer {api_key or 'none'}"}
    try:
        if not body.get("stream"):
            response = await http.post(url, json=body, headers=headers)
            if response.status_code >= 400:
                raise await _error_of(response)
            yield read_chunk(response.json())
            return
        async with http.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 400:
                raise await _error_of(response)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                yield read_chunk(json.loads(data))
    except (httpx.HTTPError, ValueError) as exc:
        raise OllamaError(500, f"The connection to the model's engine broke off ({type(exc).__name__}).") from exc


# --- routes ------------------------------------------------------------------------------------

def _error(exc: OllamaError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


class _Stream(StreamingResponse):
    """An NDJSON answer that ends its request however the client leaves: the model's turn is
    handed back and the request recorded even when the connection drops mid-answer (Starlette
    skips a background task when the client has gone)."""

    def __init__(self, events: AsyncIterator[bytes], done: Callable[[], Any]) -> None:
        super().__init__(events, media_type="application/x-ndjson")
        self._done = done

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._done()


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise OllamaError(400, "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise OllamaError(400, "The request body must be a JSON object.")
    return body


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    return default if value is None else bool(value)


@dataclass
class _Exchange:
    """One chat or generate request on its way to the engine."""

    name: str  # as the client wrote it, echoed back as Ollama does
    model: ModelRecord
    chat: bool
    stream: bool
    ttl_s: float | None
    url_path: str  # "chat" (Hearth's route) or "stock-completion"
    body: dict[str, Any] | None  # None: no words to answer, only load or unload the model
    timing: Timing = field(default_factory=Timing)
    status: int = 200
    answer: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    tools: ToolRequest = field(default_factory=lambda: ToolRequest((), "none"))
    calls: list[dict[str, Any]] = field(default_factory=list)  # Ollama's tool_calls, read from the answer

    @property
    def prompt(self) -> str:
        """What the client asked, for a request log with bodies: the prompt, or the chat's last message."""
        body = self.body or {}
        if "prompt" in body:
            return str(body["prompt"])
        messages = body.get("messages") or [{}]
        return str(messages[-1].get("content") or "")


def register(app: FastAPI, services: Any, pool: Any, on_request: Callable[[RequestRecord], None] | None) -> None:
    """Add Ollama's routes to the local server's app. `services` gives the library and the
    default sampling, `pool` the engines (`pool.use(model_id, ttl_s=…)` as an async context
    giving a lease with `endpoint`, `model`, `n_ctx`), `on_request` hears of every chat and
    generate request with its model and tokens (a RequestRecord)."""
    def lookup(ref: Any) -> ModelRecord:
        if not isinstance(ref, str):
            raise OllamaError(400, "model is required: name an installed model (`hearth models list` shows them).")
        return find_model(services.library.models(), services.library.get, ref)

    def record(request: Request, exchange: _Exchange | None, status: int, started: float,
               model: str = "") -> None:
        if on_request is None:
            return
        client = f"{request.client.host if request.client else ''} {request.headers.get('user-agent', '')}".strip()
        timing = exchange.timing if exchange else None
        config = getattr(app.state, "config", None)
        body = ""
        if exchange is not None and exchange.body is not None and getattr(config, "log_bodies", False):
            body = f"{exchange.prompt}\n\n{''.join(exchange.answer)}"
        on_request(RequestRecord(at=started, client=client, method=request.method, path=request.url.path,
                                 model=exchange.model.id if exchange else model, status=status,
                                 tokens_in=timing.prompt_tokens if timing and timing.ended else None,
                                 tokens_out=timing.answer_tokens if timing and timing.ended else None,
                                 duration_ms=(time.time() - started) * 1000, body=body))

    @app.api_route("/", methods=["GET", "HEAD"], response_class=PlainTextResponse)
    async def heartbeat() -> str:
        # Ollama answers this; its command line (`ollama list`, `ollama run`) checks it first, and
        # some tools look for these words.
        return "Ollama is running (Hearth's local server: Ollama's API under /api/, OpenAI's under /v1/)"

    @app.post("/api/pull")
    @app.post("/api/push")
    @app.post("/api/create")
    @app.post("/api/copy")
    @app.delete("/api/delete")
    async def manage(request: Request):
        return _error(OllamaError(501, f"Hearth's server does not change its models ({request.url.path}): add and "
                                       "remove them in Hearth's Models page, or with `hearth models pull` and "
                                       "`hearth models rm`."))

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": OLLAMA_VERSION}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [tag_entry(m) for m in services.library.models()]}

    @app.post("/api/show")
    async def show(request: Request):
        try:
            body = await _json(request)
            model = lookup(body.get("model") or body.get("name"))
        except OllamaError as exc:
            return _error(exc)
        from desktop.core import gguf
        try:
            template = gguf.read_info(model.path).chat_template
        except (gguf.GGUFError, OSError):
            template = ""
        # The context it runs with now, or would be loaded with (engine.plan_load's rule: the user's
        # setting, 4096 when unset, capped at what the model was trained for).
        n_ctx = next((m.n_ctx for m in pool.loaded() if m.id == model.id), 0)
        if not n_ctx:
            n_ctx = services.settings.load.n_ctx if services.settings.load.n_ctx > 0 else 4096
            n_ctx = min(n_ctx, model.context_length) if model.context_length else n_ctx
        return show_body(model, services.settings.sampling, template, n_ctx)

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        # idle_until is None while a model is in use or kept: it then expires an idle time from now
        idle_s = getattr(getattr(app.state, "config", None), "ttl_s", 600)
        return {"models": [ps_entry(m.model, m.n_ctx, m.idle_until or time.time() + idle_s) for m in pool.loaded()]}

    async def answer(request: Request, chat: bool):
        started = time.time()
        exchange: _Exchange | None = None
        named = ""
        try:
            body = await _json(request)
            named = str(body.get("model") or "")
            exchange = _prepare(body, chat, lookup(body.get("model")), services.settings.sampling)
            if exchange.body is None:  # nothing to answer: load or unload the model, as Ollama does
                reason = await _load_or_unload(pool, exchange)
                line = {"model": exchange.name, "created_at": _timestamp(), "done": True, "done_reason": reason}
                line.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
                record(request, exchange, 200, started)
                return JSONResponse(line)
        except OllamaError as exc:
            record(request, exchange, exc.status, started, named)
            return _error(exc)
        events = _run(pool, exchange)
        try:
            await anext(events)  # loads the model and waits for the first words or the error
        except OllamaError as exc:
            await events.aclose()
            record(request, exchange, exc.status, started)
            return _error(exc)

        finished = False

        async def finish() -> None:
            nonlocal finished
            if not finished:
                finished = True
                await events.aclose()
                record(request, exchange, exchange.status, started)

        if exchange.stream:
            return _Stream(events, finish)
        last: dict[str, Any] = {}
        try:
            async for raw in events:
                last = json.loads(raw)
                if await request.is_disconnected():  # nobody waits for the rest: stop the engine
                    exchange.status = 499
                    return Response(status_code=499)
        finally:  # the client may leave while the whole answer is written: the model is handed back
            await finish()
        if "error" in last:
            return JSONResponse(last, status_code=exchange.status)
        text, thinking = "".join(exchange.answer), "".join(exchange.thinking)
        if chat:
            last["message"] = {"role": "assistant", "content": text, **({"thinking": thinking} if thinking else {}),
                               **({"tool_calls": exchange.calls} if exchange.calls else {})}
        else:
            last["response"] = text
            if thinking:
                last["thinking"] = thinking
        return JSONResponse(last)

    @app.post("/api/chat")
    async def chat(request: Request):
        return await answer(request, chat=True)

    @app.post("/api/generate")
    async def generate(request: Request):
        return await answer(request, chat=False)


def _prepare(body: dict[str, Any], chat: bool, model: ModelRecord, defaults: Sampling) -> _Exchange:
    """The engine request for an Ollama chat or generate body (its `body` None when the request
    only loads or unloads the model). Raises OllamaError(400) for a malformed request, and for
    an embedding model, in Ollama's words (`"NAME" does not support chat`), even to load it."""
    name = str(body.get("model"))
    if model.for_embeddings:
        raise OllamaError(400, f"\"{name}\" does not support {'chat' if chat else 'generate'}: it is an embedding "
                               "model, for /api/embed and document search. Choose a chat model.")
    stream = _flag(body, "stream", True)
    ttl = keep_alive_s(body.get("keep_alive"))
    try:
        tools = tool_request({"tools": body.get("tools")}) if chat and body.get("tools") else ToolRequest((), "none")
    except ToolsError as exc:
        raise OllamaError(400, str(exc)) from None
    if body.get("tools") and not chat:
        raise OllamaError(400, "tools go with /api/chat, not /api/generate.")
    if chat:
        messages = chat_messages(body.get("messages"))
        if not messages:
            return _Exchange(name, model, chat, stream, ttl, "", None)
        path = "chat"
    else:
        prompt, system = body.get("prompt") or "", body.get("system")
        if not isinstance(prompt, str) or (system is not None and not isinstance(system, str)):
            raise OllamaError(400, "prompt and system must be text.")
        if body.get("images"):
            raise OllamaError(400, "Hearth's models read text only: this request carries images.")
        if body.get("suffix"):
            raise OllamaError(400, "Hearth's Ollama API does not fill in the middle (suffix) yet.")
        if not prompt:
            return _Exchange(name, model, chat, stream, ttl, "", None)
        if body.get("raw"):
            path = "stock-completion"
            messages = []
        else:
            messages, path = generate_messages(prompt, system), "chat"
    fields = sampling_fields(body.get("options"), defaults)
    fmt = response_format(body.get("format"))
    if path == "stock-completion":
        if fmt:  # llama-cpp-python's completions route takes no response_format
            raise OllamaError(400, "format cannot be combined with raw: leave out one of them.")
        # max_tokens 0: llama-cpp-python's completions stop at the context's end (its default is 16).
        out = {"prompt": body["prompt"], "stream": stream, "max_tokens": 0, **fields}
    else:
        out = {"messages": messages, "stream": True, "stream_options": {"include_usage": True}, **fields}
        if fmt:  # JSON, or JSON following a schema: a grammar on Hearth's route
            from desktop.core.server.app import ApiError, format_grammar

            try:
                out["grammar"] = format_grammar(fmt)
            except ApiError as exc:
                raise OllamaError(400, exc.message) from None
    out["model"] = model.id
    return _Exchange(name, model, chat, stream, ttl, path, out, tools=tools)


def ps_entry(model: ModelRecord, n_ctx: int, expires_at: float) -> dict[str, Any]:
    """A loaded model in Ollama's `/api/ps` shape: the `/api/tags` fields (less modified_at),
    expires_at (when it will be unloaded if left idle, seconds since the epoch), size_vram (0:
    Hearth does not report it) and context_length, the context it was loaded with in tokens."""
    entry = tag_entry(model)
    entry.pop("modified_at")
    entry.update(expires_at=_timestamp(expires_at), size_vram=0, context_length=n_ctx or model.context_length)
    return entry


async def _load_or_unload(pool: Any, exchange: _Exchange) -> str:
    """An empty chat or prompt: keep_alive 0 unloads the model if the server loaded it (the
    window's engine is never unloaded from here), anything else loads it and keeps it for
    keep_alive. Ollama's done_reason: "load" or "unload"."""
    if exchange.ttl_s == 0:
        if any(m.id == exchange.model.id and not m.shared for m in pool.loaded()):
            async with _lease(pool, exchange):
                pass
        return "unload"
    async with _lease(pool, exchange):
        pass
    return "load"


@contextlib.asynccontextmanager
async def _lease(pool: Any, exchange: _Exchange) -> AsyncIterator[Any]:
    """The model's turn from the pool, its refusals (404, does not fit: 507, failed to load: 500)
    as OllamaError with the pool's sentence."""
    try:
        async with pool.use(exchange.model.id, ttl_s=exchange.ttl_s) as lease:
            yield lease
    except HearthError as exc:
        raise OllamaError(getattr(exc, "status", 500), str(exc)) from exc


async def _run(pool: Any, exchange: _Exchange) -> AsyncIterator[bytes]:
    """The answer of one chat or generate request as Ollama NDJSON lines. The first step yields
    b"" once the model is loaded and the engine has answered (or raises OllamaError), so the
    caller can still send an error status; the last line carries done and the figures."""
    timing = exchange.timing
    line = chat_line if exchange.chat else generate_line
    reason = "stop"
    async with contextlib.AsyncExitStack() as stack:
        lease = await stack.enter_async_context(_lease(pool, exchange))
        timing.loaded = time.perf_counter_ns()
        endpoint = lease.endpoint
        if exchange.tools.offered:
            if not lease.engine.prompt_info.get("tools"):
                raise OllamaError(400, f"“{exchange.name}” does not support tools: its chat template has no place "
                                       "for them. Use a model whose template takes tools (Qwen 2.5, Llama 3.1 and "
                                       "later, Mistral…).")
            exchange.body["tools"] = list(exchange.tools.tools)
        if exchange.url_path == "chat":
            url = stock_url(endpoint.base_url, "/hearth/v1/chat/completions")
        else:
            url = stock_url(endpoint.base_url, "/v1/completions")
        import httpx
        http = await stack.enter_async_context(net.async_client(
            local_only=True, timeout=httpx.Timeout(UPSTREAM_TIMEOUT_S, connect=10.0)))
        pieces = upstream_pieces(http, url, endpoint.api_key, exchange.body)
        stack.push_async_callback(pieces.aclose)
        counted = 0
        ready = False
        try:
            async for piece in pieces:
                if piece.usage:
                    timing.prompt_tokens = int(piece.usage.get("prompt_tokens") or 0)
                    timing.answer_tokens = int(piece.usage.get("completion_tokens") or 0)
                if piece.finish:
                    reason = done_reason(piece.finish)
                if not (piece.text or piece.thinking):
                    continue
                if not timing.first:
                    timing.first = time.perf_counter_ns()
                counted += 1
                exchange.answer.append(piece.text)
                exchange.thinking.append(piece.thinking)
                if exchange.tools.offered:
                    continue  # the answer may be a call: read whole, then sent (below)
                if not ready:
                    ready = True
                    yield b""
                yield ndjson(line(exchange.name, piece.text, piece.thinking))
        except OllamaError as exc:
            exchange.status = exc.status
            if not ready:
                raise
            yield ndjson({"error": str(exc)})  # the stream has begun: Ollama says it in a line
            return
        timing.ended = time.perf_counter_ns()
        if exchange.tools.offered:
            content, calls = parse_calls("".join(exchange.answer), exchange.tools.names)
            exchange.answer = [content]
            exchange.calls = [{"function": {"name": c["function"]["name"],
                                            "arguments": json.loads(c["function"]["arguments"])}} for c in calls]
            ready = True
            yield b""
            whole = chat_line(exchange.name, content, "".join(exchange.thinking))
            if exchange.calls:
                whole["message"]["tool_calls"] = exchange.calls
            yield ndjson(whole)
        if not timing.answer_tokens:  # the stock completion route streams no usage: a chunk is a token
            timing.answer_tokens = counted
            timing.prompt_tokens = await count_tokens(http, endpoint.base_url, endpoint.api_key,
                                                      exchange.body.get("prompt") or "")
        if not ready:
            yield b""
        last = line(exchange.name, "")
        last.update(timing.done_fields(reason))
        yield ndjson(last)
