"""Small handlers the TLS tests serve (importable as ``tests.e2e.tls_handlers:...``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aionet import Connection, ProtocolHandler, StreamHandler
from aionet.core.starttls import upgrade
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


class UpgradingEcho(ProtocolHandler):
    """A line echo as a bare asyncio.Protocol that upgrades on ``STARTTLS``."""

    def protocol_factory(self) -> asyncio.Protocol:
        return _UpgradingEchoProtocol(self)


class _UpgradingEchoProtocol(asyncio.Protocol):
    def __init__(self, handler: UpgradingEcho) -> None:
        self.handler = handler
        self.tls = False
        self.upgrading = False
        self.early: list[bytes] = []  # TLS records' plaintext that beat the upgrade's return

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        if self.upgrading:  # decrypted data can arrive before upgrade() returns
            self.early.append(data)
            return
        if data.strip() == b"STARTTLS":
            self.transport.write(b"GO\n")
            self.upgrading = True
            self.upgrade_task = asyncio.ensure_future(self._upgrade())
            return
        self.transport.write(b"tls " + data if self.tls else b"plain " + data)

    async def _upgrade(self) -> None:
        assert self.handler.services.tls is not None
        ctx = self.handler.services.tls.context("alpha")
        self.transport = await upgrade(self.transport, self, ctx)
        self.tls, self.upgrading = True, False
        for data in self.early:
            self.data_received(data)
