"""TCP echo: the hot path, an ``asyncio.Protocol`` that tracks itself inline.

Each read is written straight back (no copy, no per-message allocation beyond the bytes the
loop hands us). Flow control keeps memory bounded: when the peer stops reading and the
transport's write buffer passes its high-water mark, reading pauses until it drains.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from ..core.connections import Tracked
from ..core.handler import HandlerOptions, ProtocolHandler

if TYPE_CHECKING:
    from ..core.connections import ConnectionRecord

__all__ = ["EchoHandler", "EchoProtocol"]


class EchoProtocol(Tracked, asyncio.Protocol):
    __slots__ = ("_aionet_peer", "_aionet_rec", "_aionet_slot", "transport")

    def __init__(self) -> None:
        self._aionet_rec: ConnectionRecord | None = None
        self._aionet_peer = None

    # The callbacks do the connection manager's bookkeeping inline (see ``Tracked``), to keep
    # the per-read cost to two additions and a copy.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._aionet_rec = self._aionet_slot.admit(transport, self._aionet_peer)
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        rec = self._aionet_rec
        if rec is not None:
            n = len(data)
            rec.bytes_in += n
            rec.bytes_out += n
            rec.last_active = rec.clock.now
            self.transport.write(data)

    def eof_received(self) -> bool | None:
        return None  # half-close from the peer: close our side once the echo is flushed

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        rec = self._aionet_rec
        if rec is not None:
            self._aionet_rec = None
            rec.release()


class EchoHandler(ProtocolHandler):
    """``protocol: echo`` — every byte received is sent back."""

    class Options(HandlerOptions):
        pass

    def protocol_factory(self) -> asyncio.Protocol:
        return EchoProtocol()
