"""One streaming chat client for every endpoint: Hearth's own engine, any OpenAI-compatible
server (cloud or self-hosted) and Anthropic's Messages API.

All of them yield plain text deltas, report usage the same way, and fail with the same
ProviderError subclasses, whose message a person can act on. Rate limits and server errors are
retried before the first word arrives (waiting as long as Retry-After says); once words have
arrived, a failure ends the answer and what arrived is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from desktop.core import net, secrets
from desktop.core.errors import HearthError
from desktop.core.settings import Sampling

if TYPE_CHECKING:  # imported where used: httpx costs ~0.1 s, paid after the window shows
    import httpx

log = logging.getLogger(__name__)

MAX_RETRIES = 3
LONGEST_WAIT_S = 120.0  # a Retry-After longer than this is reported, not waited out
CHARS_PER_TOKEN = 4  # for estimates, when an endpoint reports no usage


class ProviderError(HearthError):
    pass


class ConnectionLost(ProviderError):
    """The endpoint could not be reached or the stream broke off."""


class ContextOverflow(ProviderError):
    pass


class KeyRefused(ProviderError):
    pass


class ModelNotFound(ProviderError):
    pass


class RateLimited(ProviderError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(ProviderError):
    pass


class TimedOut(ProviderError):
    pass


@dataclass(frozen=True)
class Usage:
    """Token counts for one answer: as the endpoint reported them, or estimated from the text."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False


@dataclass(frozen=True)
class Delta:
    """A piece of an answer as it arrives: `text` is `delta.content` (which may still hold
    `<think>` tags: see reasoning.py), `reasoning` is `delta.reasoning_content` (llama-server, LM
    Studio, DeepSeek's API) or an Anthropic thinking block."""

    text: str = ""
    reasoning: str = ""


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # OpenAI-compatible: up to and including /v1
    api_key: str
    model: str
    provider: str  # who runs it: "local" for Hearth's own engine, else the provider's name
    processed_on: str  # where the words are processed: "this machine" or a host name
    local: bool  # Hearth's own engine: loopback only
    kind: str = "openai"  # or "anthropic"
    label: str = ""  # the provider's name for people
    timeout_s: float = 600.0  # longest wait for the next bytes of an answer

    @property
    def who(self) -> str:
        return self.label or self.processed_on


def api_url(base_url: str, path: str) -> str:
    """A route under an endpoint's base URL, the base URL's own query kept after it
    (`…/v1?api-version=X` + `/chat/completions` is `…/v1/chat/completions?api-version=X`)."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, fragment=""))


def split_query(base_url: str) -> tuple[str, dict[str, str]]:
    """The base URL without its query, and the query's parameters."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(query="", fragment="")), dict(parse_qsl(parts.query, keep_blank_values=True))


def request_body(messages: list[dict[str, str]], sampling: Sampling, *, local: bool = True) -> dict[str, Any]:
    """Sampling settings as OpenAI-compatible parameters; llama.cpp's extras only for our engine
    (cloud APIs refuse parameters they do not know)."""
    body: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if local:
        body.update(top_k=sampling.top_k, min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty)
    if sampling.seed >= 0:
        body["seed"] = sampling.seed
    return body


def _is_high_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udbff"


class Utf16Joiner:
    """A stream's text made valid Unicode. JSON writes a character beyond U+FFFF as two \\u
    escapes (a UTF-16 surrogate pair, RFC 8259 §7), and some servers split the pair across two
    events: the first half is held until the second arrives. A half with no partner becomes
    U+FFFD, as a text decoder would show it: such a string cannot be printed or saved."""

    def __init__(self) -> None:
        self._held = ""

    def __call__(self, text: str) -> str:
        text, self._held = self._held + text, ""
        if text and _is_high_surrogate(text[-1]):
            text, self._held = text[:-1], text[-1]
        if any("\ud800" <= c <= "\udfff" for c in text):
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text

    def flush(self) -> str:
        """What is still held at the end of the stream (a lone half becomes U+FFFD)."""
        held, self._held = self._held, ""
        return "\ufffd" if held else ""


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0


def error_for(status: int | None, detail: str, endpoint: Endpoint, headers: httpx.Headers | None = None) -> ProviderError:
    """The sentence for an endpoint's error answer (a key it echoes is masked)."""
    who = endpoint.who
    detail = secrets.redact(detail)
    if "exceed context window" in detail or "context_length_exceeded" in detail:
        return ContextOverflow("This conversation no longer fits in the model's context. Start a new chat, "
                               "or raise the context length in the model's settings.")
    if status in (401, 403):
        model = f", or that your account may use “{endpoint.model}”" if endpoint.model else ""
        return KeyRefused(f"{who} refused the key ({status}). Check the key in Providers{model}.")
    if status == 404:
        return ModelNotFound(f"{who} does not know the model “{endpoint.model}” (404). Pick another of its "
                             "models in Providers.")
    if status == 429:
        wait = retry_after(headers)
        return RateLimited(f"{who} is limiting requests (429): try again in {wait:.0f} s." if wait else
                           f"{who} is limiting requests (429): try again in a minute.", wait)
    if status is not None and status >= 500:
        return ServerError(f"{who} had a problem of its own ({status}). Try again in a moment.")
    where = f" ({status})" if status else ""
    return ProviderError(f"{who} answered with an error{where}: {detail}")


def retry_after(headers: httpx.Headers | None) -> float:
    value = (headers or {}).get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 0.0


def _message(data: dict[str, Any]) -> str:
    """The message in an OpenAI- or Anthropic-style error body: {"error": {"message": ...}}."""
    inner = data.get("error", data)
    if isinstance(inner, dict):
        return str(inner.get("message") or inner.get("detail") or inner)
    return str(inner)


def _error_text(body: bytes | str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return _message(data)
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    return text.strip()[:300] or "no details"


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return _message(body)
    return str(getattr(exc, "message", exc))


class ChatClient:
    """Streams answers from one endpoint. `open_client` picks the subclass for its API."""

    def __init__(self, endpoint: Endpoint) -> None:
        import httpx
        self.endpoint = endpoint
        self.usage: Usage | None = None  # set at the end of a stream
        self.finish_reason: str | None = None  # as the endpoint said: "stop", "length", …
        self.notices: list[str] = []  # sentences Hearth's engine sent about the prompt (hearth_notice)
        self.bytes_sent = 0  # to hosts other than this machine
        self.on_wait: Callable[[float, str], None] | None = None  # (seconds, why) before a retry
        self._http = net.async_client(local_only=endpoint.local,
                                      timeout=httpx.Timeout(endpoint.timeout_s, connect=10.0),
                                      on_sent=self._count)

    def _count(self, host: str, nbytes: int) -> None:
        if not net.is_loopback(host):
            self.bytes_sent += nbytes

    async def aclose(self) -> None:
        await self._http.aclose()

    async def stream(self, messages: list[dict[str, str]], sampling: Sampling) -> AsyncIterator[Delta]:
        """Yield the answer as it arrives, in Deltas. Leaving the loop early closes the connection,
        which makes the endpoint stop generating."""
        self.usage = None
        self.finish_reason = None
        attempt = 0
        while True:
            got_text = False
            try:
                # Closed here, in the task reading the answer, however it ends (see _attempt).
                async with aclosing(self._attempt(messages, sampling)) as deltas:
                    async for text in deltas:
                        got_text = True
                        yield text
                return
            except (RateLimited, ServerError) as exc:
                if got_text or attempt >= MAX_RETRIES:
                    raise
                attempt += 1
                if isinstance(exc, RateLimited):
                    wait = exc.retry_after or 2.0 * attempt
                    if wait > LONGEST_WAIT_S:
                        raise
                    why = "rate limit"
                else:
                    wait, why = min(8.0, 2 ** (attempt - 1)) * random.uniform(0.75, 1.25), "server error"
                log.info("%s: %s; retry %d in %.1f s", self.endpoint.provider, why, attempt, wait)
                if self.on_wait:
                    self.on_wait(wait, why)
                await asyncio.sleep(wait)

    async def _attempt(self, messages: list[dict[str, str]], sampling: Sampling) -> AsyncIterator[Delta]:
        raise NotImplementedError

    def _failure(self, exc: BaseException, got_text: bool) -> ProviderError:
        """The ProviderError for an exception from an SDK or httpx."""
        import httpx
        status = getattr(exc, "status_code", None)
        if status is not None:
            return error_for(status, _detail(exc), self.endpoint, getattr(getattr(exc, "response", None), "headers", None))
        cause: BaseException | None = exc
        while cause is not None:  # the Anthropic SDK wraps what the HTTP client raised
            if isinstance(cause, net.OfflineError):
                return ProviderError(str(cause))
            cause = cause.__cause__ or cause.__context__
        name = type(exc).__name__
        who = self.endpoint.who
        if "Timeout" in name or isinstance(exc, httpx.TimeoutException):
            return TimedOut(f"{who} did not answer within {self.endpoint.timeout_s:g} s. Try again, or "
                            "pick a faster model.")
        if got_text:
            return ConnectionLost(f"The connection to {self.endpoint.processed_on} broke off; the answer is "
                                  "incomplete.")
        if self.endpoint.local:
            return ConnectionLost(f"The connection to {self.endpoint.processed_on} broke off.")
        host = httpx.URL(self.endpoint.base_url).host
        return ConnectionLost(f"Hearth could not reach {who} ({host}). Check your network connection and the "
                              "provider's address, then try again.")

    def _estimate(self, messages: list[dict[str, str]], answer: str) -> Usage:
        prompt = sum(estimate_tokens(m["content"]) + 4 for m in messages)
        return Usage(prompt, estimate_tokens(answer), estimated=True)


class OpenAIClient(ChatClient):
    """Any OpenAI-compatible endpoint, Hearth's own engine included. The protocol (server-sent
    events, one `chat.completion.chunk` per event) is read here with Hearth's HTTP client: the
    SDK built a typed object for every chunk, which cost more CPU than everything else the app did
    while streaming, and on a laptop that CPU is taken from llama.cpp (tests/bench/stream.py)."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._url = api_url(endpoint.base_url, "/chat/completions")
        self._headers = {"Authorization": f"Bearer {endpoint.api_key or 'none'}", "Accept": "text/event-stream"}

    async def _attempt(self, messages: list[dict[str, str]], sampling: Sampling) -> AsyncIterator[Delta]:
        import httpx
        body = {"model": self.endpoint.model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True},
                **request_body(messages, sampling, local=self.endpoint.local)}
        parts: list[str] = []
        finished = False
        words, thoughts = Utf16Joiner(), Utf16Joiner()
        try:
            async with self._http.stream("POST", self._url, json=body, headers=self._headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_for(response.status_code, _error_text(response.content), self.endpoint,
                                    response.headers)
                # httpx reads lines through a chain of async generators down to httpcore's
                # connection. One dropped while suspended (an error event, a line that is not
                # JSON, a reader that stopped early) is finalized by the garbage collector,
                # outside any task, where httpcore's clean-up fails and Python prints "Exception
                # ignored in: <async_generator …>". So the response is closed here, in this task,
                # and then the chain, which has nothing left to do.
                reader = response.aiter_lines()
                try:
                    async for line in reader:
                        if not line.startswith("data:"):
                            continue  # blank separators, comments (": keep-alive"), event names
                        data = line[5:].strip()
                        if data == "[DONE]":
                            finished = True  # the stream's own end, even from a server that sent no finish_reason
                            continue  # read on to the end: the connection is then free for the next answer
                        chunk = json.loads(data)
                        if chunk.get("error"):
                            raise error_for(None, _message(chunk), self.endpoint)
                        if chunk.get("hearth_notice") and self.endpoint.local:
                            self.notices.append(str(chunk["hearth_notice"]))
                        usage = chunk.get("usage")
                        if usage:
                            self.usage = Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
                        choices = chunk.get("choices")
                        if not choices:
                            continue
                        reason = choices[0].get("finish_reason")
                        if reason is not None:
                            finished, self.finish_reason = True, str(reason)
                        delta = choices[0].get("delta") or {}
                        text = delta.get("content") or ""
                        # llama-server and LM Studio say reasoning_content; some servers say reasoning.
                        thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
                        text = words(text) if isinstance(text, str) else ""
                        thought = thoughts(thought) if isinstance(thought, str) else ""
                        if text or thought:
                            parts.append(text + thought)
                            yield Delta(text, thought)
                    text, thought = words.flush(), thoughts.flush()
                    if text or thought:
                        yield Delta(text, thought)
                finally:
                    await response.aclose()
                    await reader.aclose()
        except (httpx.HTTPError, net.OfflineError, ValueError) as exc:  # ValueError: not JSON
            raise self._failure(exc, bool(parts)) from exc
        if not finished:  # the stream ended without saying the answer was done
            raise self._failure(ConnectionResetError(), bool(parts))
        if self.usage is None:
            self.usage = self._estimate(messages, "".join(parts))


class AnthropicClient(ChatClient):
    """Anthropic's Messages API through its official SDK (with Hearth's HTTP client)."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        import anthropic

        base_url, query = split_query(endpoint.base_url)
        self._client = anthropic.AsyncAnthropic(base_url=base_url, api_key=endpoint.api_key or "none",
                                                default_query=query or None, http_client=self._http,
                                                max_retries=0)

    async def aclose(self) -> None:
        await self._client.close()

    async def _attempt(self, messages: list[dict[str, str]], sampling: Sampling) -> AsyncIterator[Delta]:
        import anthropic
        import httpx

        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        options: dict[str, Any] = {"temperature": min(sampling.temperature, 1.0)}
        if system:
            options["system"] = system
        parts: list[str] = []
        try:
            async with self._client.messages.stream(model=self.endpoint.model, messages=turns,
                                                    max_tokens=sampling.max_tokens, **options) as stream:
                async for event in stream:
                    if event.type != "content_block_delta":
                        continue
                    if event.delta.type == "text_delta" and event.delta.text:
                        parts.append(event.delta.text)
                        yield Delta(text=event.delta.text)
                    elif event.delta.type == "thinking_delta" and event.delta.thinking:
                        parts.append(event.delta.thinking)
                        yield Delta(reasoning=event.delta.thinking)
                final = await stream.get_final_message()
                self.finish_reason = {"max_tokens": "length", "end_turn": "stop"}.get(final.stop_reason or "",
                                                                                     final.stop_reason)
                if final.usage is not None:
                    self.usage = Usage(final.usage.input_tokens, final.usage.output_tokens)
        except (anthropic.APIError, httpx.HTTPError, net.OfflineError) as exc:
            raise self._failure(exc, bool(parts)) from exc
        if final.stop_reason is None:  # the stream ended before the message did
            raise self._failure(ConnectionResetError(), bool(parts))
        if self.usage is None:
            self.usage = self._estimate(messages, "".join(parts))


def open_client(endpoint: Endpoint) -> ChatClient:
    return AnthropicClient(endpoint) if endpoint.kind == "anthropic" else OpenAIClient(endpoint)
