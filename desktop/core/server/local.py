"""LocalServer: the local API server running in the current asyncio loop (the window's, or
`hearth serve`'s), with uvicorn serving the app of app.py on a socket bound here first."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Iterator

from desktop.core.server import RequestRecord, ServerConfig, ServerError
from desktop.core.server.ledger import ApiLedger
from desktop.core.server.pool import LoadedModel, ModelPool

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0  # open streams get this long to end before the server closes them


def _uvicorn_server(config):
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its signal handlers: Ctrl+C belongs to the app (the window,
        or `hearth serve`, which stops the server itself)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


class LocalServer:
    """The local API server (see the package's docstring for the contract).

    `start()` binds `config.host:config.port` (port 0: any free port) and serves until `stop()`.
    Raises ServerError with a sentence when the port is taken or the network is asked for without
    a key. `address` is the URL clients on this computer use once started. Every request to a
    model route is counted in the data ledger (`ledger`, into `services.store`) before
    `on_request` hears of it; `stop()` saves what a locked database kept waiting."""

    def __init__(self, services, config: ServerConfig) -> None:
        self.services = services
        self.config = config
        self.on_request: Callable[[RequestRecord], None] | None = None
        self.pool = ModelPool(services, ttl_s=config.ttl_s)
        self.ledger = ApiLedger(services.store, self._keep_bodies)
        self.port = 0
        self._server = None
        self._task: asyncio.Task | None = None

    @property
    def address(self) -> str:
        """"http://127.0.0.1:4784" (loopback, or when serving every interface), else the host
        the user chose; "" before start()."""
        if not self.port:
            return ""
        host = self.config.host
        if host in ("0.0.0.0", "", "::") or self._loopback():
            host = "127.0.0.1" if ":" not in host else "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _loopback(self) -> bool:
        from desktop.core.server.app import is_loopback_host

        return is_loopback_host(self.config.host)

    def _keep_bodies(self) -> bool:
        """Prompts and answers are kept while the server was started with a log with bodies and
        the saved setting still asks for one: turning it off stops keeping them at once."""
        saved = getattr(getattr(self.services, "settings", None), "server", None)
        return self.config.log_bodies and getattr(saved, "log_bodies", True)

    def _record(self, entry: RequestRecord) -> None:
        """After each request to a model route: counted in the data ledger (services.store)
        first, then told to `on_request`."""
        self.ledger.add(entry)
        if self.on_request is not None:
            self.on_request(entry)

    def _bind(self) -> socket.socket:
        config = self.config
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (0 does not),
        # and without it every kept-alive request waited ~40 ms (Nagle against delayed ACKs).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no other program may share the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
            else:  # POSIX: a port left in TIME_WAIT by our last run may be taken again
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.host, config.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise ServerError(f"Port {config.port} is in use by another program; choose another port.") from None
            if exc.errno in (errno.EACCES, getattr(errno, "WSAEACCES", -1)):
                raise ServerError(f"This computer does not let Hearth listen on port {config.port}; choose a port "
                                  "above 1024.") from None
            if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
                raise ServerError(f"“{config.host}” is not an address of this computer; choose one of its "
                                  "addresses, or 0.0.0.0 for all of them.") from None
            raise ServerError(f"The server could not listen on {config.host}:{config.port}: "
                              f"{exc.strerror or exc}.") from None
        return sock

    async def start(self) -> None:
        """Bind and serve in the running loop; returns once requests are answered."""
        if self.running:
            return
        if not self._loopback() and not self.config.api_key:
            raise ServerError(f"Serving on the network ({self.config.host}) needs an API key, so that only the "
                              "apps you give it to can use your models: set a key first.")
        if not 0 <= self.config.port <= 65535:
            raise ServerError(f"{self.config.port} is not a port number: choose one from 1024 to 65535.")
        import uvicorn

        from desktop.core.server.app import create_app

        app = self._app = create_app(self.services, self.config, self.pool, self._record)
        sock = self._bind()
        self.port = sock.getsockname()[1]
        server = _uvicorn_server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                                timeout_graceful_shutdown=STOP_GRACE_S, log_config=None))
        self._server = server
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="local-server")
        while not server.started:
            if self._task.done():
                self.port = 0
                sock.close()
                error = self._task.exception() if not self._task.cancelled() else None
                raise ServerError(f"The server stopped as it started: {error or 'cancelled'}.")
            await asyncio.sleep(0.01)
        log.info("local server on %s", self.address)

    async def stop(self) -> None:
        """Stop answering, end open requests (after up to STOP_GRACE_S), and unload the models
        loaded for the server (never the window's)."""
        server, task = self._server, self._task
        if server is not None and task is not None:
            self._app.state.stopping.set()  # open streams end with an error event that says why
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S + 5)
            except Exception:  # noqa: BLE001 - stopping goes on whatever happened (a timeout too)
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._server = self._task = None
        self.port = 0
        await self.ledger.close()
        await self.pool.close()

    def loaded(self) -> list[LoadedModel]:
        """The models loaded for the server now."""
        return self.pool.loaded()
