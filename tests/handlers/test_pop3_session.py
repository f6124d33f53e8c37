"""The ``pop3`` handler in-process: ``Pop3Handler.handle(conn)`` on in-memory streams.

The test is the client on a ``MemoryTransport`` (``aionet.testing.memory_connection()``) and
sees every ``write`` the session makes: what a pipelining client (RFC 2449 PIPELINING) gets
back, and in how many writes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aionet.storage.maildir import Maildir, deliver_many
from aionet.testing import memory_connection
from tests.e2e.mail_helpers import make_users
from tests.handlers.conftest import BuildHandler, record_writes, serve_session
from tests.waiting import wait_until


class Client:
    """The client's end of one POP3 session; ``writes`` holds each write the server made."""

    def __init__(self, handler: Any) -> None:
        conn, self.transport = memory_connection(handler)
        self.writes = record_writes(self.transport)
        self.session = asyncio.create_task(serve_session(handler, conn))
        self.received = b""

    async def until(self, end: bytes) -> bytes:
        """Everything received up to and including the next ``end``."""

        def arrived() -> bool:
            self.received += self.transport.take()
            return end in self.received

        await wait_until(arrived, 5, what=f"{end!r} from the server")
        text, _, self.received = self.received.partition(end)
        return text + end

    def send(self, *lines: bytes) -> None:
        self.transport.feed(b"".join(line + b"\r\n" for line in lines))


async def session(build_handler: BuildHandler, tmp_path: Path, *bodies: bytes) -> Client:
    handler = await build_handler(
        "pop3", {"auth_without_tls": True}, users_file=make_users(tmp_path)
    )
    box = Maildir(tmp_path / "data" / "mail" / "localhost" / "alice")
    for body in bodies:
        deliver_many([box], body)
    client = Client(handler)
    await client.until(b"\r\n")  # the greeting
    client.send(b"USER alice")
    assert (await client.until(b"\r\n")).startswith(b"+OK")
    client.send(b"PASS alice-pw")
    assert (await client.until(b"\r\n")).startswith(b"+OK")
    client.writes.clear()
    return client


async def test_a_pipelined_batch_is_answered_in_one_write(
    build_handler: BuildHandler, tmp_path: Path
) -> None:
    client = await session(
        build_handler, tmp_path, b"Subject: one\r\n\r\n1\r\n", b"S: 2\r\n\r\n2\r\n"
    )
    client.send(b"STAT", b"LIST", b"RETR 1", b"DELE 2", b"RETR 2", b"NOOP")
    text = await client.until(b"-ERR")  # RETR 2 after DELE 2
    text += await client.until(b"\r\n") + await client.until(b"+OK\r\n")  # and NOOP's
    assert text.startswith(b"+OK 2 ")
    assert b"\r\nSubject: one\r\n\r\n1\r\n.\r\n+OK" in text
    assert len(client.writes) == 1 and client.writes[0] == text  # all six in one write
    client.send(b"NOOP")  # one command: answered at once, its own write
    assert await client.until(b"\r\n") == b"+OK\r\n"
    assert client.writes[1:] == [b"+OK\r\n"]
    client.send(b"QUIT")
    await client.until(b"\r\n")
    await asyncio.wait_for(client.session, 5)


async def test_a_long_pipelined_run_of_retrs_is_written_in_bounded_pieces(
    build_handler: BuildHandler, tmp_path: Path
) -> None:
    body = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
    body *= 400  # ~34 KiB each
    client = await session(build_handler, tmp_path, *[body] * 6)
    client.send(*[f"RETR {n}".encode() for n in range(1, 7)])
    for _ in range(6):
        await client.until(b"\r\n.\r\n")
    assert 3 <= len(client.writes) <= 6  # gathered up to 64 KiB, not all six at the end
    assert max(map(len, client.writes)) < 64 * 1024 + len(body) + 64
    client.send(b"QUIT")
    await client.until(b"\r\n")
    await asyncio.wait_for(client.session, 5)
