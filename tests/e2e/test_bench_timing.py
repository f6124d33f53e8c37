"""Where ``aionet bench`` starts and stops the clock: from the write of a request to the arrival
of the bytes that complete its reply. The client's own work on either side (building the
request, parsing the reply) is made slow here on purpose and must not show as latency; with
``--no-keepalive`` the connect still counts, as with ab."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from aionet.bench.clients import http as http_client
from aionet.bench.clients.http import HttpTarget
from aionet.bench.runner import Plan, WorkerRun
from tests.bench_helpers import fake_server

MS = 1_000_000
#: Seconds of client-side work injected; a latency must stay below half of it. 0.1 rather than
#: 0.03: the half is then 50 ms of room for a loaded machine's scheduling (not 15 ms) between a
#: correct measurement (well under a millisecond on loopback) and a wrong one (SLOW or more).
SLOW = 0.1


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
    async with fake_server(HelloServer) as port:
        yield f"http://127.0.0.1:{port}/hello"


async def run(target: HttpTarget, requests: int = 5) -> Any:
    target.prepare()
    result = await WorkerRun(target, Plan(1, requests=requests)).run()
    assert result.errors == {} and result.requests == requests
    return result


class SlowToBuild(HttpTarget):
    """Each request costs the client ``SLOW`` seconds of work before it is written."""

    async def connect(self) -> Any:
        session = await super().connect()
        requests = session.requests

        def slow() -> Iterator[tuple[bytes, bool]]:
            for item in requests:
                time.sleep(SLOW)  # the injected client-side work (blocking, on purpose)
                yield item

        session.requests = slow()
        return session


class SlowParser:
    """Wraps the response parser: every chunk costs ``SLOW`` seconds before it is parsed."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser

    def feed_data(self, data: bytes) -> None:
        time.sleep(SLOW)  # the injected client-side work (blocking, on purpose)
        self.parser.feed_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


class SlowToParse(HttpTarget):
    async def connect(self) -> Any:
        session = await super().connect()
        session.parser = SlowParser(session.parser)
        return session


async def test_the_clock_starts_at_the_write_not_before_building_the_request(url: str) -> None:
    result = await run(SlowToBuild([url]))
    assert result.latency.percentile(100) < SLOW * 1e9 / 2


async def test_the_clock_stops_when_the_reply_arrives_not_after_parsing_it(url: str) -> None:
    result = await run(SlowToParse([url]))
    assert result.latency.percentile(100) < SLOW * 1e9 / 2


async def test_a_fast_client_still_measures_a_slow_server(url: str) -> None:
    """The stamps are the session's: a reply that really takes time is still measured."""
    original = HelloServer.data_received

    def late(self: HelloServer, data: bytes) -> None:
        asyncio.get_running_loop().call_later(SLOW, original, self, data)

    HelloServer.data_received = late  # type: ignore[method-assign]
    try:
        result = await run(HttpTarget([url]), requests=3)
    finally:
        HelloServer.data_received = original  # type: ignore[method-assign]
    assert result.latency.min >= (SLOW - 0.002) * 1e9


async def test_without_keepalive_the_connect_is_part_of_the_latency(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = http_client.open_protocol

    async def slow_connect(*args: Any) -> Any:
        await asyncio.sleep(SLOW)  # a connect that takes SLOW
        return await connect(*args)

    monkeypatch.setattr(http_client, "open_protocol", slow_connect)
    per_request = await run(HttpTarget([url], keepalive=False), requests=3)
    assert per_request.latency.min >= (SLOW - 0.002) * 1e9
    kept = await run(HttpTarget([url]), requests=3)  # one connect, before the first send
    assert kept.latency.percentile(100) < SLOW * 1e9 / 2


async def test_without_keepalive_a_connection_is_never_reused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the server keeps it open and its reply does not say ``Connection: close``."""
    monkeypatch.setattr(HelloServer, "ignore_close", True)
    monkeypatch.setattr(HelloServer, "connections", 0)
    await run(HttpTarget([url], keepalive=False), requests=4)
    assert HelloServer.connections >= 4  # (the run may open one more as it stops)
