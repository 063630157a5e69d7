"""Hearth's local API server in an event loop of its own thread, as the window (beside Qt) or
`hearth serve` runs it, so a test's blocking clients (the openai and ollama SDKs, httpx) can
talk to it over real HTTP."""

from __future__ import annotations

import asyncio
import threading

from desktop.core.server import LocalServer, RequestRecord, ServerConfig


class ServerThread:
    """`ServerThread(services, config).start()`; `url`; `records` (every RequestRecord);
    `call(coro)` runs a coroutine on the server's loop; `close()`."""

    def __init__(self, services, config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server-loop", daemon=True)
        self.thread.start()
        self.server = LocalServer(services, config)
        self.records: list[RequestRecord] = []
        self.server.on_request = self.records.append

    def call(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ServerThread:
        self.call(self.server.start())
        return self

    def loaded(self) -> list:
        async def read():
            return self.server.loaded()
        return self.call(read())

    def close(self) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def url(self) -> str:
        return self.server.address
