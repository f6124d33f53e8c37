"""Stream endpoints (TCP over IPv4/IPv6, unix stream sockets) and their accept loop.

aionet owns ``accept()`` (``_AcceptLoop``) instead of using ``loop.create_server``, so that
everything between the kernel's accept and a protocol's ``connection_made`` happens in one
place, the same on uvloop and asyncio: access control; a PROXY protocol header, read before any
byte reaches a protocol (``aionet.proto.proxy`` parses it); a reservation against the caps
where a TLS handshake or a PROXY header can take seconds; the TLS wrapping itself (the loop's
SSL layer, with the ``protocol_version`` alert it would drop); and a back-off when accept()
runs out of descriptors or memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import resource
import socket
from typing import TYPE_CHECKING, Any

from ...errors import StartupError
from ...proto.proxy import ProxyHeader, ProxyProtocolError, parse_proxy_header
from ..acl import trusted
from ..connections import Reservation, StreamProtocol, format_peer, track
from ..handler import ProtocolHandler, StreamHandler
from ._base import Listener, Security

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...config.models import ListenerConfig
    from ..connections import ListenerSlot

__all__ = ["ACCEPT_BACKOFF", "ACCEPT_CAPACITY_ERRNOS", "PROTOCOL_VERSION_ALERT", "StreamListener"]

#: accept() errors that mean "out of resources": log, back off, retry (never crash, never spin).
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_BACKOFF = 0.1
#: The fatal ``protocol_version`` alert (RFC 8446 §6.2, RFC 8996 §5) for a client offering only
#: TLS versions below the listener's minimum. OpenSSL writes it, but asyncio's and uvloop's SSL
#: layers abort the transport without flushing it: the listener sends it itself.
PROTOCOL_VERSION_ALERT = bytes.fromhex("15030100020246")


class StreamListener(Listener):
    """TCP (v4/v6) or unix stream endpoint, for StreamHandler and ProtocolHandler."""

    transport_name = "tcp"

    def __init__(
        self, config: ListenerConfig, slot: ListenerSlot, security: Security | None = None
    ) -> None:
        super().__init__(config, slot, security)
        self._accepting: list[_AcceptLoop] = []
        if config.bind.kind == "unix":
            self.transport_name = "unix"

    def _factory(self, loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.BaseProtocol]:
        slot = self.slot
        handler = slot.handler
        if isinstance(handler, StreamHandler):
            return lambda: StreamProtocol(slot, handler, loop)
        if isinstance(handler, ProtocolHandler):
            make = handler.protocol_factory
            return lambda: track(make(), slot)
        raise StartupError(f"{self.describe()}: {type(handler).__name__} cannot serve streams")

    def retarget(self, slot: ListenerSlot, security: Security) -> None:
        super().retarget(slot, security)
        loop = asyncio.get_running_loop()
        for accept in self._accepting:
            accept.retarget(self._factory(loop))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.bind()
        factory = self._factory(loop)
        try:
            for sock in self.sockets:
                sock.listen(self.config.backlog)
                sock.setblocking(False)
                accept = _AcceptLoop(loop, sock, factory, self)
                accept.start()
                self._accepting.append(accept)
        except BaseException:
            await self.stop()
            raise
        self.addresses = [sock.getsockname() for sock in self.sockets]

    async def stop(self) -> None:
        for accept in self._accepting:
            accept.stop()
        self._accepting.clear()
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        self._cleanup_unix()


class _AcceptLoop:
    """Accepts with ``loop.add_reader`` and hands sockets to ``loop.connect_accepted_socket``.

    Owning accept() (instead of ``loop.create_server``) gives the same behaviour on uvloop and
    asyncio for the errors that matter to a daemon: on EMFILE/ENFILE/ENOMEM/ENOBUFS the loop
    logs once, stops reading the listening socket for ``ACCEPT_BACKOFF`` seconds and retries;
    other accept errors (a peer that reset before accept) are skipped. It drains up to
    ``backlog`` pending connections per wake-up, like asyncio's own accept loop.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.BaseProtocol],
        listener: StreamListener,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.listener = listener
        self.batch = listener.config.backlog
        self.family, self.kind = sock.family, sock.type
        self.tcp = sock.family != socket.AF_UNIX
        self.security_checks = False
        self.reserving = False
        self.retarget(factory)
        self.pending: set[asyncio.Task[Any]] = set()
        self._paused: asyncio.TimerHandle | None = None
        self._stopped = False
        self._capacity_logged = False

    def retarget(self, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        """Use ``factory`` and the listener's (possibly new) security from now on."""
        self.factory = factory
        security = self.listener.security
        self.security_checks = (
            security.proxies is not None
            or security.access is not None
            or security.forwarders is not None
        )
        # Where a handshake or a header can take seconds, count the connection from accept.
        self.reserving = security.proxies is not None or security.tls is not None

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    def stop(self) -> None:
        self._stopped = True
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        else:
            self.loop.remove_reader(self.sock.fileno())

    def _on_readable(self) -> None:
        accept = self.sock._accept  # type: ignore[attr-defined]  # fd, addr: no wrapper object
        family, kind = self.family, self.kind
        for _ in range(self.batch):
            try:
                fd, _addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    self._back_off(exc)
                    return
                continue  # ECONNABORTED, EPROTO...: that peer is gone, keep accepting
            self._capacity_logged = False
            conn = socket.socket(family, kind, 0, fd)
            if self.security_checks:
                self._check(conn, _addr)
            elif self.reserving:
                self._reserve(conn, _addr, _addr)
            else:
                self._hand_over(conn)

    def _check(self, conn: socket.socket, addr: Any) -> None:
        """Access control and PROXY header before any byte reaches a protocol."""
        ip = addr[0] if isinstance(addr, tuple) else None
        security = self.listener.security
        if security.proxies is not None:
            if ip is not None and not trusted(ip, security.proxies):
                self._deny(conn, addr, "untrusted_proxy")
                return
            # The proxy is trusted: its own address counts against no per-IP cap; the client
            # the header names does, from the moment it is known.
            reservation = self._reserve(conn, addr, None, hand_over=False)
            if reservation is not None:
                self._spawn(self._read_proxy(conn, addr, reservation))
            return
        if ip is not None and security.forwarders is not None and security.forwarders(ip):
            # A reverse proxy: its clients are checked per request, by the handler.
            self._reserve(conn, addr, None)
            return
        reason = security.access.check(ip) if security.access and ip else None
        if reason is not None:
            self._deny(conn, addr, reason)
        elif self.reserving:
            self._reserve(conn, addr, addr)
        else:
            self._hand_over(conn)

    def _reserve(
        self, conn: socket.socket, addr: Any, counted: Any, *, hand_over: bool = True
    ) -> Reservation | None:
        """Count the connection against every cap now (``counted``: the address whose per-IP
        caps apply), or refuse it at once; then hand it over unless told otherwise."""
        slot = self.listener.slot
        ip = counted[0] if isinstance(counted, tuple) else None
        reservation = slot.manager.reserve(slot, ip)
        if isinstance(reservation, str):
            self._deny(conn, addr, reservation, reply=self.listener.security.tls is None)
            return None
        if hand_over:
            self._hand_over(conn, reservation)
        return reservation

    async def _read_proxy(self, conn: socket.socket, addr: Any, reservation: Reservation) -> None:
        security = self.listener.security
        try:
            async with asyncio.timeout(security.proxy_timeout):
                header = await _read_proxy_header(self.loop, conn)
        except (TimeoutError, ProxyProtocolError, OSError) as exc:
            reservation.release()
            self._deny(conn, addr, "proxy_header", error=str(exc) or type(exc).__name__)
            return
        except BaseException:  # cancelled with the listener
            reservation.release()
            conn.close()
            raise
        peer = addr if header.local or header.source is None else header.source
        forwarder = security.forwarders is not None and security.forwarders(peer[0])
        reason = security.access.check(peer[0]) if security.access and not forwarder else None
        if reason is None and not header.local:
            if forwarder:
                reservation.peer = peer  # a proxy behind PROXY: no per-IP cap on its address
            else:
                reason = reservation.move_to(peer)
        if reason is not None:
            reservation.release()
            self._deny(conn, peer, reason, reply=security.tls is None)
            return
        # A fresh descriptor: the one we waited on may still be registered with the loop's
        # poller (uvloop closes its poll handle lazily), which would make the transport's own
        # registration fail with EBUSY.
        fresh = conn.dup()
        conn.close()
        self._hand_over(fresh, reservation)

    def _deny(
        self, conn: socket.socket, addr: Any, reason: str, *, reply: bool = False, **extra: Any
    ) -> None:
        """Refuse at accept: count, log, and close (after the handler's refusal line when
        ``reply`` and the connection is plain text)."""
        slot = self.listener.slot
        slot.stats.refused[reason] += 1
        slot.log.info("connection_refused", peer=format_peer(addr), reason=reason, **extra)
        if reply and slot.refusal:
            with contextlib.suppress(OSError):
                conn.send(slot.refusal, socket.MSG_DONTWAIT)
        conn.close()

    def _hand_over(self, conn: socket.socket, reservation: Reservation | None = None) -> None:
        conn.setblocking(False)
        if self.tcp:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        factory = self.factory if reservation is None else _reserved(self.factory, reservation)
        tls = self.listener.security.tls
        spare = None
        if tls is None:
            coro = self.loop.connect_accepted_socket(factory, conn)
        else:
            # Kept through the handshake to send the alert the loop's SSL layer drops: one more
            # fd per pending handshake (bounded by the caps, which count it from accept).
            with contextlib.suppress(OSError):  # EMFILE: then only the alert is lost
                spare = conn.dup()
            coro = self.loop.connect_accepted_socket(
                factory, conn, ssl=tls.context, ssl_handshake_timeout=tls.handshake_timeout
            )
        self._spawn(coro, reservation, spare)

    def _spawn(
        self, coro: Any, reservation: Reservation | None = None, spare: socket.socket | None = None
    ) -> None:
        task = self.loop.create_task(coro)
        self.pending.add(task)
        if reservation is None and spare is None:
            task.add_done_callback(self._handed)
        else:
            task.add_done_callback(
                functools.partial(self._handed, reservation=reservation, spare=spare)
            )

    def _handed(
        self,
        task: asyncio.Task[Any],
        reservation: Reservation | None = None,
        spare: socket.socket | None = None,
    ) -> None:
        self.pending.discard(task)
        if reservation is not None:  # a handshake that failed before connection_made
            reservation.release()  # gives the counts back (a no-op once claimed)
        exc = None if task.cancelled() else task.exception()
        if spare is not None:
            if getattr(exc, "reason", None) == "UNSUPPORTED_PROTOCOL":
                with contextlib.suppress(OSError):
                    spare.send(PROTOCOL_VERSION_ALERT, socket.MSG_DONTWAIT)
            spare.close()
        if exc is None:
            return
        slot = self.listener.slot
        if self.listener.security.tls is not None:
            slot.stats.tls_failures += 1
            slot.log.info("tls_handshake_failed", error=str(exc) or type(exc).__name__)
        else:
            slot.log.debug("accept_failed", error=repr(exc))

    def _back_off(self, exc: OSError) -> None:
        if not self._capacity_logged:
            extra: dict[str, Any] = {}
            if exc.errno == errno.EMFILE:  # this process's own limit: say which, and the fix
                extra["open_files_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                extra["fix"] = "raise it: ulimit -n, systemd LimitNOFILE=, or lower the caps"
            self.listener.slot.log.error(
                "accept_out_of_resources",
                error=os.strerror(exc.errno or 0),
                retry_in=ACCEPT_BACKOFF,
                live_connections=len(self.listener.slot.manager.live),
                **extra,
            )
            self._capacity_logged = True
        self.listener.slot.stats.refused[
            "accept_" + errno.errorcode.get(exc.errno or 0, "error")
        ] += 1
        self.loop.remove_reader(self.sock.fileno())
        self._paused = self.loop.call_later(ACCEPT_BACKOFF, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if not self._stopped:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)


def _reserved(
    factory: Callable[[], asyncio.BaseProtocol], reservation: Reservation
) -> Callable[[], asyncio.BaseProtocol]:
    """A factory whose protocol claims ``reservation`` when it is admitted (its
    ``connection_made`` passes ``_aionet_peer`` to ``ListenerSlot.admit``); the reservation
    carries the client a PROXY header named, if any."""

    def make() -> asyncio.BaseProtocol:
        protocol = factory()
        protocol._aionet_peer = reservation  # type: ignore[attr-defined]
        return protocol

    return make


async def _read_proxy_header(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> ProxyHeader:
    """Peek until a whole PROXY header is there, then consume exactly its bytes."""
    limit = 4096
    while True:
        ready = loop.create_future()
        loop.add_reader(conn.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
        data = conn.recv(limit, socket.MSG_PEEK)
        if not data:
            raise ConnectionError("closed before the PROXY header")
        header = parse_proxy_header(data, max_v2=limit)
        if header is not None:
            conn.recv(header.length)
            return header
        await asyncio.sleep(0.01)  # part of a header: the socket stays readable, so wait a bit
