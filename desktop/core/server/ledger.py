"""The data ledger's "used by apps on this computer": every request the local API server answers
is counted into the store's per-day rows (store.ApiUse), and kept with its prompt and answer
only while the user asks for a log with bodies. A write never fails or answers a request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from desktop.core.server import RequestRecord
from desktop.core.store import THIS_MACHINE, ApiRequest, ApiUse, Store, StoreError

log = logging.getLogger(__name__)

# While another program holds the database locked, what apps used waits in memory and is tried
# again after these pauses (growing, in seconds): the event loop never waits for the lock again.
RETRY_PAUSE_S = (0.25, 5.0)
# Bodies waiting for a locked database beyond this many: the oldest are dropped (their figures stay).
MAX_WAITING_BODIES = 500
CLOSE_WAIT_S = 2.0  # how long closing tries to save what still waits, then says what is lost


def app_of(client: str) -> tuple[str, str]:
    """A RequestRecord's `client` ("address user-agent") as (address, user agent): the address
    has no spaces; a user agent may have any."""
    address, _, agent = client.partition(" ")
    return address, agent.strip()


def use_of(entry: RequestRecord) -> ApiUse:
    """One request as a per-day row of its own: the local date of `entry.at`, the app, model,
    where it was processed, tokens (unknown counts as 0), failed when its status is 400 or more."""
    address, agent = app_of(entry.client)
    return ApiUse(day=time.strftime("%Y-%m-%d", time.localtime(entry.at)), address=address, user_agent=agent,
                  model=entry.model, processed_on=entry.processed_on or THIS_MACHINE, requests=1,
                  failed=int(entry.status >= 400), tokens_in=entry.tokens_in or 0, tokens_out=entry.tokens_out or 0,
                  bytes_sent=entry.bytes_sent, last_at=entry.at)


def logged_request(entry: RequestRecord) -> ApiRequest:
    address, agent = app_of(entry.client)
    return ApiRequest(at=entry.at, address=address, user_agent=agent, method=entry.method, path=entry.path,
                      model=entry.model, status=entry.status, tokens_in=entry.tokens_in,
                      tokens_out=entry.tokens_out, duration_ms=entry.duration_ms, body=entry.body)


class ApiLedger:
    """Keeps what apps used in `store`. `add(entry)` is called on the event loop's thread after
    each request: it saves at once (one upsert in one transaction: a median of 0.2-2.8 ms and at
    most ~10 ms with its fsync, measured on a shared cloud disk) so the row is in the store
    before the request's listeners hear of it. While another
    program holds the database locked, the figures wait in memory (merged per row) and a task
    saves them in a worker thread after growing pauses; nothing is lost unless the server is
    closed while the lock lasts (then the log says how many requests went uncounted).

    `keep_bodies()` is asked for each request that carries a body: False drops it (figures only)."""

    def __init__(self, store: Store, keep_bodies: Callable[[], bool]) -> None:
        self.store = store
        self.keep_bodies = keep_bodies
        self._uses: dict[tuple[str, str, str, str, str], ApiUse] = {}
        self._bodies: list[ApiRequest] = []
        self._retry: asyncio.Task | None = None
        self._wake = asyncio.Event()  # set when closing: stop pausing between tries
        self._closing: float | None = None  # when close() began (time.monotonic)

    @property
    def waiting(self) -> int:
        """Requests counted in memory, not yet in the store (the database was locked)."""
        return sum(u.requests for u in self._uses.values())

    def add(self, entry: RequestRecord) -> None:
        """Count one request (never raises: a failed save is logged and tried again later)."""
        try:
            self._take([use_of(entry)], [logged_request(entry)] if entry.body and self.keep_bodies() else [])
            if self._retry is None:  # nothing waits for a lock: save now, in order
                self._save_waiting()
        except StoreError as exc:
            log.warning("what an app used is not saved yet (%s); trying again", exc)
            self._retry_later()
        except Exception:  # noqa: BLE001 - the ledger must never fail a request
            log.exception("the ledger could not count a request")

    def _take(self, uses: list[ApiUse], bodies: list[ApiRequest]) -> None:
        for use in uses:
            had = self._uses.get(use.key)
            self._uses[use.key] = had.plus(use) if had else use
        self._bodies.extend(bodies)
        if len(self._bodies) > MAX_WAITING_BODIES:
            dropped = len(self._bodies) - MAX_WAITING_BODIES
            del self._bodies[:dropped]
            log.warning("the database stays locked: %d prompts and answers were not kept (their figures are)",
                        dropped)

    def _pop(self) -> tuple[list[ApiUse], list[ApiRequest]]:
        uses, bodies = list(self._uses.values()), self._bodies
        self._uses, self._bodies = {}, []
        return uses, bodies

    def _save_waiting(self) -> None:
        uses, bodies = self._pop()
        if not uses and not bodies:
            return
        try:
            self.store.add_api_use(uses, bodies)
        except BaseException:
            self._take(uses, bodies)  # back in the queue, in front of nothing: sums do not mind order
            raise

    def _retry_later(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here: the next request tries again
            return
        if self._retry is None or self._retry.done():
            self._retry = loop.create_task(self._keep_trying(), name="ledger-retry")

    async def _keep_trying(self) -> None:
        """Save what waits, in a worker thread (a lock still held costs the store's busy wait
        there, not on the event loop), after growing pauses; once closing, without pauses until
        CLOSE_WAIT_S have passed."""
        pause = RETRY_PAUSE_S[0]
        try:
            while self._uses or self._bodies:
                if self._closing is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), pause)
                uses, bodies = self._pop()
                try:
                    await asyncio.to_thread(self.store.add_api_use, uses, bodies)
                except Exception as exc:  # noqa: BLE001 - locked, disk full…: kept for the next try
                    self._take(uses, bodies)
                    if self._closing is not None and time.monotonic() >= self._closing + CLOSE_WAIT_S:
                        log.warning("the database stayed locked (%s): %d requests by apps were not counted in "
                                    "the ledger", exc, self.waiting)
                        return
                    pause = min(pause * 2, RETRY_PAUSE_S[1])
                    log.info("Hearth's database is still locked (%s); %d requests wait to be counted", exc,
                             self.waiting)
                    if self._closing is not None:
                        await asyncio.sleep(RETRY_PAUSE_S[0])
        finally:
            self._retry = None

    async def close(self) -> None:
        """Save what still waits, trying for up to CLOSE_WAIT_S; what cannot be saved is logged."""
        self._closing = time.monotonic()
        self._wake.set()
        if (self._uses or self._bodies) and self._retry is None:
            self._retry_later()
        try:
            if self._retry is not None:
                await asyncio.shield(self._retry)
        finally:
            self._closing = None  # (a server started again counts on as before)
            self._wake.clear()
