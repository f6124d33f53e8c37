"""An echo written as an aionet ``StreamHandler`` (for the memory benchmark).

Served with ``protocol: "stream_echo_handler:StreamEcho"`` and ``benchmarks/`` on PYTHONPATH.
"""

from __future__ import annotations

from aionet import Connection, StreamHandler


class StreamEcho(StreamHandler):
    async def handle(self, conn: Connection) -> None:
        while data := await conn.reader.read(65536):
            conn.writer.write(data)
            await conn.writer.drain()
