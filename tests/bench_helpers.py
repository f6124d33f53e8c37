"""Run a bench target in the test's own event loop, from a command line like the CLI's; serve a
throw-away asyncio protocol for it to load."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from aionet.bench.cli import build_parser
from aionet.bench.registry import resolve
from aionet.bench.result import Result
from aionet.bench.runner import Plan, WorkerRun


async def bench(argv: list[str], plan: Plan) -> Result:
    """``bench(["echo", "127.0.0.1:7", "--size", "8"], Plan(connections=2, requests=50))``."""
    args = build_parser([argv[0]]).parse_args(argv)
    target = resolve(argv[0]).from_args(args)
    target.prepare()
    result = await WorkerRun(target, plan).run()
    result.protocol = argv[0]
    return result


class _Tracked(asyncio.Protocol):
    """Forwards to the test's protocol; resolves ``lost`` when the connection is gone."""

    def __init__(self, inner: asyncio.Protocol, lost: asyncio.Future[None]) -> None:
        self.inner, self.lost = inner, lost
        self.made = lost.get_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.made.set_result(None)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            if not self.lost.done():
                self.lost.set_result(None)


@asynccontextmanager
async def fake_server(
    factory: Callable[[], Any], *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """An asyncio server of ``factory()`` protocols on 127.0.0.1; yields its port.

    On exit the server stops and every connection it accepted is closed, and the exit waits for
    their ``connection_lost``. ``Server.wait_closed()`` does not: on Python 3.11 and on uvloop it
    returns once the listening socket is closed, leaving accepted connections open; one still
    open when the test's loop closes is reported at collection as an unclosed transport (a
    ``ResourceWarning``, an error in this suite), in whichever test happens to be running then.
    """
    loop = asyncio.get_running_loop()
    accepted: list[_Tracked] = []

    def make() -> _Tracked:
        protocol = _Tracked(factory(), loop.create_future())
        accepted.append(protocol)
        return protocol

    server = await loop.create_server(make, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        # Python 3.11 accepts a connection in one callback and builds its transport in a task;
        # a close in between leaks the socket (the transport's ``server._attach()`` fails). A
        # client's cancelled connects still complete (``shielded_connect``): let the accepts
        # settle first, then close.
        settled, seen = 0, -1
        while settled < 3:
            await asyncio.sleep(0)
            settled, seen = (settled + 1, seen) if len(accepted) == seen else (0, len(accepted))
        server.close()
        await server.wait_closed()
        made = [p.made for p in accepted if not p.made.done()]
        if made:
            await asyncio.wait(made, timeout=1)
        for protocol in accepted:
            if protocol.transport is not None and not protocol.lost.done():
                protocol.transport.abort()
        async with asyncio.timeout(10):
            await asyncio.gather(*(p.lost for p in accepted if p.transport is not None))
