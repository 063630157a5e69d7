"""The one HTTP client factory: what it lets through and how it reads."""

import asyncio
import inspect

import httpcore
import pytest

from desktop.core import net


def test_a_local_only_client_refuses_other_hosts_before_connecting():
    with net.client(local_only=True) as client, pytest.raises(net.OfflineError, match="example.com"):
        client.get("https://example.com/")

    async def from_the_event_loop():
        async with net.async_client(local_only=True) as client:
            await client.get("https://93.184.215.14/")

    with pytest.raises(net.OfflineError, match="93.184.215.14"):
        asyncio.run(from_the_event_loop())


def test_blocking_connections_read_large_blocks():
    # Downloads rely on it for a third of their CPU cost; an httpcore upgrade that drops the
    # setting must fail here rather than silently slow every download.
    net.client(local_only=True).close()
    assert httpcore.HTTP11Connection.READ_NUM_BYTES == net.BLOCKING_READ_BYTES
    assert "self.READ_NUM_BYTES" in inspect.getsource(httpcore.HTTP11Connection._receive_event)
