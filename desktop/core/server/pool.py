"""The engines the local API server uses: one per model, loaded just in time, once, shared with
the window's engine when it holds the same model, unloaded after the idle time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from desktop.core.engine import Engine, EngineError
from desktop.core.errors import HearthError
from desktop.core.providers import Endpoint
from desktop.core.server import ServerError
from desktop.core.settings import LoadOptions
from desktop.core.store import ModelRecord

log = logging.getLogger(__name__)


LONGEST_TTL_S = 10 * 365 * 86400.0  # a longer idle time is "keep it loaded"


def context_for(model: ModelRecord, options: LoadOptions) -> int:
    """The context, in tokens, the model is loaded with under `options` (engine.plan_load's rule:
    the asked length, 4096 when unset, never more than the model was trained for)."""
    n_ctx = options.n_ctx if options.n_ctx > 0 else 4096
    return min(n_ctx, model.context_length) if model.context_length else n_ctx


class ModelUnavailable(ServerError):
    """A request's model cannot be used: `status` is the HTTP status to answer with (404: no such
    model installed; 507: it does not fit in memory; 500: it failed to load), the message a
    sentence for the user of the calling app."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Lease:
    """What one request needs to call a model's engine, for as long as it holds the model's turn.
    `endpoint` is the engine child's (as `Engine.endpoint()`: Hearth's streaming route,
    `http://127.0.0.1:PORT/hearth/v1`, and its per-launch key); `openai_base` is the same child's
    stock OpenAI routes (llama-cpp-python's server: `…/v1`); `n_ctx` is the context it was loaded
    with, in tokens; `shared` is True when it is the window's engine."""

    model: ModelRecord
    endpoint: Endpoint
    n_ctx: int
    engine: Engine
    shared: bool = False

    @property
    def root(self) -> str:
        """The engine child's address, `http://127.0.0.1:PORT`."""
        return self.endpoint.base_url.rsplit("/hearth/v1", 1)[0]

    @property
    def openai_base(self) -> str:
        return f"{self.root}/v1"


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded for the server now, for the window's Local server page and Ollama's
    /api/ps. `idle_until`: when it will be unloaded (seconds since the epoch; None while in use,
    when shared with the window, or when kept until the server stops)."""

    model: ModelRecord
    n_ctx: int
    shared: bool
    busy: int
    idle_until: float | None
    embedding: bool = False  # loaded in llama.cpp's embedding mode

    @property
    def id(self) -> str:
        return self.model.id

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def expires_at(self) -> float | None:
        return self.idle_until


@dataclass
class _Slot:
    engine: Engine
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # FIFO: requests answered in turn
    users: int = 0  # requests holding or waiting for the turn
    ttl_s: float = 600.0
    idle_until: float | None = None
    unload: asyncio.Task | None = None


def slot_key(model_id: str, embedding: bool) -> str:
    """The pool's key for a model's engine: its id, or "ID#embedding" for embedding mode."""
    return f"{model_id}#embedding" if embedding else model_id


class ModelPool:
    """Engines for the server's requests, keyed by installed model id.

    `async with pool.use("smollm2-135m-instruct") as lease:` waits for the model's turn (requests
    for one model are answered one at a time, in the order they came: the engine child serves one
    at a time), loading it first if needed (once, however many requests arrive together), with
    the model's load options from `services.settings.load`. When the window's engine
    (`services.engine`) holds the same model with the same options, that engine is used and is
    never unloaded from here. A model the pool loaded is unloaded `ttl_s` idle seconds after its
    last request (per request `ttl_s` wins; 0: at once; a negative value: kept until `close()`).

    Raises ModelUnavailable: 404 for a model that is not installed, 507 for one that does not
    fit in memory (the same estimate as the window: `engine.plan_load`), 500 if it fails to load.
    `loads` counts the engine loads this pool started."""

    def __init__(self, services, *, ttl_s: float = 600.0) -> None:
        self.services = services
        self.ttl_s = ttl_s
        self.loads = 0
        self._slots: dict[str, _Slot] = {}
        self._window_turn = asyncio.Lock()  # the window's engine serves one request at a time too
        window: Engine = services.engine
        window.donor, window.make_room = self.hand_over, self.release_idle

    def model(self, ref: str) -> ModelRecord:
        """An installed model by id (or name, as `Library.get` finds it). Paths are never taken:
        a client must not make Hearth open any file it names."""
        if not isinstance(ref, str) or not ref.strip():
            raise ModelUnavailable("The request names no model: give an installed model's id (GET /v1/models "
                                   "lists them).", 400)
        try:
            return self.services.library.require_file(self.services.library.get(ref))
        except HearthError as exc:
            raise ModelUnavailable(str(exc), 404) from exc

    @contextlib.asynccontextmanager
    async def use(self, model_ref: str, ttl_s: float | None = None, *,
                  embedding: bool = False) -> AsyncIterator[Lease]:
        """The model's turn, loaded: see the class. Yields a Lease. `embedding`: the model in
        llama.cpp's embedding mode, in an engine child of its own (never the window's), which
        answers the stock `/v1/embeddings` route (`lease.openai_base`)."""
        model = self.model(model_ref)
        options = self.services.settings.load
        window: Engine = self.services.engine
        if not embedding and window.loaded_with(model, options):
            async with self._window_turn:
                if window.loaded_with(model, options):  # still, after the wait
                    yield Lease(model=model, endpoint=window.endpoint(), n_ctx=window.n_ctx,
                                engine=window, shared=True)
                    return
        key = slot_key(model.id, embedding)
        slot = self._slots.get(key)
        if slot is None:
            engine = Engine(self.services.paths, embedding=embedding,
                            log_name=f"engine-server-{model.id}{'-embedding' if embedding else ''}")
            engine.on_template_hung = window.on_template_hung
            slot = self._slots[key] = _Slot(engine=engine, ttl_s=self.ttl_s)
        slot.users += 1
        if ttl_s is not None:
            # Beyond what a clock can count (1e308, infinity): kept until the server stops, as -1.
            slot.ttl_s = float(ttl_s) if ttl_s <= LONGEST_TTL_S else -1.0
        if slot.unload is not None:
            slot.unload.cancel()
            slot.unload = None
        slot.idle_until = None
        try:
            async with slot.turn:
                if not slot.engine.loaded_with(model, options):
                    self.loads += 1
                    log.info("loading %s for the local server", model.id)
                    try:
                        try:
                            await slot.engine.ensure(model, options)
                        except EngineError as exc:  # idle models may go to make room, once
                            if "memory" not in str(exc) or not await self.release_idle(keep=key):
                                raise
                            await slot.engine.ensure(model, options)
                    except EngineError as exc:
                        status = 507 if "memory" in str(exc) else 500
                        raise ModelUnavailable(str(exc), status) from exc
                    except HearthError as exc:  # a damaged or unreadable file
                        raise ModelUnavailable(str(exc), 500) from exc
                yield Lease(model=model, endpoint=slot.engine.endpoint(), n_ctx=slot.engine.n_ctx,
                            engine=slot.engine)
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(key) is slot:
                self._schedule_unload(key, slot)

    def hand_over(self, model: ModelRecord, options: LoadOptions) -> Engine | None:
        """The window asks for a model: the engine the pool loaded for it, if it holds the model
        with these options and no request is using or waiting for it, is handed over (the pool
        forgets it; later requests share it as the window's). None otherwise."""
        key = slot_key(model.id, False)
        slot = self._slots.get(key)
        if slot is None or slot.users or not slot.engine.loaded_with(model, options):
            return None
        del self._slots[key]
        if slot.unload is not None:
            slot.unload.cancel()
        log.info("handing %s over to the window: loaded once, shared", model.id)
        return slot.engine

    async def release_idle(self, keep: str | None = None) -> bool:
        """Unload every engine the pool loaded that no request is using or waiting for (but the
        one keyed `keep`), to make room for another model. True if any was unloaded."""
        idle = [(key, slot) for key, slot in self._slots.items() if not slot.users and key != keep]
        for key, slot in idle:
            del self._slots[key]
            if slot.unload is not None:
                slot.unload.cancel()
            log.info("unloading %s to make room", key)
            await slot.engine.stop()
        return bool(idle)

    def _schedule_unload(self, model_id: str, slot: _Slot) -> None:
        if slot.ttl_s < 0:
            return
        slot.idle_until = time.time() + slot.ttl_s
        slot.unload = asyncio.get_running_loop().create_task(self._unload_later(model_id, slot))

    async def _unload_later(self, model_id: str, slot: _Slot) -> None:
        await asyncio.sleep(slot.ttl_s)
        if slot.users == 0 and self._slots.get(model_id) is slot:
            del self._slots[model_id]
            log.info("unloading %s: idle for %.0f s", model_id, slot.ttl_s)
            await slot.engine.stop()

    def loaded(self) -> list[LoadedModel]:
        """The models loaded for the server now (and the window's, while the server shares it)."""
        found = []
        for slot in self._slots.values():
            model = slot.engine.model
            if model is not None and slot.engine.is_alive():
                found.append(LoadedModel(model=model, n_ctx=slot.engine.n_ctx, shared=False,
                                         busy=slot.users, idle_until=slot.idle_until,
                                         embedding=slot.engine.embedding))
        window: Engine = self.services.engine
        if self._window_turn.locked() and window.model is not None:
            found.append(LoadedModel(model=window.model, n_ctx=window.n_ctx,
                                     shared=True, busy=1, idle_until=None))
        return found

    async def unload(self, model_ref: str) -> bool:
        """Unload the engines the pool loaded for a model (chat and embedding mode), now, unless a
        request is using one (then it goes when that request ends). False when the pool holds no
        such model (the window's is never unloaded from here)."""
        try:
            model_id = self.model(model_ref).id
        except ModelUnavailable:
            model_id = model_ref
        found = False
        for key in (slot_key(model_id, False), slot_key(model_id, True)):
            slot = self._slots.get(key)
            if slot is None:
                continue
            found = True
            if slot.users:
                slot.ttl_s = 0.0
                continue
            del self._slots[key]
            if slot.unload is not None:
                slot.unload.cancel()
            await slot.engine.stop()
        return found

    def engine_pids(self) -> list[int]:
        """The process ids of the engine children this pool started and still runs."""
        return [slot.engine.pid for slot in self._slots.values() if slot.engine.is_alive() and slot.engine.pid]

    async def close(self) -> None:
        """Unload every model the pool loaded (never the window's engine)."""
        window: Engine = self.services.engine
        if window.donor == self.hand_over:
            window.donor = window.make_room = None
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            if slot.unload is not None:
                slot.unload.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await slot.unload
            await slot.engine.stop()
