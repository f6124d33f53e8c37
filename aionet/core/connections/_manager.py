"""The live table: connection records, listener slots, the manager, reservations.

The manager admits or refuses each new connection (global, per-listener and per-IP caps), keeps
the live table (id → record), closes idle connections with one periodic sweep, counts what
happened, and drives drain: refuse new connections, wait on an event that fires at zero
connections, abort the rest.

Costs on the hot path are kept to what the numbers need: admission is a few integer compares
and a dict insert in ``connection_made``; per read, a protocol adds to two integers and copies a
float (``clock.now``, a coarse clock the sweep advances, instead of a syscall or a timer per
connection); release is a dict delete in ``connection_lost``.

A connection counts against every cap from ``accept()``: on a TLS or PROXY listener, where a
handshake or a header can take seconds, the listener takes a ``Reservation`` at accept (the
same counters a live connection holds) and ``admit`` turns it into the record, so silent
clients cannot hold more sockets than the caps allow. A plain listener admits in
``connection_made``, in the same loop iteration as the accept.

The four classes name each other (a record's slot, a slot's manager, the manager's records, a
reservation's slot), so they live together; what does not need them is beside this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any, cast

import structlog

from ..sessions import say_goodbye
from ._counters import Clock, ListenerStats, decrement, format_peer
from ._outq import unsent
from ._wheel import Bucket, DeadlineWheel

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from ...config.models import Limits
    from ..handler import Handler

__all__ = [
    "HALF_CLOSE_TIMEOUT",
    "IDLE_CLOSE_GRACE",
    "ConnectionManager",
    "ConnectionRecord",
    "ListenerSlot",
    "Reservation",
]

_log = structlog.get_logger("aionet.core")

#: How long a connection closed for idleness may take to flush before it is aborted.
IDLE_CLOSE_GRACE = 5.0

#: How long a wrapped third-party protocol may keep a connection the peer has half-closed (sent
#: EOF on) without writing anything before the sweep closes it (HAProxy's ``timeout client-fin``).
#: A peer that closed its socket looks exactly like one that only shut down its write side until
#: something is written to it, so a protocol that neither writes nor closes after EOF would
#: otherwise hold the socket in CLOSE-WAIT, counted as live, until the idle timeout.
HALF_CLOSE_TIMEOUT = 5.0


def _running_task() -> asyncio.Task[Any] | None:
    """The task running now, or None (a loop callback; no running loop at all)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class ConnectionRecord:
    """One live connection in the table."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "clock",
        "closing_since",
        "due",
        "eof_at",
        "eof_out",
        "id",
        "ip",
        "kind",
        "last_active",
        "out_mark",
        "peer",
        "slot",
        "started",
        "task",
        "transport",
        "upgrading",
    )

    def __init__(
        self,
        cid: int,
        slot: ListenerSlot,
        transport: asyncio.BaseTransport,
        peer: Any,
        ip: str | None,
    ) -> None:
        self.id = cid
        self.slot = slot
        # uvloop transports are not asyncio.Transport subclasses; both have abort() and write().
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.peer = peer
        self.ip = ip
        self.clock = slot.manager.clock
        self.started = time.monotonic()
        self.last_active = self.clock.now
        self.bytes_in = 0
        self.bytes_out = 0
        self.task: asyncio.Task[None] | None = None
        self.closing_since: float | None = None
        #: When a wrapped third-party protocol kept the connection open after the peer's EOF
        #: (and ``bytes_out`` then): the sweep's half-close clock, restarted by output.
        self.eof_at: float | None = None
        self.eof_out = 0
        #: What the connection became when a protocol switched (``websocket``), else None.
        self.kind: str | None = None
        #: The sweep wheel's bucket this record is filed in (None: not filed).
        self.due: Bucket | None = None
        #: An in-band TLS handshake (STARTTLS) is under way (``core.starttls.upgrade``).
        self.upgrading = False
        #: Where the output stood at the sweep's last look: bytes written, bytes not yet taken
        #: by the client (``output_moved``).
        self.out_mark: tuple[int, int] | None = None

    def release(self) -> None:
        """The connection is gone (``connection_lost``): drop it from the table, count, log."""
        self.slot.release(self)

    def close(self) -> None:
        """Close gracefully: pending writes are flushed first."""
        if self.closing_since is None:
            self.closing_since = self.clock.now
            self.slot.manager.file(self, self.closing_since + IDLE_CLOSE_GRACE)
        self.transport.close()

    def output_moved(self) -> bool:
        """Whether the client is taking output that waited for it since the sweep's last look
        (it reads a long reply slowly: a RETR, a FETCH); remembers this look's mark.

        Reading counts as activity, as input does: a client that takes an 8 MB message over a
        slow link for longer than the idle timeout is not cut off in the middle, nor at once
        after it. What waits is the transport's buffer and the socket's send queue (the
        kernel holds megabytes a slow client has not taken yet). Output nobody takes does not
        count.
        """
        transport = self.transport
        try:
            pending = transport.get_write_buffer_size() + unsent(transport)
        except Exception:  # a transport without the method, or one torn down
            pending = 0
        mark, last = (self.bytes_out, pending), self.out_mark
        self.out_mark = mark
        return mark != last and (pending > 0 or (last is not None and last[1] > 0))

    def close_idle(self, now: float | None = None) -> None:
        """Close for inactivity — the idle sweep, or the protocol's own timer (aiosmtpd's
        ``timeout``, IMAP's IDLE autologout): counted (``idle_closed``) and logged
        (``connection_idle_timeout``); the listener's idle goodbye first, when it can be said
        now (``core.sessions.say_goodbye``; never into a STARTTLS handshake, never once
        closing); then ``close()``, and the handler task is cancelled unless it is the caller.
        """
        slot = self.slot
        if now is None:
            now = self.clock.now
        slot.stats.idle_closed += 1
        self.bind_log().info("connection_idle_timeout", idle=round(now - self.last_active, 3))
        if self.closing_since is None and not self.upgrading:
            self.bytes_out += say_goodbye(self.transport, slot.goodbye)
        self.close()
        task = self.task
        if task is not None and not task.done() and task is not _running_task():
            task.cancel()

    def half_close(self) -> None:
        """The peer sent EOF and the (third-party) protocol keeps the connection open: start
        the half-close clock, which the sweep restarts on output (``HALF_CLOSE_TIMEOUT``)."""
        self.eof_at, self.eof_out = self.clock.tick(), self.bytes_out
        self.slot.manager.half_closed.add(self)

    def abort(self) -> None:
        """Close now, dropping pending writes; cancel the handler task if any."""
        self.transport.abort()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def bind_log(self) -> FilteringBoundLogger:
        return self.slot.log.bind(conn_id=self.id, peer=format_peer(self.peer))

    def as_dict(self) -> dict[str, Any]:
        now = self.clock.now
        return {
            "id": self.id,
            "listener": self.slot.name,
            "peer": format_peer(self.peer),
            "age": round(now - self.started, 3),
            "idle": round(now - self.last_active, 3),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


class ListenerSlot:
    """A listener's place in the manager: its handler, limits, live count and counters."""

    __slots__ = (
        "count",
        "emptied",
        "goodbye",
        "handler",
        "idle_timeout",
        "log",
        "log_closed",
        "log_opened",
        "manager",
        "max_connections",
        "max_per_ip",
        "name",
        "per_ip",
        "refusal",
        "stats",
    )

    def __init__(
        self,
        manager: ConnectionManager,
        name: str,
        handler: Handler,
        limits: Limits,
        stats: ListenerStats | None = None,
    ) -> None:
        self.manager = manager
        self.name = name
        self.handler = handler
        #: Set when ``count`` drops to 0 while someone waits (a handler retired by a reload).
        self.emptied: asyncio.Event | None = None
        self.max_connections = limits.max_connections
        self.max_per_ip = limits.max_connections_per_ip
        default_idle = manager.limits.idle_timeout
        self.idle_timeout = limits.idle_timeout if limits.idle_timeout is not None else default_idle
        self.count = 0
        self.per_ip: dict[str, int] = {}
        self.stats = stats if stats is not None else ListenerStats()
        self.refusal = handler.refusal()
        self.goodbye = handler.idle_goodbye()
        self.log: FilteringBoundLogger = _log.bind(listener=name)
        # Skip building the per-connection log event when it would be filtered out anyway.
        is_enabled = getattr(self.log, "is_enabled_for", None)
        self.log_closed = is_enabled is None or is_enabled(logging.INFO)
        self.log_opened = is_enabled is None or is_enabled(logging.DEBUG)

    def admit(self, transport: asyncio.BaseTransport, peer: Any = None) -> ConnectionRecord | None:
        """Admit the connection and return its record, or refuse it (reply, close) → None.

        ``peer`` overrides the socket's peer address (the client a trusted PROXY header named),
        or is the ``Reservation`` the listener took at accept (then the caps were checked and
        counted already).
        """
        if isinstance(peer, Reservation):
            return self.manager.claim(peer, transport)
        if peer is None:
            peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else None
        reason = self.manager.check(self, ip)
        if reason is not None:
            self.refuse(transport, peer, reason)
            return None
        return self.manager.add(self, transport, peer, ip)

    def refuse(self, transport: asyncio.BaseTransport, peer: Any, reason: str) -> None:
        self.stats.refused[reason] += 1
        self.log.info("connection_refused", peer=format_peer(peer), reason=reason)
        if self.refusal:
            cast("asyncio.WriteTransport", transport).write(self.refusal)
        transport.close()

    def release(self, rec: ConnectionRecord) -> None:
        self.manager.remove(rec)

    async def wait_empty(self) -> None:
        """Wait (on an event) until no connection of this slot is live."""
        while self.count:
            self.emptied = asyncio.Event()
            try:
                await self.emptied.wait()
            finally:
                self.emptied = None

    def handler_error(self, rec: ConnectionRecord | None, exc: BaseException) -> None:
        self.stats.handler_errors += 1
        log = rec.bind_log() if rec is not None else self.log
        log.error("handler_error", error=repr(exc), exc_info=exc)


class ConnectionManager:
    """Admission, the live table, the idle sweep, drain, and counters. One per process."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.clock = Clock()
        self.live: dict[int, ConnectionRecord] = {}
        #: Connections accepted and counted but not yet live (TLS handshake, PROXY header).
        self.reserved = 0
        self.per_ip: dict[str, int] = {}
        self.slots: dict[str, ListenerSlot] = {}
        self.draining = False
        self._ids = itertools.count(1)
        self._empty: asyncio.Event | None = None
        self._sweeper: asyncio.Task[None] | None = None
        #: The idle sweep's deadline wheel (``_wheel``): it holds every record with a
        #: deadline (idle timeout, close grace); a sweep opens only the due buckets.
        self.wheel = DeadlineWheel()
        #: Records whose peer half-closed under a protocol that kept them open (few, brief).
        self.half_closed: set[ConnectionRecord] = set()
        #: Records the sweeps have looked at (the cost the wheel keeps independent of the
        #: number of live connections; tests count it).
        self.swept = 0

    # -- listeners ---------------------------------------------------------------------------

    def add_listener(
        self, name: str, handler: Handler, limits: Limits, stats: ListenerStats | None = None
    ) -> ListenerSlot:
        """A new slot for listener ``name`` (replacing its current one for new connections;
        connections admitted by the old slot keep it). ``stats`` carries counters over."""
        slot = ListenerSlot(self, name, handler, limits, stats)
        self.slots[name] = slot
        return slot

    # -- admission ---------------------------------------------------------------------------

    def check(self, slot: ListenerSlot, ip: str | None) -> str | None:
        """The reason to refuse a new connection on ``slot`` from ``ip``, or None to admit."""
        if self.draining:
            return "shutting_down"
        limit = self.limits.max_connections
        if limit is not None and len(self.live) + self.reserved >= limit:
            return "max_connections"
        if slot.max_connections is not None and slot.count >= slot.max_connections:
            return "listener_max_connections"
        if ip is not None:
            limit = self.limits.max_connections_per_ip
            if limit is not None and self.per_ip.get(ip, 0) >= limit:
                return "max_connections_per_ip"
            if slot.max_per_ip is not None and slot.per_ip.get(ip, 0) >= slot.max_per_ip:
                return "listener_max_connections_per_ip"
        return None

    def add(
        self, slot: ListenerSlot, transport: asyncio.BaseTransport, peer: Any, ip: str | None
    ) -> ConnectionRecord:
        self._count(slot, ip)
        return self._live(slot, transport, peer, ip)

    def _count(self, slot: ListenerSlot, ip: str | None) -> None:
        slot.count += 1
        if ip is not None:
            self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
            if slot.max_per_ip is not None:
                slot.per_ip[ip] = slot.per_ip.get(ip, 0) + 1

    def _uncount(self, slot: ListenerSlot, ip: str | None) -> None:
        slot.count -= 1
        if slot.emptied is not None and not slot.count:
            slot.emptied.set()
        if ip is not None:
            decrement(self.per_ip, ip)
            if slot.max_per_ip is not None:
                decrement(slot.per_ip, ip)

    def _live(
        self, slot: ListenerSlot, transport: asyncio.BaseTransport, peer: Any, ip: str | None
    ) -> ConnectionRecord:
        rec = ConnectionRecord(next(self._ids), slot, transport, peer, ip)
        self.live[rec.id] = rec
        if slot.idle_timeout:
            self.file(rec, rec.last_active + slot.idle_timeout)
        slot.stats.accepted += 1
        if slot.log_opened:
            slot.log.debug("connection_opened", conn_id=rec.id, peer=format_peer(peer))
        return rec

    def reserve(self, slot: ListenerSlot, ip: str | None) -> Reservation | str:
        """At accept: count a connection that is not live yet against every cap, or the reason
        to refuse it."""
        reason = self.check(slot, ip)
        if reason is not None:
            return reason
        self._count(slot, ip)
        self.reserved += 1
        return Reservation(slot, ip)

    def claim(
        self, reservation: Reservation, transport: asyncio.BaseTransport
    ) -> ConnectionRecord | None:
        """The reserved connection is up (``connection_made``): its record, already counted.
        Refused (closed without a word) when the server began draining meanwhile."""
        slot, ip = reservation.slot, reservation.ip
        reservation.held = False  # its counts become the record's
        self.reserved -= 1
        if self.draining:
            self._uncount(slot, ip)
            slot.refuse(transport, reservation.peer, "shutting_down")
            return None
        peer = reservation.peer or transport.get_extra_info("peername")
        return self._live(slot, transport, peer, ip)

    def remove(self, rec: ConnectionRecord) -> None:
        if self.live.pop(rec.id, None) is None:
            return
        if rec.due is not None:
            self.wheel.unfile(rec)
        if rec.eof_at is not None:
            self.half_closed.discard(rec)
        slot = rec.slot
        self._uncount(slot, rec.ip)
        stats = slot.stats
        stats.closed += 1
        stats.bytes_in += rec.bytes_in
        stats.bytes_out += rec.bytes_out
        if slot.log_closed:
            slot.log.info(
                "connection_closed",
                conn_id=rec.id,
                peer=format_peer(rec.peer),
                duration=round(time.monotonic() - rec.started, 3),
                bytes_in=rec.bytes_in,
                bytes_out=rec.bytes_out,
            )
        if not self.live and self._empty is not None:
            self._empty.set()

    # -- idle sweep --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sweep (call from inside the running loop)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def sweep_interval(self) -> float:
        timeouts = [s.idle_timeout for s in self.slots.values() if s.idle_timeout]
        shortest = min(timeouts, default=4.0)
        return min(1.0, max(0.05, shortest / 8))

    async def _sweep_forever(self) -> None:
        interval = self.sweep_interval()
        while True:
            await asyncio.sleep(interval)
            self.sweep(self.clock.tick())

    def file(self, rec: ConnectionRecord, deadline: float) -> None:
        """File ``rec`` in the wheel under ``deadline`` (moving it from where it was)."""
        self.wheel.file(rec, deadline)

    def sweep(self, now: float) -> None:
        """Close connections idle longer than their listener's timeout (after the handler's
        idle goodbye: ``ConnectionRecord.close_idle``); abort stuck closes; close half-closed
        connections that stopped answering.

        Only the wheel buckets due by ``now`` are opened: the work is the records that may be
        due (and the few half-closed ones), not every live connection. A record active since
        it was filed (``last_active`` moved: one float store per read, no filing on traffic)
        is filed again under its new deadline.
        """
        opened: list[ConnectionRecord] = self.wheel.pop_due(now)
        self.swept += len(self.half_closed) + len(opened)
        for rec in list(self.half_closed):
            if rec.closing_since is not None:
                continue
            if rec.bytes_out != rec.eof_out:  # still answering: restart the clock
                rec.eof_at, rec.eof_out = now, rec.bytes_out
            elif rec.eof_at is not None and now - rec.eof_at >= HALF_CLOSE_TIMEOUT:
                rec.bind_log().info("connection_half_closed_timeout")
                rec.close()
        live = self.live
        for rec in opened:
            if rec.due is not None or live.get(rec.id) is not rec:
                continue  # filed again (closed) by this sweep already, or gone
            if rec.closing_since is not None:
                if now - rec.closing_since >= IDLE_CLOSE_GRACE:
                    rec.abort()
                    if live.get(rec.id) is rec:  # released soon; looked at again if not
                        self.file(rec, now + IDLE_CLOSE_GRACE)
                else:
                    self.file(rec, rec.closing_since + IDLE_CLOSE_GRACE)
                continue
            timeout = rec.slot.idle_timeout
            if not timeout:
                continue
            if now - rec.last_active < timeout:
                rec.output_moved()  # where the output stands at this look
                self.file(rec, rec.last_active + timeout)
            elif rec.output_moved():  # the client is reading a long reply: not idle
                rec.last_active = now
                self.file(rec, now + timeout)
            else:
                rec.close_idle(now)  # with the listener's idle goodbye

    # -- drain -------------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """From now on every new connection is refused with reason ``shutting_down``."""
        self.draining = True

    async def wait_empty(self, timeout: float | None) -> bool:
        """Wait (on an event, not polling) until no connection is live. True if that happened."""
        if not self.live:
            return True
        self._empty = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        except TimeoutError:
            return False
        finally:
            self._empty = None
        return True

    def abort_all(self) -> int:
        """Abort every live connection; returns how many there were."""
        records = list(self.live.values())
        for rec in records:
            rec.abort()
        return len(records)

    # -- reporting ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "live": len(self.live),
            "listeners": {
                name: slot.stats.as_dict() | {"live": slot.count}
                for name, slot in self.slots.items()
            },
        }


class Reservation:
    """A connection accepted and counted against the caps but not live yet (its TLS handshake
    or PROXY header is under way). ``release()`` gives the counts back, once."""

    __slots__ = ("held", "ip", "peer", "slot")

    def __init__(self, slot: ListenerSlot, ip: str | None) -> None:
        self.slot = slot
        self.ip = ip
        #: The client a trusted PROXY header named (None: the socket's peer).
        self.peer: Any = None
        self.held = True

    def move_to(self, peer: Any) -> str | None:
        """A PROXY header named the real client: count it instead of the proxy's address, or
        return the reason to refuse it (the reservation is then released)."""
        manager = self.slot.manager
        ip = peer[0] if isinstance(peer, tuple) else None
        self.release()
        reason = manager.check(self.slot, ip)
        if reason is not None:
            return reason
        manager._count(self.slot, ip)
        manager.reserved += 1
        self.ip, self.peer, self.held = ip, peer, True
        return None

    def release(self) -> None:
        if self.held:
            self.held = False
            manager = self.slot.manager
            manager.reserved -= 1
            manager._uncount(self.slot, self.ip)
