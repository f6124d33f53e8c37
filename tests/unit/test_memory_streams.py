"""``aionet.testing.memory_streams()`` / ``memory_connection()``: a stream handler's streams and
``Connection`` over a ``MemoryTransport``, behaving like the core's on a socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import pytest
import structlog
from structlog.testing import capture_logs

from aionet import Connection, HandlerOptions, LineTooLong, Services, StreamHandler
from aionet.testing import memory_connection, memory_streams


class Small(StreamHandler):
    stream_limit: ClassVar[int] = 16

    async def handle(self, conn: Connection) -> None:
        raise NotImplementedError


async def test_bytes_both_ways_and_eof() -> None:
    reader, writer, transport = memory_streams()
    transport.feed(b"one\r\ntw")
    assert await reader.readline() == b"one\r\n"
    transport.feed(b"o\r\n")
    assert await reader.readline() == b"two\r\n"
    writer.write(b"reply\r\n")
    await writer.drain()
    assert transport.take() == b"reply\r\n"
    transport.feed_eof()
    assert await reader.readline() == b""
    assert not transport.closed  # half-open, as on a socket: closing is the writer's to do
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), 1)
    assert transport.closed


async def test_closing_the_writer_closes_the_transport() -> None:
    _, writer, transport = memory_streams()
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), 1)
    assert transport.closed and transport.lost and not transport.aborted


async def test_an_over_long_line_raises_line_too_long_at_the_handlers_limit() -> None:
    handler = Small(HandlerOptions(), Services("small", Path("."), structlog.get_logger()))
    conn, transport = memory_connection(handler)
    transport.feed(b"x" * 40 + b"\n")
    with pytest.raises(LineTooLong) as info:
        await conn.reader.readline()
    assert info.value.limit == 16
    await conn.aclose()


async def test_the_connection_as_a_handler_sees_it() -> None:
    with capture_logs() as logs:
        conn, transport = memory_connection(
            listener="ftp", peername=("192.0.2.1", 2121), sockname=("192.0.2.2", 21)
        )
        conn.log.info("hello")
    assert conn.peer == ("192.0.2.1", 2121) and conn.listener == "ftp" and conn.tls is None
    assert conn.writer.get_extra_info("sockname") == ("192.0.2.2", 21)
    [entry] = logs
    assert entry["event"] == "hello" and entry["conn_id"] == conn.id
    conn.touch(3, 4)  # counted like the core counts a data channel
    other, _ = memory_connection()
    assert other.id != conn.id
    for each in (conn, other):
        await each.aclose()
    assert transport.closed


class Polite(Small):
    def idle_goodbye(self) -> bytes:
        return b"421 idle\r\n"


async def test_close_idle_says_the_handlers_idle_goodbye_and_closes() -> None:
    services = Services(listener="t", data_dir=Path("."), log=structlog.get_logger())
    conn, transport = memory_connection(Polite(HandlerOptions(), services))
    conn.close_idle()  # as a protocol's own inactivity timer does
    assert transport.take() == b"421 idle\r\n" and transport.closed
    quiet, quiet_transport = memory_connection()  # no handler: no goodbye
    quiet.close_idle()
    assert quiet_transport.take() == b"" and quiet_transport.closed
    for each in (conn, quiet):
        await each.aclose()
