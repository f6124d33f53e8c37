"""The floor for a DNS server on uvloop: a bare ``DatagramProtocol`` that answers the
benchmark's three questions from a table of finished replies — no parsing beyond a dict lookup
of the question bytes, no EDNS, no limits, no counters. Not a DNS server; the least Python work
per query, so ``dns_bench.py`` can show how much of the gap to NSD any uvloop server keeps.

python benchmarks/servers/raw_uvloop_dns.py PORT
"""

from __future__ import annotations

import asyncio
import struct
import sys
from typing import Any

import uvloop
from raw_uvloop_udp_echo import serve  # this script's directory is on sys.path

WWW = b"\x03www\x06aionet\x04test\x00"
APEX = b"\x06aionet\x04test\x00"


def rr(rtype: int, ttl: int, rdata: bytes) -> bytes:
    """One answer record whose owner points at the question (offset 12)."""
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


#: question bytes → (answer count, answer records)
ANSWERS = {
    WWW + b"\x00\x01\x00\x01": (1, rr(1, 60, bytes([127, 0, 0, 1]))),
    WWW + b"\x00\x1c\x00\x01": (1, rr(28, 60, bytes(15) + b"\x01")),
    APEX + b"\x00\x0f\x00\x01": (1, rr(15, 300, b"\x00\x0a\x04mail\xc0\x0c")),
}


class Floor(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        question = data[12:]
        found = ANSWERS.get(question)
        if found is None:
            return
        head = data[:2] + b"\x84\x00\x00\x01" + struct.pack("!HHH", found[0], 0, 0)
        self.transport.sendto(head + question + found[1], addr)


if __name__ == "__main__":
    uvloop.run(serve(Floor, int(sys.argv[1])))
