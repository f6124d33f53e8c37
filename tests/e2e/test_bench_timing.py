"""``aionet bench http`` against a tiny loopback server whose behaviour the tests control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aionet.bench.clients.http import HttpTarget
from aionet.bench.runner import Plan, WorkerRun


class HelloServer(asyncio.Protocol):
    """Answers each request at once with a 5-byte body; closes when asked to (unless told to
    ignore that, as some servers do)."""

    connections = 0
    ignore_close = False

    def connection_made(self, transport: Any) -> None:
        type(self).connections += 1
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            if b"connection: close" in head.lower() and not self.ignore_close:
                self.transport.close()
                return


@pytest.fixture
async def url() -> AsyncIterator[str]:
    server = await asyncio.get_running_loop().create_server(HelloServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hello"
    finally:
        server.close()
        await server.wait_closed()


async def run(target: HttpTarget, requests: int = 5) -> Any:
    target.prepare()
    result = await WorkerRun(target, Plan(1, requests=requests)).run()
    assert result.errors == {} and result.requests == requests
    return result


async def test_without_keepalive_a_connection_is_never_reused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the server keeps it open and its reply does not say ``Connection: close``."""
    monkeypatch.setattr(HelloServer, "ignore_close", True)
    monkeypatch.setattr(HelloServer, "connections", 0)
    await run(HttpTarget([url], keepalive=False), requests=4)
    assert HelloServer.connections >= 4  # (the run may open one more as it stops)
