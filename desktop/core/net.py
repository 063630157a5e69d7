"""The one place that makes HTTP clients.

Every connection Hearth opens goes through a client made here, so the rule "nothing leaves the
machine unless the user allowed it" is enforced in one spot: a client made with
`local_only=True`, and every client while offline mode is on, refuses any host that is not this
machine before a byte is sent. Code that hands a URL to a library with its own HTTP client
(huggingface_hub) asks `check_allowed(url)` first.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from desktop.core.errors import HearthError

if TYPE_CHECKING:  # imported where used: httpx costs ~0.1 s, paid after the window shows
    import httpx

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class OfflineError(HearthError):
    pass


_offline = False


def set_offline(on: bool) -> None:
    """Offline mode: from now on no client made here connects to anything but this machine."""
    global _offline
    _offline = on


def offline() -> bool:
    return _offline or os.environ.get("HEARTH_OFFLINE", "") not in ("", "0")


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(host: str, local_only: bool) -> None:
    if is_loopback(host):
        return
    if offline():
        raise OfflineError(f"Offline mode is on, so Hearth did not connect to {host}. Turn offline mode "
                           "off to use it.")
    if local_only:
        raise OfflineError(f"Hearth did not connect to {host}: only this machine may be reached.")


def check_allowed(url: str) -> None:
    """For URLs given to libraries with their own HTTP client: refused while offline mode is on."""
    import httpx
    _refuse(httpx.URL(url).host, local_only=False)


def request_bytes(request: httpx.Request) -> int:
    """What a request puts on the wire, near enough: request line, headers and body."""
    import httpx
    head = len(request.method) + len(request.url.raw_path) + 12
    head += sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    try:
        body = len(request.content)
    except httpx.RequestNotRead:
        body = int(request.headers.get("content-length", 0))
    return head + body


# Small writes go out at once: with Nagle's algorithm a request's body can wait for the ACK of
# its headers, and the peer delays that ACK (up to 40 ms on Linux) - time added to every answer.
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


# Blocking HTTP/1.1 connections read up to this much per call instead of httpcore's 64 KiB: a
# model download then costs a third of the CPU (measured with tests/bench/download.py). A read
# returns what has arrived, so small answers are not delayed. httpcore offers no per-client
# setting; tests/core/test_net.py fails if the attribute goes away in an upgrade.
BLOCKING_READ_BYTES = 1 << 20


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: building one reads the whole CA bundle (about
    45 ms of CPU), which each new client did for every answer, local ones included."""
    import httpx
    return httpx.create_ssl_context()


def _timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    import httpx
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout, connect=10.0)


def client(*, local_only: bool, timeout: float | httpx.Timeout = 30.0) -> httpx.Client:
    """A blocking client with the same rules as `async_client`, for work in a worker thread."""
    import httpcore
    import httpx
    httpcore.HTTP11Connection.READ_NUM_BYTES = BLOCKING_READ_BYTES

    def guard(request: httpx.Request) -> None:
        _refuse(request.url.host, local_only)

    return httpx.Client(transport=httpx.HTTPTransport(verify=tls_context(), retries=0, socket_options=NO_DELAY),
                        timeout=_timeout(timeout), trust_env=not local_only, follow_redirects=True,
                        event_hooks={"request": [guard]})


def async_client(*, local_only: bool, timeout: float | httpx.Timeout = 30.0,
                 on_sent: Callable[[str, int], None] | None = None) -> httpx.AsyncClient:
    """An httpx client with Hearth's rules: TLS verified, no proxies for loopback, timeouts set.
    `on_sent(host, bytes)` hears of every request that goes out, for the "your data" figures."""
    import httpx
    async def guard(request: httpx.Request) -> None:
        _refuse(request.url.host, local_only)  # every request, redirects too, whatever the proxy
        if on_sent is not None:
            on_sent(request.url.host, request_bytes(request))

    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(verify=tls_context(), retries=0,
                                                                socket_options=NO_DELAY),
                             timeout=_timeout(timeout), trust_env=not local_only, follow_redirects=True,
                             event_hooks={"request": [guard]})


def lan_address() -> str:
    """This computer's address on its local network as others see it, or "" when it has none.
    (A UDP socket 'connected' to a private address picks the outgoing interface; nothing is sent.)"""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.254.254.254", 1))
            address = probe.getsockname()[0]
    except OSError:
        return ""
    return "" if address.startswith("127.") or address == "0.0.0.0" else address
