"""Building blocks shared by the TCP targets: an ``asyncio.Protocol`` whose one pending request
is a future, and the common ``HOST:PORT`` + TLS options."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, TypeVar

from ..target import BenchError, Session
from ._connect import shielded_connect

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

__all__ = ["FutureProtocol", "open_protocol"]


class FutureProtocol(asyncio.Protocol, Session):
    """A Protocol-based session: ``data_received`` feeds the subclass, which resolves
    ``self.waiter`` when the pending request completed. The loop never runs a task per read."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.open = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        # Once: on Python 3.11 every get_running_loop() is a getpid() system call.
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.fail(BenchError("closed", "connection closed by the peer"))

    def new_waiter(self) -> asyncio.Future[None]:
        if not self.open:
            raise BenchError("closed", "connection closed by the peer")
        waiter = self.waiter = self.loop.create_future()
        return waiter

    def send(self, data: bytes) -> None:
        """Write a request, its send time (``sent_ns``) stamped just before the write, so the
        client's own work before it (building the request, a future) is not latency."""
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(data)

    def done(self, at: int | None = None) -> None:
        """The pending request completed, ``at`` (``perf_counter_ns``; default now)."""
        self.done_ns = time.perf_counter_ns() if at is None else at
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self.open = False
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.abort()
        self.fail(BenchError("closed", "aborted"))


P = TypeVar("P", bound=FutureProtocol)


async def open_protocol(
    factory: Callable[[], P], host: str, port: int, tls: ssl.SSLContext | None, sni: str | None
) -> P:
    loop = asyncio.get_running_loop()
    _, protocol = await shielded_connect(
        loop.create_connection(
            factory,
            host,
            port,
            ssl=tls,
            server_hostname=(sni or host) if tls is not None else None,
        )
    )
    return protocol
