"""The one place that makes HTTP clients.

Every connection Hearth opens goes through a client made here, so the rule "nothing leaves the
machine unless the user allowed it" is enforced in one spot: a client made with
`local_only=True` refuses any host that is not this machine before a byte is sent.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx

from desktop.core.errors import HearthError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class OfflineError(HearthError):
    pass


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _LocalOnlyTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not is_loopback(request.url.host):
            raise OfflineError(
                f"Hearth did not connect to {request.url.host}: only this machine may be reached."
            )
        return await super().handle_async_request(request)


# Small writes go out at once: with Nagle's algorithm a request's body can wait for the ACK of
# its headers, and the peer delays that ACK (up to 40 ms on Linux) - time added to every answer.
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def async_client(*, local_only: bool, timeout: float | httpx.Timeout = 30.0) -> httpx.AsyncClient:
    """An httpx client with Hearth's rules: TLS verified, no proxies for loopback, timeouts set."""
    if not isinstance(timeout, httpx.Timeout):
        timeout = httpx.Timeout(timeout, connect=10.0)
    transport = (_LocalOnlyTransport(socket_options=NO_DELAY) if local_only
                 else httpx.AsyncHTTPTransport(retries=0, socket_options=NO_DELAY))
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=not local_only,
                             follow_redirects=True)
