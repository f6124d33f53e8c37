"""Handlers the e2e tests serve (importable as ``tests.e2e.ops_handlers:Scribe`` etc.)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aionet import Connection, DatagramHandler, StreamHandler


class Scribe(StreamHandler):
    """Writes ``started`` into the data directory at start; appends each line it receives to
    ``lines`` there and answers ``ok UID GID``: what the process is when handlers run."""

    async def start(self) -> None:
        (self.services.data_dir / "started").write_text(f"{os.getuid()} {os.getgid()}\n")

    async def handle(self, conn: Connection) -> None:
        while line := await conn.reader.readline():
            with (self.services.data_dir / "lines").open("ab") as f:
                f.write(line)
            conn.writer.write(f"ok {os.getuid()} {os.getgid()}\n".encode())
            await conn.writer.drain()


class ReplyKinds(DatagramHandler):
    """Answers a datagram according to its first byte, covering each reply path of the
    datagram listener: ``b`` bytes, ``a`` bytearray, ``m`` memoryview, ``w`` an awaited
    coroutine, ``n`` nothing, ``x`` an exception."""

    def datagram(self, data: bytes, addr: Any) -> Any:
        kind, rest = data[:1], data[1:]
        if kind == b"b":
            return b"B" + rest
        if kind == b"a":
            return bytearray(b"A" + rest)
        if kind == b"m":
            return memoryview(b"M" + rest)
        if kind == b"w":
            return self._later(rest)
        if kind == b"x":
            raise RuntimeError("boom")
        return None

    async def _later(self, rest: bytes) -> bytes:
        await asyncio.sleep(0)
        return b"W" + rest
