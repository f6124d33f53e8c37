"""The protocol behind every ``StreamHandler`` connection: asyncio streams plus one task.

``StreamProtocol`` admits the connection like any tracked protocol, builds the ``Connection``
(``conn.reader`` raises ``LineTooLong`` for an over-long line; ``conn.writer`` counts what it
writes) and runs ``serve_stream``: the handler's ``handle(conn)``, after which the connection
is always closed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..handler import Connection, LineTooLong
from ._tracking import _tracked_subclass

if TYPE_CHECKING:
    from ..handler import StreamHandler
    from ._manager import ConnectionRecord, ListenerSlot

__all__ = ["LineReader", "StreamProtocol", "serve_stream"]


class _CountingWriter(asyncio.StreamWriter):
    """A StreamWriter that counts bytes written into the connection record."""

    _aionet_rec: ConnectionRecord

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._aionet_rec.bytes_out += len(data)
        super().write(data)

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)


class LineReader(asyncio.StreamReader):
    """``conn.reader``: asyncio's StreamReader whose over-long lines raise ``LineTooLong``."""

    async def readline(self) -> bytes:
        try:
            return await super().readline()
        except ValueError as exc:  # asyncio's readline: "chunk exceed the limit"
            raise LineTooLong(self._limit) from exc  # type: ignore[attr-defined]

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        try:
            return await super().readuntil(separator)
        except asyncio.LimitOverrunError as exc:
            if isinstance(exc, LineTooLong):
                raise
            raise LineTooLong(self._limit, exc.consumed) from exc  # type: ignore[attr-defined]


async def serve_stream(slot: ListenerSlot, conn: Connection, handler: StreamHandler) -> None:
    """Run ``handler.handle(conn)``; whatever happens, the connection is closed after."""
    try:
        await handler.handle(conn)
    except asyncio.CancelledError:
        pass  # aborted by the core (drain deadline, idle grace); the finally closes
    except LineTooLong as exc:  # the client's fault, not the handler's
        conn.log.info("line_too_long", limit=exc.limit)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        conn.log.debug("connection_error", error=repr(exc))
    except Exception as exc:
        slot.handler_error(conn._record, exc)
    finally:
        conn.writer.close()


class _StreamProtocolBase(asyncio.StreamReaderProtocol):
    """The protocol behind every ``StreamHandler`` connection: streams plus one task."""

    def __init__(self, slot: ListenerSlot, handler: StreamHandler, loop: asyncio.AbstractEventLoop):
        reader = LineReader(limit=handler.stream_limit, loop=loop)
        super().__init__(reader, loop=loop)
        self._aionet_slot = slot
        self._aionet_rec: ConnectionRecord | None = None
        self._aionet_handler = handler
        self._aionet_reader: asyncio.StreamReader | None = reader  # strong until connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        reader, self._aionet_reader = self._aionet_reader, None
        rec = self._aionet_rec
        assert rec is not None
        assert reader is not None
        super().connection_made(transport)
        loop = self._loop  # type: ignore[attr-defined]
        writer = _CountingWriter(transport, self, reader, loop)  # type: ignore[arg-type]
        writer._aionet_rec = rec
        self._stream_writer = writer
        conn = Connection(reader, writer, rec)
        rec.task = loop.create_task(serve_stream(self._aionet_slot, conn, self._aionet_handler))


StreamProtocol: type[_StreamProtocolBase] = _tracked_subclass(_StreamProtocolBase, foreign=False)
