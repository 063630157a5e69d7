"""Hearth's local API server: other programs on this computer (or, when the user allows it, on
the network) use the models Hearth keeps, through the OpenAI API and Ollama's.

The contract the window, the command line (`hearth serve`) and the tests rely on:

- `LocalServer(services, config)`: `await start()` binds and serves (raises `ServerError` with a
  sentence: port in use, network without a key…), `await stop()` ends it and unloads the models
  it loaded (never the window's). `address` is "http://127.0.0.1:4784" once started.
  `on_request` (settable) is called on the event loop's thread with a `RequestRecord` after
  each request; `loaded()` lists the models loaded for it now.
- `ServerConfig` comes from `Settings.server` (`ServerSettings`) plus the key, read from the
  keyring (`secrets` name `KEY_NAME`) or given to `hearth serve --api-key-stdin`.
- Models load just in time through `pool.ModelPool`: one engine per model, loaded once even when
  requests arrive together, shared with the window's engine when it holds the same model,
  unloaded after `ttl_s` idle seconds.

Submodules: pool (engines per model), app (the ASGI app: security, OpenAI routes),
local (LocalServer: uvicorn in the running loop), ollama (Ollama's routes), ledger (what apps
used, per day).
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop.core.errors import HearthError

KEY_NAME = "local-server"  # the keyring entry of the server's key (secrets.get/put)
LOOPBACK = "127.0.0.1"


class ServerError(HearthError):
    """The server cannot start or do what was asked; the message is a sentence for the user."""


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens. `host` is LOOPBACK unless the user chose the network ("0.0.0.0"
    or an address), which requires `api_key`. `origins`: web origins allowed by CORS (none: no
    browser page may call it). `ttl_s`: idle seconds before a model it loaded is unloaded."""

    host: str = LOOPBACK
    port: int = 4784
    api_key: str = ""
    origins: tuple[str, ...] = ()
    ttl_s: int = 600
    log_bodies: bool = False
    cloud: tuple[str, ...] = ()  # providers whose models (PROVIDER/MODEL) it may forward requests to


@dataclass(frozen=True)
class RequestRecord:
    """One request, for the window's live log and the ledger. Times are seconds since the epoch
    (`at`) and milliseconds (`duration_ms`); `client` is "address user-agent"; `body` is the
    prompt and answer only when the user asked for a log with bodies, else "". `processed_on`:
    "" when this machine answered, else the host the request was forwarded to, with the
    `bytes_sent` there (the ledger's "where it was processed", as for chat messages)."""

    at: float
    client: str
    method: str
    path: str
    model: str
    status: int
    tokens_in: int | None
    tokens_out: int | None
    duration_ms: float
    body: str = ""
    processed_on: str = ""
    bytes_sent: int = 0


def __getattr__(name: str):
    """LocalServer, ModelPool and create_app, imported when first asked for: the window imports
    this contract at start-up without paying for FastAPI and uvicorn until the server starts."""
    if name == "LocalServer":
        from desktop.core.server.local import LocalServer

        return LocalServer
    if name == "ModelPool":
        from desktop.core.server.pool import ModelPool

        return ModelPool
    if name == "create_app":
        from desktop.core.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
