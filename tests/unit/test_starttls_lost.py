"""``core.starttls.upgrade``: a connection lost during the handshake is released.

asyncio's and uvloop's TLS layers mostly tell only ``start_tls``'s caller when the connection
goes away mid-handshake (uvloop even hands back the dead TLS transport), not the protocol:
without ``upgrade`` telling it, the connection manager kept such a connection live for good.
The protocol here is tracked by a real connection manager; the other end is a loopback socket
that never sends a TLS hello.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
import trustme
import uvloop

from aionet.config.models import Limits
from aionet.core.connections import ConnectionManager, track
from aionet.core.handler import HandlerOptions, ProtocolHandler, Services
from aionet.core.starttls import upgrade
from tests.waiting import wait_until

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


class Quiet(ProtocolHandler):
    def protocol_factory(self) -> asyncio.Protocol:
        return asyncio.Protocol()


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    return context


async def _lost_mid_handshake(how: str) -> ConnectionManager:
    services = Services(listener="l", data_dir=Path("."), log=structlog.get_logger())
    manager = ConnectionManager(Limits())
    slot = manager.add_listener("l", Quiet(HandlerOptions(), services), Limits())
    protocol = track(slot.handler.protocol_factory(), slot)  # type: ignore[attr-defined]
    server = await asyncio.get_running_loop().create_server(lambda: protocol, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    try:
        await wait_until(lambda: manager.live, 2, what="the connection admitted")
        [rec] = manager.live.values()
        if how == "timeout":
            with pytest.raises(ConnectionError):
                await upgrade(rec.transport, protocol, _context(), timeout=0.2)
        else:  # closed by the core meanwhile (the idle sweep), or its task cancelled
            task = asyncio.ensure_future(upgrade(rec.transport, protocol, _context(), timeout=10))
            await asyncio.sleep(0.05)  # the handshake under way, the client silent
            assert rec.upgrading  # (no idle goodbye now)
            if how == "closed":
                rec.close()
            else:
                task.cancel()
            with pytest.raises((ConnectionError, asyncio.CancelledError)):
                await task
        await wait_until(lambda: not manager.live, 2, what="the connection released")
        await asyncio.sleep(0.05)  # whatever the TLS layer still had scheduled has run
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
    return manager


@pytest.mark.parametrize("how", ["timeout", "closed", "cancelled"])
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_connection_lost_during_the_handshake_is_released(loop: str, how: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        manager = runner.run(_lost_mid_handshake(how))
    stats = manager.slots["l"].stats
    assert manager.live == {} and stats.closed == 1  # released, once
