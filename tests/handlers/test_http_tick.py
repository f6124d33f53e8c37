"""The HTTP handler's tick and its deadline wheel (tier 2, ``MemoryTransport``, a hand-moved
clock).

Each scenario runs twice on the same clock steps: once with ``check_timeouts`` called on every
live connection at every step (what the tick did before the wheel) and once through
``HttpState.tick()``, which looks only at the connections whose next look has come. Every
timeout must act on the same step with the same bytes, so a ``next_check`` that files a
connection too late shows up as a late 408, close or ping. Then the cost: an idle connection is
looked at about once per its deadline, not once per tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import pytest
from websockets.protocol import Protocol, Side

from aionet.core.connections import track
from aionet.http.protocol import HttpProtocol
from aionet.http.state import HttpMetrics, Watched
from aionet.http.websocket import WebSocket, WsLimits
from aionet.testing import MemoryTransport
from tests.handlers.test_http_protocol import (
    GET,
    POST_10,
    connect,
    echo_body,
    make_slot,
    path_app,
    settle,
)
from tests.handlers.test_websocket_protocol import HANDSHAKE

STEP = 0.25  # the clock moves by one tick at a time
Event = Callable[[HttpProtocol, MemoryTransport], Awaitable[None] | None]


async def drive(
    mode: str,
    app: Any,
    script: dict[float, Event],
    until: float,
    *,
    reads: bool = True,
    tap: list[bytes] | None = None,
    ws: WsLimits | None = None,
    http2: bool = False,
    **limits: Any,
) -> list[tuple[float, str]]:
    """Run ``script`` (events by time) on one connection; return what was seen, by time: the
    bytes written (their first line), a close, an abort. ``reads``: the client reads
    everything at each step (else the output stays in the transport's buffer), and ``tap``
    gets it too."""
    proto, transport, state = connect(app, high_water=50_000, **limits)
    state.websocket = ws or WsLimits()
    state.metrics = HttpMetrics()
    state.http2 = http2
    closes: list[float] = []
    close = transport.close
    t = 0.0

    def counting_close() -> None:
        closes.append(t)
        close()

    transport.close = counting_close  # type: ignore[method-assign]  # a lingering close shows
    seen: list[tuple[float, str]] = []
    start = state.now
    while t <= until:
        event = script.get(t)
        if event is not None:
            done = event(proto, transport)
            if done is not None:
                await done
            await settle()
        if mode == "wheel":
            state.tick()
        else:
            every: list[Watched] = [*state.protocols, *state.websockets, *state.h2]
            for conn in every:
                conn.check_timeouts(state.now)
        await settle()
        if reads:
            out = transport.take()
            if tap is not None:
                tap.append(out)
            if out:  # an HTTP status line, or a WebSocket frame's header
                first = out.split(b"\r\n", 1)[0] if out.startswith(b"HTTP/") else out[:2]
                seen.append((t, first[:16].hex()))
        if closes:
            seen.append((t, "close"))
            closes.clear()
        if transport.aborted:
            seen.append((t, "abort"))
            break
        t = round(t + STEP, 2)
        state.now = start + t
    return seen


async def both(*args: Any, **kw: Any) -> list[tuple[float, str]]:
    every = await drive("every", *args, **kw)
    wheel = await drive("wheel", *args, **kw)
    assert wheel == every
    return wheel


def feed(data: bytes) -> Event:
    def event(proto: HttpProtocol, transport: MemoryTransport) -> None:
        transport.feed(data)

    return event


def kinds(seen: list[tuple[float, str]]) -> list[str]:
    return [what for _, what in seen]


async def test_a_slow_head_gets_its_408_on_the_same_tick() -> None:
    seen = await both(path_app, {0.5: feed(b"GET / HTTP/1.1\r\nHost")}, 3, header_timeout=1.0)
    assert seen[0][0] == 1.5 and seen[0][1] == b"HTTP/1.1 408 Req".hex()


async def test_an_idle_keep_alive_connection_closes_on_the_same_tick() -> None:
    seen = await both(path_app, {0.75: feed(GET % b"")}, 4, keepalive_timeout=2.0)
    assert [t for t, what in seen if what == "close"] == [2.75]


async def test_a_head_begun_on_a_long_keep_alive_meets_the_short_header_timeout() -> None:
    # Filed for the keep-alive (30 s) when idle, the connection must still be looked at by
    # the time a head begun later runs out of header_timeout.
    script = {0.0: feed(GET % b""), 3.25: feed(b"GET / HTTP/1.1\r\nHo")}
    seen = await both(path_app, script, 6, keepalive_timeout=30.0, header_timeout=1.0)
    assert seen[-1] == (4.25, b"HTTP/1.1 408 Req".hex())


async def test_a_stalled_body_gets_its_408_on_the_same_tick() -> None:
    script = {0.0: feed(POST_10 + b"ab"), 0.5: feed(b"cd")}
    seen = await both(echo_body, script, 3, body_timeout=1.0)
    assert seen[0][0] == 1.5 and seen[0][1] == b"HTTP/1.1 408 Req".hex()


async def test_a_stalled_send_is_aborted_on_the_same_tick() -> None:
    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 300_000})

    def read_a_little(proto: HttpProtocol, transport: MemoryTransport) -> None:
        del transport.buffer[:1000]

    # Idle and filed for the long timeouts first; the request comes between two looks.
    script = {3.25: feed(GET % b""), 3.75: read_a_little}
    seen = await both(
        big, script, 9, reads=False, send_timeout=1.0, keepalive_timeout=30.0,
        header_timeout=30.0, body_timeout=30.0,
    )  # fmt: skip
    assert seen == [(4.75, "abort")]  # 1 s after the last progress


async def test_a_refused_request_lingers_then_closes_on_the_same_tick() -> None:
    bad = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n"
    seen = await both(path_app, {0.25: feed(bad)}, 4, keepalive_timeout=30.0)
    assert seen[0] == (0.25, b"HTTP/1.1 400 Bad".hex())
    assert seen[1] == (2.25, "close")  # after LINGER (2 s), not at a 30 s look


async def accept_and_wait(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()


async def test_websocket_pings_and_a_silent_peer_on_the_same_ticks() -> None:
    runs = []
    for mode in ("every", "wheel"):
        client = Protocol(Side.CLIENT)
        raw: list[bytes] = []

        def pong(proto: HttpProtocol, transport: MemoryTransport, client: Any = client,
                 raw: list[bytes] = raw) -> None:  # fmt: skip
            client.receive_data([out for out in raw if out][-1])  # the ping: answered
            client.events_received()
            transport.feed(b"".join(client.data_to_send()))

        script = {0.0: feed(HANDSHAKE), 10.5: pong}
        limits = WsLimits(ping_interval=10, ping_timeout=5)
        runs.append(await drive(mode, accept_and_wait, script, 30, tap=raw, ws=limits))
    every, wheel = runs
    assert [(t, what[:4]) for t, what in wheel] == [(t, what[:4]) for t, what in every]
    # the 101; a ping at 10, answered; the next at 20, unanswered: dropped 5 s later
    assert [t for t, _ in wheel] == [0.0, 10.0, 20.0, 25.0]
    assert wheel[1][1] == wheel[2][1] == "8904" and wheel[-1][1] == "abort"


async def test_websocket_close_handshake_timeout_on_the_same_tick() -> None:
    def closing_app() -> tuple[Any, Event]:
        go = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await go.wait()
            await send({"type": "websocket.close", "code": 1000})
            await receive()

        def close(proto: HttpProtocol, transport: MemoryTransport) -> None:
            go.set()

        return app, close

    limits = WsLimits(close_timeout=3, ping_interval=60, ping_timeout=60)
    runs = []
    for mode in ("every", "wheel"):
        app, close = closing_app()
        script = {0.0: feed(HANDSHAKE), 4.25: close}
        runs.append(await drive(mode, app, script, 12, ws=limits))
    every, wheel = runs
    assert wheel == every
    assert [t for t, _ in wheel] == [0.0, 4.25, 7.25]  # the 101, the close frame, the abort


def h2_client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    return client


async def test_an_idle_http2_connection_gets_its_goaway_on_the_same_tick() -> None:
    def request(proto: HttpProtocol, transport: MemoryTransport) -> None:
        client = h2_client()
        headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
        client.send_headers(1, headers, end_stream=True)
        transport.feed(client.data_to_send())

    seen = await both(path_app, {0.5: request}, 5, http2=True, keepalive_timeout=2.0)
    # idle from 0.5, the keep-alive is over once more than 2 s passed: the GOAWAY, the close
    assert seen[-2][0] == seen[-1][0] == 2.75 and seen[-1][1] == "close"


# -- the cost: looks, not ticks ----------------------------------------------------------------


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ``check_timeouts`` call, on HTTP/1.1 connections and WebSocket sessions."""
    seen: list[object] = []
    for cls in (HttpProtocol, WebSocket):
        original = cls.check_timeouts

        def counted(self: Any, now: float, original: Any = original) -> None:
            seen.append(self)
            original(self, now)

        monkeypatch.setattr(cls, "check_timeouts", counted)
    return seen


async def test_idle_connections_are_looked_at_per_deadline_not_per_tick(
    looks: list[object],
) -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await accept_and_wait(scope, receive, send)
            return
        await release.wait()  # a long poll: a request in flight, no deadline of its own
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    # Default timeouts: a request in flight is looked at every 5 s (the shortest HTTP
    # timeout, keep-alive), an upgraded connection every 60 s (send_timeout, its only one
    # left), a WebSocket session every 20 s (its ping interval).
    _proto, first, state = connect(app)
    state.websocket = WsLimits()
    transports = [first]
    for i in range(200):
        transport = MemoryTransport()
        transport.connect(track(HttpProtocol(state), make_slot()))
        transport.feed(HANDSHAKE if i % 2 else GET % b"")
        transports.append(transport)
    first.feed(GET % b"")
    await settle()
    assert (len(state.protocols), len(state.websockets)) == (201, 100)
    for transport in transports:
        transport.take()  # the clients read the 101s: no output waits

    async def run(seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            state.now += STEP
            state.tick()
            await settle()

    await run(1)  # the first look at each new connection
    looks.clear()
    await run(20)
    # 301 watched, 80 ticks: a look at each on each tick would be 24,080 looks. By deadline:
    # 101 long polls every 5 s, 100 upgraded connections every 60 s, 100 sessions every 20 s.
    assert len(looks) <= 101 * (20 / 5 + 1) + 100 * (20 / 60 + 1) + 100 * (20 / 20 + 1)
    assert all(not t.closed for t in transports)  # none timed out meanwhile
    release.set()
    await settle()
    answered = [t.take()[:12] for t in transports]
    assert answered.count(b"HTTP/1.1 204") == 101
