"""A StreamHandler's client sends a line longer than the reader's limit: the core raises the
typed ``LineTooLong`` the handler can catch, and logs it at info (not as a handler error with
a traceback) when the handler does not (issue 13.12)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from structlog.testing import capture_logs

from aionet import Connection, LineTooLong, StreamHandler
from aionet.testing import serve


class Lines(StreamHandler):
    """Echoes lines; does not catch LineTooLong."""

    stream_limit: ClassVar[int] = 1024

    async def handle(self, conn: Connection) -> None:
        while line := await conn.reader.readline():
            conn.writer.write(line)
            await conn.writer.drain()


class PoliteLines(Lines):
    """Answers an over-long line with an error and carries on."""

    async def handle(self, conn: Connection) -> None:
        while True:
            try:
                line = await conn.reader.readline()
            except LineTooLong:
                conn.writer.write(b"500 line too long\n")
                continue
            if not line:
                return
            conn.writer.write(line)
            await conn.writer.drain()


def _config(handler: str) -> dict[str, object]:
    return {
        "logging": {"level": "info"},
        "listeners": [
            {"name": "lines", "protocol": f"{__name__}:{handler}", "bind": "127.0.0.1:0"}
        ],
    }


async def test_an_uncaught_over_long_line_ends_the_session_logged_at_info(tmp_path: Path) -> None:
    async with serve(_config("Lines"), data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*server.address("lines")[:2])
        with capture_logs() as logs:
            writer.write(b"short\n" + b"x" * 5000 + b"\n")
            assert await reader.readline() == b"short\n"
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the core
            writer.close()
            await writer.wait_closed()
        stats = server.manager.slots["lines"].stats
        assert stats.handler_errors == 0
    events = {e["event"]: e for e in logs}
    assert "handler_error" not in events
    assert events["line_too_long"]["log_level"] == "info"
    assert events["line_too_long"]["limit"] == 1024


def test_it_is_what_asyncio_raises_too() -> None:
    exc = LineTooLong(1024, 7)
    assert isinstance(exc, ValueError)  # asyncio's readline()
    assert isinstance(exc, asyncio.LimitOverrunError)  # asyncio's readuntil()
    assert (exc.limit, exc.consumed, exc.close) == (1024, 7, True)


async def test_a_handler_can_catch_it_and_go_on(tmp_path: Path) -> None:
    async with serve(_config("PoliteLines"), data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*server.address("lines")[:2])
        writer.write(b"x" * 5000 + b"\nafter\n")
        assert await reader.readline() == b"500 line too long\n"
        assert await reader.readline() == b"after\n"
        writer.close()
        await writer.wait_closed()
