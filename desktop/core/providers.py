"""One streaming chat client for every OpenAI-compatible endpoint (local engine or cloud).

It yields plain text deltas; errors come out as ProviderError subclasses whose message a
person can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from desktop.core import net
from desktop.core.errors import HearthError
from desktop.core.settings import Sampling


class ProviderError(HearthError):
    pass


class ConnectionLost(ProviderError):
    """The endpoint could not be reached or the stream broke off."""


class ContextOverflow(ProviderError):
    pass


@dataclass(frozen=True)
class Usage:
    """Token counts for one answer, as the endpoint reported them."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # up to and including /v1
    api_key: str
    model: str
    provider: str  # who runs it: "local" for Hearth's own engine
    processed_on: str  # where the words are processed: "this machine" or a host name
    local: bool


def request_body(messages: list[dict[str, str]], sampling: Sampling) -> dict[str, Any]:
    """Sampling settings as OpenAI-compatible parameters; llama.cpp's extras go in extra_body."""
    body: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "extra_body": {
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
        },
    }
    if sampling.seed >= 0:
        body["seed"] = sampling.seed
    return body


class ChatClient:
    def __init__(self, endpoint: Endpoint) -> None:
        import openai  # imported here: it is heavy, and the window must show before it is needed

        self.endpoint = endpoint
        self.usage: Usage | None = None  # set when the endpoint reports it, at the end of a stream
        self._http = net.async_client(local_only=endpoint.local,
                                      timeout=httpx.Timeout(600.0, connect=10.0))
        self._client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key,
                                          http_client=self._http, max_retries=0)

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, messages: list[dict[str, str]], sampling: Sampling) -> AsyncIterator[str]:
        """Yield the answer's text as it arrives. Leaving the loop early closes the connection,
        which makes the engine stop generating."""
        import openai

        self.usage = None
        try:
            stream = await self._client.chat.completions.create(
                model=self.endpoint.model, messages=messages, stream=True,
                stream_options={"include_usage": True}, **request_body(messages, sampling),
            )
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        self.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    if not chunk.choices:
                        continue
                    text = chunk.choices[0].delta.content
                    if text:
                        yield text
        except (openai.APIConnectionError, httpx.TransportError) as exc:
            raise ConnectionLost(f"The connection to {self.endpoint.processed_on} broke off.") from exc
        except openai.APIError as exc:
            detail = _error_detail(exc)
            if "exceed context window" in detail:
                raise ContextOverflow(
                    "This conversation no longer fits in the model's context. Start a new chat, "
                    "or raise the context length in the model's settings."
                ) from exc
            status = getattr(exc, "status_code", None)
            where = f" ({status})" if status else ""
            raise ProviderError(f"The model answered with an error{where}: {detail}") from exc


def _error_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("detail") or inner)
        return str(inner)
    return str(getattr(exc, "message", exc))
