"""Small handlers the TLS tests serve (importable as ``tests.e2e.tls_handlers:...``)."""

from __future__ import annotations

import json

from aionet import Connection, StreamHandler
from aionet.core.tls import peer_identity


class WhoAmI(StreamHandler):
    """Answers each line with what the server knows of this TLS session, as JSON."""

    async def handle(self, conn: Connection) -> None:
        while line := await conn.reader.readline():
            if line.strip() == b"STARTTLS":
                assert self.services.tls is not None
                conn.writer.write(b"GO\n")
                await conn.writer.drain()
                await conn.start_tls(self.services.tls.context("alpha"), timeout=5)
                continue
            tls = conn.tls
            info = {
                "tls": tls is not None,
                "version": tls["version"] if tls else None,
                "identity": peer_identity(conn.writer.get_extra_info("ssl_object")),
                "peer": list(conn.peer),
            }
            conn.writer.write(json.dumps(info).encode() + b"\n")
            await conn.writer.drain()
