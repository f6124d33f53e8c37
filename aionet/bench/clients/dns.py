"""``aionet bench dns HOST:PORT --name N --type T``: queries over UDP (default) or TCP.

Queries are built once with dnspython; each request sends the next (name, type) pair with a
fresh ID and checks the reply's ID, QR bit and RCODE (``--rcode``: the accepted ones).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
import time
from typing import TYPE_CHECKING, Any

import dns.message
import dns.rcode
import dns.rdatatype

from ..target import (
    BenchError,
    Session,
    Target,
    add_tls_arguments,
    client_tls_context,
    parse_hostport,
)
from ._stream import FutureProtocol, open_protocol

if TYPE_CHECKING:
    import argparse
    import ssl
    from collections.abc import Iterator

__all__ = ["DnsTarget"]

_ID = struct.Struct("!H")


def _check(reply: bytes, qid: int, accepted: frozenset[int]) -> None:
    if len(reply) < 12 or _ID.unpack_from(reply)[0] != qid or not reply[2] & 0x80:
        raise BenchError("protocol", "reply with another ID or not a response")
    rcode = reply[3] & 0x0F
    if rcode not in accepted:
        raise BenchError(f"rcode {dns.rcode.to_text(dns.rcode.Rcode(rcode))}")


class _Queries:
    def __init__(self, wires: list[bytes]) -> None:
        self._cycle: Iterator[bytes] = itertools.cycle(wires)
        self._ids = random.Random()

    def next(self) -> tuple[int, bytes]:
        qid = self._ids.getrandbits(16)
        return qid, _ID.pack(qid) + next(self._cycle)[2:]


class _UdpDns(asyncio.DatagramProtocol, Session):
    def __init__(self, queries: _Queries, accepted: frozenset[int]) -> None:
        self.queries, self.accepted = queries, accepted
        self.waiter: asyncio.Future[bytes] | None = None
        self.qid = -1
        self.transport: asyncio.DatagramTransport | None = None
        self.open = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done() and data[:2] == _ID.pack(self.qid):
            self.done_ns = time.perf_counter_ns()
            waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BenchError("closed", "socket closed"))

    async def request(self) -> int:
        assert self.transport is not None
        self.qid, wire = self.queries.next()
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self.sent_ns = time.perf_counter_ns()
        self.transport.sendto(wire)
        _check(await waiter, self.qid, self.accepted)
        return 1

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()


class _TcpDns(FutureProtocol):
    def __init__(self, queries: _Queries, accepted: frozenset[int]) -> None:
        super().__init__()
        self.queries, self.accepted = queries, accepted
        self.buffer = bytearray()
        self.qid = -1
        self.reply = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if len(buf) >= 2:
            size = _ID.unpack_from(buf)[0]
            if len(buf) >= 2 + size:
                self.reply = bytes(buf[2 : 2 + size])
                del buf[: 2 + size]
                self.done()

    async def request(self) -> int:
        waiter = self.new_waiter()
        self.qid, wire = self.queries.next()
        self.send(_ID.pack(len(wire)) + wire)
        await waiter
        _check(self.reply, self.qid, self.accepted)
        return 1


class DnsTarget(Target):
    name = "dns"
    help = "DNS queries (names x types) over UDP or TCP"

    def __init__(
        self,
        host: str,
        port: int,
        questions: list[tuple[str, str]],
        *,
        tcp: bool = False,
        rcodes: list[str] | None = None,
        args: argparse.Namespace | None = None,
    ) -> None:
        if not questions:
            raise ValueError("give at least one --name")
        self.host, self.port, self.questions, self.tcp = host, port, questions, tcp
        self.rcode_names = rcodes or ["NOERROR", "NXDOMAIN"]
        try:
            self.accepted = frozenset(int(dns.rcode.from_text(r)) for r in self.rcode_names)
            self.wires = [
                dns.message.make_query(n, dns.rdatatype.from_text(t)).to_wire()
                for n, t in questions
            ]
        except Exception as exc:
            raise ValueError(f"bad query: {exc}") from None
        self._args = args
        self.tls: ssl.SSLContext | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT", help="the DNS server (port 53)")
        parser.add_argument(
            "--name", action="append", default=[], help="name to query (repeatable)"
        )
        parser.add_argument(
            "--type",
            dest="qtype",
            action="append",
            default=[],
            help="record type (repeatable; default A); every name is asked every type",
        )
        parser.add_argument("--tcp", action="store_true", help="query over TCP")
        parser.add_argument(
            "--rcode",
            action="append",
            default=[],
            help="accepted response code (repeatable; default NOERROR and NXDOMAIN)",
        )
        add_tls_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsTarget:
        host, port = parse_hostport(args.target, 53)
        questions = [(n, t) for n in args.name for t in (args.qtype or ["A"])]
        return cls(host, port, questions, tcp=args.tcp or args.tls, rcodes=args.rcode, args=args)

    def prepare(self) -> None:
        if self._args is not None and self._args.tls:
            self.tls = client_tls_context(self._args, ["dot"])

    async def connect(self) -> Session:
        queries, accepted = _Queries(self.wires), self.accepted
        if self.tcp:
            sni = self._args.sni if self._args is not None else None
            return await open_protocol(
                lambda: _TcpDns(queries, accepted), self.host, self.port, self.tls, sni
            )
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: _UdpDns(queries, accepted), remote_addr=(self.host, self.port)
        )
        return proto

    def describe(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "transport": "tls" if self.tls else "tcp" if self.tcp else "udp",
            "questions": [f"{n} {t}" for n, t in self.questions],
            "rcodes": self.rcode_names,
        }
