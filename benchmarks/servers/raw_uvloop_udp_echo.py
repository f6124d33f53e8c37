"""The practical Python limit for UDP: a bare ``asyncio.DatagramProtocol`` echo on uvloop.

python benchmarks/servers/raw_uvloop_udp_echo.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import uvloop


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def serve(protocol: Callable[[], asyncio.DatagramProtocol], port: int) -> None:
    """Serve ``protocol`` on 127.0.0.1:``port`` (UDP) until stopped; print READY once bound."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(protocol, local_addr=("127.0.0.1", port))
    print("READY", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        transport.close()


if __name__ == "__main__":
    uvloop.run(serve(Echo, int(sys.argv[1])))
