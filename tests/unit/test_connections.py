"""The connection manager on in-memory transports: admission, refusal, release, idle sweep."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from aionet.config.models import Limits
from aionet.core.connections import IDLE_CLOSE_GRACE, ConnectionManager, ListenerSlot, track
from aionet.core.connections._wheel import DeadlineWheel
from aionet.core.handler import HandlerOptions, ProtocolHandler, Services
from aionet.handlers.echo import EchoHandler, EchoProtocol
from aionet.testing import MemoryTransport


def make_slot(
    manager: ConnectionManager,
    name: str = "l",
    limits: Limits | None = None,
    handler: ProtocolHandler | None = None,
) -> ListenerSlot:
    services = Services(listener=name, data_dir=Path("."), log=structlog.get_logger())
    handler = handler or EchoHandler(HandlerOptions(), services)
    return manager.add_listener(name, handler, limits or Limits())


def connect(
    slot: ListenerSlot, ip: str = "10.0.0.1", port: int = 1000
) -> tuple[EchoProtocol, MemoryTransport]:
    proto = track(slot.handler.protocol_factory(), slot)  # type: ignore[attr-defined]
    transport = MemoryTransport(peername=(ip, port))
    transport.connect(proto)
    assert isinstance(proto, EchoProtocol)
    return proto, transport


class Refusing(ProtocolHandler):
    def refusal(self) -> bytes:
        return b"421 busy\r\n"

    def protocol_factory(self) -> asyncio.Protocol:
        return EchoProtocol()


def test_echo_counts_bytes_and_releases_on_close() -> None:
    manager = ConnectionManager(Limits())
    slot = make_slot(manager)
    _, t = connect(slot)
    t.feed(b"hello")
    assert t.take() == b"hello"
    [rec] = manager.live.values()
    assert (rec.bytes_in, rec.bytes_out, rec.peer) == (5, 5, ("10.0.0.1", 1000))
    t.close()
    assert manager.live == {} and manager.per_ip == {}
    assert slot.stats.as_dict() | {"refused": {}} == {
        "tls_failures": 0,
        "accepted": 1,
        "closed": 1,
        "idle_closed": 0,
        "handler_errors": 0,
        "bytes_in": 5,
        "bytes_out": 5,
        "datagrams_in": 0,
        "datagrams_out": 0,
        "refused": {},
    }


@pytest.mark.parametrize(
    ("server_limits", "listener_limits", "reason"),
    [
        (Limits(max_connections=2), Limits(), "max_connections"),
        (Limits(), Limits(max_connections=2), "listener_max_connections"),
        (Limits(max_connections_per_ip=2), Limits(), "max_connections_per_ip"),
        (Limits(), Limits(max_connections_per_ip=2), "listener_max_connections_per_ip"),
    ],
)
def test_caps_refuse_with_the_handler_refusal(
    server_limits: Limits, listener_limits: Limits, reason: str
) -> None:
    manager = ConnectionManager(server_limits)
    services = Services(listener="l", data_dir=Path("."), log=structlog.get_logger())
    slot = make_slot(manager, limits=listener_limits, handler=Refusing(HandlerOptions(), services))
    connect(slot, port=1)
    connect(slot, port=2)
    _, third = connect(slot, port=3)
    assert third.take() == b"421 busy\r\n"
    assert third.closed and not third.aborted
    assert len(manager.live) == 2
    assert slot.stats.refused == {reason: 1}
    third.feed(b"ignored")  # a refused connection never reaches the protocol
    assert third.take() == b""


def test_per_ip_cap_counts_each_ip_separately() -> None:
    manager = ConnectionManager(Limits(max_connections_per_ip=1))
    slot = make_slot(manager)
    _, a = connect(slot, ip="10.0.0.1")
    _, b = connect(slot, ip="10.0.0.2")
    _, c = connect(slot, ip="10.0.0.1")
    assert (a.closed, b.closed, c.closed) == (False, False, True)
    a.close()
    _, d = connect(slot, ip="10.0.0.1")  # the slot was released
    assert not d.closed
    assert manager.per_ip == {"10.0.0.1": 1, "10.0.0.2": 1}


def test_listener_caps_are_per_listener() -> None:
    manager = ConnectionManager(Limits())
    one = make_slot(manager, "one", Limits(max_connections=1))
    two = make_slot(manager, "two", Limits(max_connections=1))
    _, a = connect(one)
    _, b = connect(two)
    _, c = connect(one)
    assert (a.closed, b.closed, c.closed) == (False, False, True)


def test_draining_refuses_new_connections() -> None:
    manager = ConnectionManager(Limits())
    slot = make_slot(manager)
    manager.begin_drain()
    _, t = connect(slot)
    assert t.closed
    assert slot.stats.refused == {"shutting_down": 1}


def test_idle_sweep_closes_then_aborts_a_stuck_close() -> None:
    manager = ConnectionManager(Limits(idle_timeout=10.0))
    slot = make_slot(manager)
    _, quiet = connect(slot, port=1)
    _, busy = connect(slot, port=2)
    start = manager.clock.now
    manager.clock.now = start + 6
    busy.feed(b"x")
    manager.sweep(start + 11)
    assert quiet.closed and not busy.closed
    assert slot.stats.idle_closed == 1
    # A close that never completes (peer not reading) is aborted after the grace period.
    stuck = MemoryTransport(peername=("10.0.0.3", 3))
    proto = track(slot.handler.protocol_factory(), slot)  # type: ignore[attr-defined]
    stuck.close = lambda: None  # type: ignore[method-assign]
    stuck.connect(proto)
    manager.sweep(start + 22)
    assert not stuck.aborted
    manager.sweep(start + 22 + IDLE_CLOSE_GRACE)
    assert stuck.aborted


class SaysGoodbye(Refusing):
    def idle_goodbye(self) -> bytes:
        return b"421 idle\r\n"


def goodbye_slot(manager: ConnectionManager) -> ListenerSlot:
    services = Services(listener="l", data_dir=Path("."), log=structlog.get_logger())
    return make_slot(manager, handler=SaysGoodbye(HandlerOptions(), services))


def test_idle_sweep_says_the_handler_idle_goodbye_then_closes() -> None:
    manager = ConnectionManager(Limits(idle_timeout=10.0))
    slot = goodbye_slot(manager)
    assert slot.goodbye == b"421 idle\r\n"  # read once, like the refusal
    _, quiet = connect(slot, port=1)
    _, busy = connect(slot, port=2)
    start = manager.clock.now
    manager.clock.now = start + 6
    busy.feed(b"x")  # echoed, and read by the client
    assert busy.take() == b"x"
    manager.sweep(start + 11)
    assert quiet.take() == b"421 idle\r\n" and quiet.closed and not quiet.aborted
    assert busy.take() == b"" and not busy.closed  # active: not told anything
    assert slot.stats.idle_closed == 1
    assert slot.stats.bytes_out == len(b"421 idle\r\n")  # counted like other output
    manager.sweep(start + 17)
    assert busy.take() == b"421 idle\r\n" and busy.closed


def test_no_idle_goodbye_during_starttls_behind_unread_output_or_once_closing() -> None:
    manager = ConnectionManager(Limits(idle_timeout=10.0))
    slot = goodbye_slot(manager)
    _, upgrading = connect(slot, port=1)
    _, unread = connect(slot, port=2)
    [rec, _] = manager.live.values()
    rec.upgrading = True  # core.starttls.upgrade: the handshake is under way
    unread.feed(b"echo nobody reads")
    stuck = MemoryTransport(peername=("10.0.0.3", 3))
    stuck.close = lambda: None  # type: ignore[method-assign]  # a close that never completes
    stuck.connect(track(slot.handler.protocol_factory(), slot))  # type: ignore[attr-defined]
    start = manager.clock.now
    manager.sweep(start + 11)
    assert upgrading.take() == b"" and upgrading.closed
    assert not unread.closed  # output waits: a first look cannot tell whether it moves
    assert stuck.take() == b"421 idle\r\n"  # said once, when the close began ...
    manager.sweep(start + 11 + IDLE_CLOSE_GRACE)
    assert stuck.take() == b"" and stuck.aborted  # ... not again at the abort
    manager.sweep(start + 22)  # the output has not moved since: idle, and no goodbye behind it
    assert unread.take() == b"echo nobody reads" and unread.closed
    assert slot.stats.idle_closed == 3


def test_a_client_taking_its_output_is_not_idle() -> None:
    """Reading counts as activity: output that waited and was taken since the last look keeps
    the connection (for another idle timeout); output that stays put does not."""
    manager = ConnectionManager(Limits(idle_timeout=10.0))
    slot = goodbye_slot(manager)
    _, reading = connect(slot, port=1)
    reading.feed(b"a long reply")
    start = manager.clock.now
    manager.sweep(start + 11)  # output waits
    assert not reading.closed
    assert reading.take() == b"a long reply"  # the client takes it
    manager.sweep(start + 22)  # it moved since the last look: not idle
    assert not reading.closed and slot.stats.idle_closed == 0
    manager.sweep(start + 33)  # nothing waits, nothing moved, no input: idle
    assert reading.take() == b"421 idle\r\n" and reading.closed


async def test_close_idle_from_the_session_itself_does_not_cancel_it() -> None:
    # A protocol's own timer (IMAP's IDLE autologout) calls it from the handler task: the task
    # goes on to return; the sweep calling it cancels the task, as before.
    manager = ConnectionManager(Limits(idle_timeout=10.0))
    slot = goodbye_slot(manager)
    _, own = connect(slot, port=1)
    _, swept = connect(slot, port=2)
    own_rec, swept_rec = manager.live.values()

    async def session() -> str:
        own_rec.close_idle()
        await asyncio.sleep(0)
        return "returned"

    own_rec.task = asyncio.current_task()  # type: ignore[assignment]
    assert await session() == "returned"
    swept_rec.task = asyncio.ensure_future(asyncio.sleep(3600))  # type: ignore[assignment]
    swept_rec.close_idle()
    with pytest.raises(asyncio.CancelledError):
        await swept_rec.task
    assert own.take() == swept.take() == b"421 idle\r\n"


def test_listener_idle_timeout_overrides_server() -> None:
    manager = ConnectionManager(Limits(idle_timeout=100.0))
    fast = make_slot(manager, "fast", Limits(idle_timeout=1.0))
    slow = make_slot(manager, "slow")
    _, a = connect(fast)
    _, b = connect(slow)
    manager.sweep(manager.clock.now + 2)
    assert a.closed and not b.closed


async def test_wait_empty_fires_on_last_release() -> None:
    manager = ConnectionManager(Limits())
    slot = make_slot(manager)
    _, t = connect(slot)
    waiter = asyncio.create_task(manager.wait_empty(5))
    await asyncio.sleep(0)  # one turn of the loop: the waiter starts waiting
    assert not waiter.done()
    t.close()
    assert await waiter is True
    assert await manager.wait_empty(0.01) is True


async def test_wait_empty_times_out_and_abort_all() -> None:
    manager = ConnectionManager(Limits())
    slot = make_slot(manager)
    _, t = connect(slot)
    assert await manager.wait_empty(0.01) is False
    assert manager.abort_all() == 1
    assert t.aborted and manager.live == {}


def test_echo_flow_control_pauses_reading_when_peer_does_not_read() -> None:
    manager = ConnectionManager(Limits())
    slot = make_slot(manager)
    _, t = connect(slot)
    t.high_water = 1000
    t.feed(b"x" * 600)
    assert t.reading
    t.feed(b"x" * 600)  # over the high-water mark: the echo stops reading
    assert not t.reading
    t.take()  # the peer reads: writing resumes, so does reading
    assert t.reading


class ThirdParty(asyncio.Protocol):
    """Stands for a third-party protocol class (aiosmtpd's SMTP) that knows nothing of aionet."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.events.append(f"data:{data.decode()}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


class Wrapping(ProtocolHandler):
    def protocol_factory(self) -> asyncio.Protocol:
        return ThirdParty()


def test_third_party_protocol_is_tracked_unchanged() -> None:
    manager = ConnectionManager(Limits(max_connections=1))
    services = Services(listener="w", data_dir=Path("."), log=structlog.get_logger())
    slot = make_slot(manager, "w", handler=Wrapping(HandlerOptions(), services))
    proto = track(slot.handler.protocol_factory(), slot)  # type: ignore[attr-defined]
    assert isinstance(proto, ThirdParty)  # the same object, not a wrapper
    t = MemoryTransport()
    t.connect(proto)
    t.feed(b"hi")
    assert manager.live[next(iter(manager.live))].bytes_in == 2
    # An in-place upgrade (STARTTLS) re-targets a new transport at the same object: still tracked.
    t.close()
    assert proto.events == ["made", "data:hi", "lost"]
    assert manager.live == {}
    first = track(ThirdParty(), slot)
    MemoryTransport().connect(first)
    second = track(ThirdParty(), slot)
    refused = MemoryTransport()
    refused.connect(second)  # over max_connections=1
    assert refused.closed
    assert (first.events, second.events) == (["made"], [])  # type: ignore[attr-defined]


class Raising(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        raise ValueError("handler bug")


class RaisingHandler(ProtocolHandler):
    def protocol_factory(self) -> asyncio.Protocol:
        return Raising()


def test_raising_protocol_is_counted_and_aborted() -> None:
    manager = ConnectionManager(Limits())
    services = Services(listener="r", data_dir=Path("."), log=structlog.get_logger())
    slot = make_slot(manager, "r", handler=RaisingHandler(HandlerOptions(), services))
    proto = track(slot.handler.protocol_factory(), slot)  # type: ignore[attr-defined]
    t = MemoryTransport()
    t.connect(proto)
    t.feed(b"boom")
    assert t.aborted
    assert slot.stats.handler_errors == 1
    assert manager.live == {}


class _Quiet:
    """The least a record's transport needs here: a close that never completes."""

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_sweep_opens_only_due_buckets_among_100k_idle_connections() -> None:
    manager = ConnectionManager(Limits(idle_timeout=300.0))
    slot = make_slot(manager)
    slot.log_opened = False  # 100,000 debug lines would only slow the test down
    start = manager.clock.now
    for _ in range(100_000):  # idle, but not for long enough yet
        manager.add(slot, _Quiet(), None, None)  # type: ignore[arg-type]
    manager.clock.now = start - 299.5  # these ten went quiet half a second short of due
    stale = [connect(slot, port=i)[1] for i in range(10)]
    manager.clock.now = start
    for now in (start + 0.1, start + 1, start + 1.5, start + 2):
        manager.sweep(now)
    assert all(t.closed for t in stale)
    assert slot.stats.idle_closed == 10
    assert manager.swept == 10  # the 100,000 others were never looked at
    assert len(manager.live) == 100_000


def test_active_connection_is_refiled_not_closed_and_released_ones_leave_the_wheel() -> None:
    manager = ConnectionManager(Limits(idle_timeout=10.0))
    slot = make_slot(manager)
    start = manager.clock.now
    _, busy = connect(slot, port=1)
    _, gone = connect(slot, port=2)
    gone.close()  # released before its deadline: nothing of it stays filed
    assert len(manager.wheel) == 1
    manager.clock.now = start + 9
    busy.feed(b"x")  # one float store, no filing
    manager.sweep(start + 10.5)
    assert not busy.closed and manager.swept == 1  # looked at once, filed at start + 19
    manager.sweep(start + 15)
    assert manager.swept == 1
    manager.sweep(start + 19)
    assert busy.closed and slot.stats.idle_closed == 1
    assert len(manager.wheel) == 0


def test_connections_without_idle_timeout_are_never_filed() -> None:
    manager = ConnectionManager(Limits(idle_timeout=None))
    slot = make_slot(manager)
    _, t = connect(slot)
    assert len(manager.wheel) == 0
    manager.sweep(manager.clock.now + 10**6)
    assert not t.closed and manager.swept == 0


def test_wheel_compacts_released_entries_and_opens_each_record_once() -> None:
    class Rec:
        due = None

    wheel = DeadlineWheel()
    recs = [Rec() for _ in range(200)]
    for rec in recs:
        wheel.file(rec, 100.0)
    for rec in recs[:150]:
        wheel.unfile(rec)  # released: the bucket is compacted, not kept full of them
    [bucket] = wheel._ticks.values()
    assert len(bucket.records) < 200 and len(wheel) == 50
    moved = recs[199]
    wheel.file(moved, 200.0)
    wheel.file(moved, 100.0)  # back again: two entries, one record
    assert wheel.pop_due(99.0) == []
    opened = wheel.pop_due(100.0)
    assert sorted(map(id, opened)) == sorted(map(id, recs[150:]))
    assert all(rec.due is None for rec in recs) and wheel.pop_due(1000.0) == []


async def test_unsent_reads_the_socket_send_queue() -> None:
    """``unsent`` is what the kernel still holds for a peer that does not read: 0 for a
    transport without a socket, and grows while the peer's window is full."""
    import contextlib
    import socket as socketmod
    import sys

    from aionet.core.connections._outq import unsent

    class NoSocket:
        def get_extra_info(self, name: str) -> None:
            return None

    assert unsent(NoSocket()) == 0
    if sys.platform != "linux":
        return
    server = socketmod.create_server(("127.0.0.1", 0))
    client = socketmod.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        client.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while sent < 64 * 1024 * 1024:
                sent += client.send(b"x" * 65536)

        class Holder:
            def get_extra_info(self, name: str) -> object:
                return client if name == "socket" else None

        assert unsent(Holder()) > 0  # the peer reads nothing: the queue holds what it can
    finally:
        for sock in (server, client, peer):
            sock.close()
