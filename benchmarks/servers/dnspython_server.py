"""The baseline: a minimal authoritative DNS server on dnspython and uvloop (UDP only).

Every query is parsed with ``dns.message.from_wire`` and the reply is built with
``dns.message.make_response`` and rendered with ``to_wire``: what a straightforward dnspython
server does, without aionet's pre-rendered answers.

python benchmarks/servers/dnspython_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import uvloop

ORIGIN = dns.name.from_text("aionet.test.")
RECORDS = {
    (dns.name.from_text("www.aionet.test."), dns.rdatatype.A): dns.rrset.from_text(
        "www.aionet.test.", 60, "IN", "A", "127.0.0.1"
    ),
}
SOA = dns.rrset.from_text(
    "aionet.test.",
    300,
    "IN",
    "SOA",
    "ns1.aionet.test. hostmaster.aionet.test. 1 3600 600 604800 300",
)


def answer(data: bytes) -> bytes | None:
    try:
        query = dns.message.from_wire(data)
    except Exception:
        return None
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    for question in query.question:
        rrset = RECORDS.get((question.name, question.rdtype))
        if rrset is not None:
            reply.answer.append(rrset)
        elif question.name.is_subdomain(ORIGIN):
            reply.set_rcode(dns.rcode.NXDOMAIN)
            reply.authority.append(SOA)
        else:
            reply.set_rcode(dns.rcode.REFUSED)
            reply.flags &= ~dns.flags.AA
    return reply.to_wire()


class DnsProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = answer(data)
        if reply is not None:
            self.transport.sendto(reply, addr)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(DnsProtocol, local_addr=("127.0.0.1", port))
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
