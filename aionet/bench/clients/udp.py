"""``aionet bench udp HOST:PORT``: datagrams to an echo service; a missing reply is "lost"."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import TYPE_CHECKING, Any

from ..target import BenchError, Session, Target, parse_hostport

if TYPE_CHECKING:
    import argparse

__all__ = ["UdpTarget"]

_SEQ = struct.Struct("!Q")


class _UdpSession(asyncio.DatagramProtocol, Session):
    """One connected UDP socket; one datagram in flight, matched by an 8-byte sequence number.
    A late reply to an earlier (timed-out) datagram is ignored."""

    timeout_kind = "lost"

    def __init__(self, padding: bytes) -> None:
        self.padding = padding
        self.seq = 0
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.open = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done() or data[:8] != _SEQ.pack(self.seq):
            return
        if data[8:] != self.padding:
            waiter.set_exception(BenchError("protocol", "echoed datagram differs"))
        else:
            self.done_ns = time.perf_counter_ns()
            waiter.set_result(None)

    def error_received(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            kind = "refused" if isinstance(exc, ConnectionRefusedError) else "closed"
            waiter.set_exception(BenchError(kind, str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(BenchError("closed", "socket closed"))

    async def request(self) -> int:
        assert self.transport is not None
        self.seq += 1
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self.sent_ns = time.perf_counter_ns()
        self.transport.sendto(_SEQ.pack(self.seq) + self.padding)
        try:
            await waiter
        finally:
            self.waiter = None
        return 1

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()


class UdpTarget(Target):
    name = "udp"
    help = "UDP echo: one datagram in flight per socket, missing replies counted as lost"

    def __init__(self, host: str, port: int, size: int = 64) -> None:
        if not 8 <= size <= 65507:
            raise ValueError("--size must be 8..65507 (8 bytes carry the sequence number)")
        self.host, self.port, self.size = host, port, size
        self.padding = os.urandom(size - 8)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT", help="the UDP echo server")
        parser.add_argument("--size", type=int, default=64, help="datagram bytes (default 64)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> UdpTarget:
        return cls(*parse_hostport(args.target, 7), size=args.size)

    async def connect(self) -> Session:
        loop = asyncio.get_running_loop()
        padding = self.padding
        _, proto = await loop.create_datagram_endpoint(
            lambda: _UdpSession(padding), remote_addr=(self.host, self.port)
        )
        return proto

    def describe(self) -> dict[str, Any]:
        return {"address": f"{self.host}:{self.port}", "size": self.size}
