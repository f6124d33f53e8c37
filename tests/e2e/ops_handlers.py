"""A handler the privilege tests serve (importable as ``tests.e2e.ops_handlers:Scribe``)."""

from __future__ import annotations

import os

from aionet import Connection, StreamHandler


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
