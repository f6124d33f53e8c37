"""Datagram endpoints (UDP over IPv4/IPv6, unix datagram sockets) for ``DatagramHandler``.

One protocol object per bound socket: each datagram is counted, checked against the
listener's access rules (a refused one is dropped unanswered), and handed to
``handler.datagram(data, addr)``; the reply, if any (awaited when the handler returns an
awaitable), goes back to the sender.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import TYPE_CHECKING, Any, cast

from ..handler import DatagramHandler
from ._base import Listener, Security

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...config.models import ListenerConfig
    from ..acl import AccessControl
    from ..connections import ListenerSlot

__all__ = ["DatagramListener"]


class _DatagramProtocol(asyncio.DatagramProtocol):
    """The per-datagram path is kept to what a bare ``DatagramProtocol`` does plus four counter
    additions: the handler's bound method, the listener's stats and the transport's bound
    ``sendto`` are looked up once, and a reply of ``bytes`` (what a synchronous handler returns)
    is sent inline; only anything else goes through the awaitable check."""

    def __init__(
        self, slot: ListenerSlot, handler: DatagramHandler, access: AccessControl | None = None
    ) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.retarget(slot, handler, access)
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.get_running_loop().create_future()

    def retarget(
        self, slot: ListenerSlot, handler: DatagramHandler, access: AccessControl | None
    ) -> None:
        self.slot, self.handler, self.access = slot, handler, access
        self.stats = slot.stats
        self.datagram = handler.datagram

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)
        self.sendto = self.transport.sendto

    def datagram_received(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        stats.datagrams_in += 1
        stats.bytes_in += len(data)
        if self.access is not None and isinstance(addr, tuple):
            reason = self.access.check(addr[0])
            if reason is not None:  # dropped unanswered, counted like a refused connection
                stats.refused[reason] += 1
                return
        try:
            reply = self.datagram(data, addr)
        except Exception as exc:
            self.slot.handler_error(None, exc)
            return
        if type(reply) is bytes:  # the synchronous answer: no awaitable check, no extra call
            self.sendto(reply, addr)
            stats.datagrams_out += 1
            stats.bytes_out += len(reply)
        elif reply is None:
            return
        elif inspect.isawaitable(reply):
            task = asyncio.ensure_future(self._finish(reply, addr))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:  # bytearray, memoryview
            self._send(reply, addr)

    async def _finish(self, pending: Any, addr: Any) -> None:
        try:
            reply = await pending
        except Exception as exc:
            self.slot.handler_error(None, exc)
            return
        if reply is not None:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.sendto(reply, addr)
        self.stats.datagrams_out += 1
        self.stats.bytes_out += len(reply)

    def error_received(self, exc: Exception) -> None:
        self.slot.log.debug("datagram_error", error=repr(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class DatagramListener(Listener):
    """UDP (v4/v6) or unix datagram endpoint, for DatagramHandler."""

    transport_name = "udp"
    sock_type = socket.SOCK_DGRAM

    def __init__(
        self, config: ListenerConfig, slot: ListenerSlot, security: Security | None = None
    ) -> None:
        super().__init__(config, slot, security)
        self._transports: list[asyncio.DatagramTransport] = []
        self._protocols: list[_DatagramProtocol] = []
        if config.bind.kind == "unix":
            self.transport_name = "unix-dgram"

    def retarget(self, slot: ListenerSlot, security: Security) -> None:
        super().retarget(slot, security)
        handler = slot.handler
        assert isinstance(handler, DatagramHandler)
        for proto in self._protocols:
            proto.retarget(slot, handler, security.access)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = self.slot.handler
        assert isinstance(handler, DatagramHandler)
        self.bind()
        try:
            for sock in self.sockets:
                proto = _DatagramProtocol(self.slot, handler, self.security.access)
                transport, _ = await loop.create_datagram_endpoint(_returning(proto), sock=sock)
                self._transports.append(transport)
                self._protocols.append(proto)
        except BaseException:
            await self.stop()
            raise
        self.addresses = [sock.getsockname() for sock in self.sockets]

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        for proto in self._protocols:
            for task in list(proto.tasks):
                task.cancel()
        if self._protocols:  # the loop closes its socket (uvloop: a dup) only after this
            await asyncio.wait([p.closed for p in self._protocols], timeout=5)
        self._transports.clear()
        self._protocols.clear()
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        self._cleanup_unix()


def _returning(proto: _DatagramProtocol) -> Callable[[], _DatagramProtocol]:
    return lambda: proto
