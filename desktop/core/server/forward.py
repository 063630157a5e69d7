"""Cloud models through the local API server, only where the user allowed it.

A request's `model` written `PROVIDER/MODEL` (a provider the user added, as in Compare) is sent
to that provider only when the user allowed the server to forward to it (`ServerConfig.cloud`,
from the Local server page or `hearth serve --allow-cloud NAME`) and offline mode is off;
otherwise it is refused before a byte leaves, with a sentence. The words go through Hearth's own
provider clients (providers.py: OpenAI-compatible and Anthropic APIs, retries, errors in
sentences, the bytes sent counted), and the record names where they went, for the ledger.

Only text chat is forwarded: tools, JSON grammars and raw completions are refused with a 400,
since each provider's API differs in them and a half-kept request is worse than a clear no.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from desktop.core import cloud, net, providers
from desktop.core.errors import HearthError
from desktop.core.settings import Sampling

# What a provider's refusal becomes for the calling app: HTTP status and OpenAI error code.
STATUS_FOR = ((providers.ContextOverflow, 400, "context_length_exceeded"),
              (providers.ModelNotFound, 404, "model_not_found"),
              (providers.RateLimited, 429, "rate_limit_exceeded"),
              (providers.KeyRefused, 502, "provider_refused_key"),
              (providers.TimedOut, 504, "provider_timeout"))
NOT_FORWARDED = ("tools", "functions", "response_format", "grammar")


class ForwardRefused(HearthError):
    """The request is not sent: `status` and `code` for the calling app, the message a sentence."""

    def __init__(self, message: str, status: int, code: str, param: str | None = "model") -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


@dataclass
class Forwarded:
    """One forwarded answer as it arrives: `deltas` to read; afterwards `usage` (prompt,
    completion tokens), `finish` and `bytes_sent` (to the provider's host)."""

    target: cloud.CloudTarget
    deltas: AsyncIterator[providers.Delta]
    client: providers.ChatClient

    @property
    def processed_on(self) -> str:
        return self.target.provider.processed_on

    @property
    def bytes_sent(self) -> int:
        return self.client.bytes_sent


def allowed_targets(services, allowed: tuple[str, ...]) -> list[cloud.CloudTarget]:
    """The cloud models the server offers (GET /v1/models): those of the allowed providers, as
    last listed; none while offline mode is on."""
    if services.settings.offline:
        return []
    return [t for t in services.providers.targets() if t.provider.name in allowed]


def target_for(services, ref: Any) -> cloud.CloudTarget | None:
    """The cloud target a request's model names (`PROVIDER/MODEL` of a provider the user added),
    or None for a local model."""
    if not isinstance(ref, str):
        return None
    try:
        return services.providers.target(ref)
    except HearthError:  # providers.json unreadable: no provider, nothing can be sent
        return None


def check(services, target: cloud.CloudTarget, allowed: tuple[str, ...], body: dict[str, Any]) -> None:
    """Raise ForwardRefused unless `body` may go to `target` now (see the module)."""
    label = target.provider.label
    if target.provider.name not in allowed:
        raise ForwardRefused(f"Hearth's server does not send requests to {label}: allow it in Hearth's Local server "
                             "page (Cloud models) first. Nothing was sent.", 403, "cloud_not_allowed")
    if services.settings.offline:
        raise ForwardRefused(f"Offline mode is on, so nothing is sent to {label}. Nothing was sent.", 403,
                             "offline")
    for name in NOT_FORWARDED:
        if body.get(name):
            raise ForwardRefused(f"{name} is not forwarded to cloud models through Hearth's server; call {label} "
                                 "directly for it. Nothing was sent.", 400, "not_forwarded", name)


def _sampling(body: dict[str, Any]) -> Sampling:
    defaults = Sampling()
    asked = body.get("max_completion_tokens", body.get("max_tokens"))
    return Sampling(temperature=float(body.get("temperature", defaults.temperature)),
                    top_p=float(body.get("top_p", defaults.top_p)),
                    max_tokens=int(asked) if isinstance(asked, int) and asked > 0 else defaults.max_tokens,
                    seed=int(body["seed"]) if isinstance(body.get("seed"), int) else -1)


def start(target: cloud.CloudTarget, messages: list[dict[str, Any]], body: dict[str, Any]) -> Forwarded:
    """Open the provider's client and begin the answer. Raises ForwardRefused when the provider
    has no key (nothing is sent)."""
    try:
        endpoint = cloud.endpoint(target)
    except cloud.ProviderSetupError as exc:
        raise ForwardRefused(str(exc), 502, "provider_needs_key") from None
    client = providers.open_client(endpoint)
    turns = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages
             if m["role"] in ("system", "user", "assistant")]
    return Forwarded(target=target, deltas=client.stream(turns, _sampling(body)), client=client)


def refusal(exc: Exception) -> ForwardRefused:
    """A provider's error (or a broken connection) as what the calling app is told."""
    if isinstance(exc, net.OfflineError):
        return ForwardRefused(str(exc), 403, "offline")
    for kind, status, code in STATUS_FOR:
        if isinstance(exc, kind):
            return ForwardRefused(str(exc), status, code)
    return ForwardRefused(str(exc) or "The provider did not answer.", 502, "provider_failed")


async def answer(forwarded: Forwarded) -> dict[str, Any]:
    """The whole answer as OpenAI's chat.completion object. Raises ForwardRefused."""
    text, thought = [], []
    try:
        async for delta in forwarded.deltas:
            text.append(delta.text)
            thought.append(delta.reasoning)
    except (providers.ProviderError, net.OfflineError) as exc:
        raise refusal(exc) from None
    finally:
        await forwarded.client.aclose()
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if "".join(thought):
        message["reasoning_content"] = "".join(thought)
    usage = forwarded.client.usage
    tokens_in, tokens_out = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": forwarded.target.id,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": forwarded.client.finish_reason or "stop"}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                      "total_tokens": tokens_in + tokens_out}}


async def events(forwarded: Forwarded, want_usage: bool) -> AsyncIterator[bytes]:
    """The answer as OpenAI's server-sent events while it arrives; a provider's failure after the
    first words is an error event (the answer is then known to be cut)."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": forwarded.target.id}

    def event(data: dict[str, Any]) -> bytes:
        return f"data: {json.dumps({**base, **data})}\n\n".encode()

    try:
        yield event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        async for delta in forwarded.deltas:
            part = {"content": delta.text} if delta.text else {}
            if delta.reasoning:
                part["reasoning_content"] = delta.reasoning
            if part:
                yield event({"choices": [{"index": 0, "delta": part, "finish_reason": None}]})
        yield event({"choices": [{"index": 0, "delta": {}, "finish_reason": forwarded.client.finish_reason or "stop"}]})
        usage = forwarded.client.usage
        if want_usage and usage:
            yield event({"choices": [], "usage": {"prompt_tokens": usage.prompt_tokens,
                                                  "completion_tokens": usage.completion_tokens,
                                                  "total_tokens": usage.prompt_tokens + usage.completion_tokens}})
        yield b"data: [DONE]\n\n"
    except (providers.ProviderError, net.OfflineError) as exc:
        refused = refusal(exc)
        yield ("data: " + json.dumps({"error": {"message": str(refused), "type": "server_error", "param": None,
                                                "code": refused.code}}) + "\n\n").encode()
    finally:
        await forwarded.client.aclose()
