"""In-memory streams for a ``StreamHandler`` (tier-2 tests): no socket, no server.

``memory_streams()`` is the server's ``(reader, writer)`` over one ``MemoryTransport``, the way
the core builds them for a real connection; ``memory_connection()`` wraps them in the
``Connection`` a ``StreamHandler.handle()`` receives. The test plays the client on the
transport: ``feed(bytes)``, ``feed_eof()``, and ``take()`` for what the handler wrote::

    conn, client = memory_connection()
    task = asyncio.create_task(handler.handle(conn))
    client.feed(b"NOOP\\r\\n")
    ...
    client.feed_eof()
    await task

The reader is the core's (an over-long line raises ``LineTooLong``), with the handler's
``stream_limit`` when the handler is given. As on a socket, the peer's EOF leaves the
connection half-open: close the writer when ``handle()`` returns, as the core does (an unclosed
``StreamWriter`` is a ``ResourceWarning`` when it is collected).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, Any, cast

import structlog

from ..core.connections import LineReader
from ..core.handler import Connection, StreamHandler
from ..core.sessions import say_goodbye
from .transport import MemoryTransport

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from ..core.connections import ConnectionRecord

__all__ = ["memory_connection", "memory_streams"]

_ids = itertools.count(1)


def memory_streams(
    *,
    limit: int = StreamHandler.stream_limit,
    peername: Any = ("127.0.0.1", 50000),
    sockname: Any = ("127.0.0.1", 7007),
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, MemoryTransport]:
    """The server side's reader and writer over a new ``MemoryTransport``, and the transport.

    Must be called with a running loop (as in an async test).
    """
    loop = asyncio.get_running_loop()
    reader = LineReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = MemoryTransport(peername=peername, sockname=sockname)
    transport.connect(protocol)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer, transport


class _Slot:
    __slots__ = ("goodbye", "log", "name")

    def __init__(self, name: str, log: FilteringBoundLogger, goodbye: bytes | None) -> None:
        self.name = name
        self.log = log
        self.goodbye = goodbye


class _Clock:
    __slots__ = ()

    @property
    def now(self) -> float:
        return time.monotonic()


class _Record:
    """What a ``Connection`` reads of the core's connection record, and nothing else."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "clock",
        "id",
        "last_active",
        "peer",
        "slot",
        "transport",
    )

    def __init__(self, peer: Any, slot: _Slot, transport: MemoryTransport) -> None:
        self.id = next(_ids)
        self.peer = peer
        self.slot = slot
        self.transport = transport
        self.clock = _Clock()
        self.last_active = self.clock.now
        self.bytes_in = 0
        self.bytes_out = 0

    def bind_log(self) -> FilteringBoundLogger:
        return self.slot.log.bind(conn_id=self.id, peer=str(self.peer))

    def close_idle(self) -> None:
        """``Connection.close_idle()``: the handler's idle goodbye, then close."""
        self.bytes_out += say_goodbye(self.transport, self.slot.goodbye)
        self.transport.close()


def memory_connection(
    handler: StreamHandler | None = None,
    *,
    listener: str = "test",
    peername: Any = ("127.0.0.1", 50000),
    sockname: Any = ("127.0.0.1", 7007),
    log: FilteringBoundLogger | None = None,
) -> tuple[Connection, MemoryTransport]:
    """A ``Connection`` for ``handler.handle()`` over ``memory_streams()``, and the transport
    the test plays the client on. ``conn.peer`` is ``peername``; ``conn.log`` is ``log`` (or
    structlog's) bound to the connection like the core's. With a ``handler``, the reader has
    its ``stream_limit`` and ``conn.close_idle()`` says its ``idle_goodbye()``.
    """
    limit = handler.stream_limit if handler is not None else StreamHandler.stream_limit
    reader, writer, transport = memory_streams(limit=limit, peername=peername, sockname=sockname)
    goodbye = handler.idle_goodbye() if handler is not None else None
    slot = _Slot(listener, log if log is not None else structlog.get_logger(), goodbye)
    record = cast("ConnectionRecord", _Record(peername, slot, transport))
    return Connection(reader, writer, record), transport
