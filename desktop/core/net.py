"""The one place that makes HTTP clients.

Every connection Hearth opens goes through a client made here, so the rule "nothing leaves the
machine unless the user allowed it" is enforced in one spot: a client made with
`local_only=True` refuses any host that is not this machine before a byte is sent.
"""

from __future__ import annotations

import ipaddress
import socket

import httpcore
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


def _refuse_unless_loopback(request: httpx.Request) -> None:
    if not is_loopback(request.url.host):
        raise OfflineError(f"Hearth did not connect to {request.url.host}: only this machine may be reached.")


class _LocalOnlyTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _refuse_unless_loopback(request)
        return await super().handle_async_request(request)


class _LocalOnlySyncTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _refuse_unless_loopback(request)
        return super().handle_request(request)


# Small writes go out at once: with Nagle's algorithm a request's body can wait for the ACK of
# its headers, and the peer delays that ACK (up to 40 ms on Linux) - time added to every answer.
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


# Blocking HTTP/1.1 connections read up to this much per call instead of httpcore's 64 KiB: a
# model download then costs a third of the CPU (measured with tests/bench/download.py). A read
# returns what has arrived, so small answers are not delayed. httpcore offers no per-client
# setting; tests/core/test_net.py fails if the attribute goes away in an upgrade.
BLOCKING_READ_BYTES = 1 << 20


def _timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout, connect=10.0)


def client(*, local_only: bool, timeout: float | httpx.Timeout = 30.0) -> httpx.Client:
    """A blocking client with the same rules as `async_client`, for work in a worker thread."""
    httpcore.HTTP11Connection.READ_NUM_BYTES = BLOCKING_READ_BYTES
    transport = (_LocalOnlySyncTransport(socket_options=NO_DELAY) if local_only
                 else httpx.HTTPTransport(retries=0, socket_options=NO_DELAY))
    return httpx.Client(transport=transport, timeout=_timeout(timeout), trust_env=not local_only,
                        follow_redirects=True)


def async_client(*, local_only: bool, timeout: float | httpx.Timeout = 30.0) -> httpx.AsyncClient:
    """An httpx client with Hearth's rules: TLS verified, no proxies for loopback, timeouts set."""
    timeout = _timeout(timeout)
    transport = (_LocalOnlyTransport(socket_options=NO_DELAY) if local_only
                 else httpx.AsyncHTTPTransport(retries=0, socket_options=NO_DELAY))
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=not local_only,
                             follow_redirects=True)
