"""``WebSocket`` sessions on a ``MemoryTransport`` (tier 2): the handshake, the ASGI messages,
flow control both ways, and the tick's pings and close handshake timeout — with explicit
clock values, no sleeping. The client side is ``websockets``' own sans-IO ``Protocol``."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from aionet.http.state import HttpMetrics
from aionet.http.websocket import MAX_QUEUE, WsLimits
from tests.handlers.test_http_protocol import connect, settle

HANDSHAKE = (
    b"GET /chat?x=1 HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: a, b\r\n\r\n"
)


def open_session(app: Any, limits: WsLimits | None = None) -> tuple[Any, Any]:
    _proto, transport, state = connect(app)
    state.websocket = limits or WsLimits()
    state.metrics = HttpMetrics()
    return transport, state


def frames(client: Protocol, data: bytes) -> list[Frame]:
    client.receive_data(data)
    return [e for e in client.events_received() if isinstance(e, Frame)]


def wire(client: Protocol) -> bytes:
    return b"".join(client.data_to_send())


async def test_handshake_scope_echo_and_close() -> None:
    scopes: list[dict[str, Any]] = []
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        assert await receive() == {"type": "websocket.connect"}
        await send({"type": "websocket.accept", "subprotocol": "b"})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"].upper()})

    transport, state = open_session(app)
    transport.feed(HANDSHAKE)
    await settle()
    head = transport.take()
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"sec-websocket-protocol: b\r\n" in head
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head  # RFC 6455's example
    (scope,) = scopes
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert (scope["path"], scope["query_string"]) == ("/chat", b"x=1")
    assert scope["subprotocols"] == ["a", "b"] and "method" not in scope
    assert scope["extensions"] == {"websocket.http.response": {}}
    client = Protocol(Side.CLIENT)
    client.send_text("héllo".encode())
    transport.feed(wire(client))
    await settle()
    (reply,) = frames(client, transport.take())
    assert (reply.opcode, reply.data) == (Opcode.TEXT, "HÉLLO".encode())
    client.send_close(1000, "bye")
    transport.feed(wire(client))
    await settle()
    assert frames(client, transport.take())[0].opcode is Opcode.CLOSE
    assert transport.closed  # the server closes the TCP connection first
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}
    assert state.metrics.ws_messages == [1, 1] and state.metrics.ws_closes == {1000: 1}
    assert state.metrics.ws_open == 0 and state.websockets == set()


async def test_unread_messages_pause_reading_until_the_app_catches_up() -> None:
    release = asyncio.Event()
    got: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        for _ in range(MAX_QUEUE):
            got.append(await receive())

    transport, _ = open_session(app)
    transport.feed(HANDSHAKE)
    await settle()
    transport.take()
    client = Protocol(Side.CLIENT)
    for i in range(MAX_QUEUE):
        client.send_binary(b"%d" % i)
        assert transport.reading  # under the bound, still reading
        transport.feed(wire(client))
    assert not transport.reading  # MAX_QUEUE messages the app has not taken: paused
    release.set()
    await settle(30)
    assert transport.reading
    assert [m["bytes"] for m in got] == [b"%d" % i for i in range(MAX_QUEUE)]


async def test_send_waits_while_the_client_does_not_read() -> None:
    sent: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(10):
            await send({"type": "websocket.send", "bytes": b"x" * 1000})
            sent.append(i)

    transport, _ = open_session(app, WsLimits(write_limit=2500))
    transport.feed(HANDSHAKE)
    await settle(30)
    # The 101 and three messages are over the 2500-byte limit: the app waits in send().
    assert len(sent) == 2 and transport.get_write_buffer_size() <= 2500 + 1004
    transport.take()  # the client reads: the app goes on
    await settle(30)
    assert len(sent) == 5


async def test_tick_pings_and_drops_a_silent_peer() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    transport, state = open_session(app, WsLimits(ping_interval=10, ping_timeout=5))
    transport.feed(HANDSHAKE)
    await settle()
    transport.take()
    client = Protocol(Side.CLIENT)
    (session,) = state.websockets
    t0 = state.now
    session.check_timeouts(t0 + 9)
    assert transport.take() == b""  # not yet
    session.check_timeouts(t0 + 10)
    (ping,) = frames(client, transport.take())
    assert ping.opcode is Opcode.PING
    transport.feed(wire(client))  # the client's automatic pong
    session.check_timeouts(t0 + 16)
    assert not transport.aborted  # answered: alive
    session.check_timeouts(t0 + 20)
    assert frames(client, transport.take())[0].opcode is Opcode.PING  # the next one
    session.check_timeouts(t0 + 25)  # not answered within ping_timeout
    assert transport.aborted
    await settle()
    assert state.metrics.ws_closes == {1006: 1}


async def test_close_handshake_timeout_and_drain() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last"})
        await receive()

    transport, state = open_session(app, WsLimits(close_timeout=3, ping_interval=0))
    transport.feed(HANDSHAKE)
    await settle()
    (session,) = state.websockets
    state.drain()
    client = Protocol(Side.CLIENT)
    head, _, rest = transport.take().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    last, close = frames(client, rest)
    assert (last.opcode, last.data) == (Opcode.TEXT, b"last")  # what was sent goes first
    assert close.opcode is Opcode.CLOSE and close.data[:2] == (1001).to_bytes(2, "big")
    t0 = session.closing_since
    session.check_timeouts(t0 + 2.9)
    assert not transport.closed
    session.check_timeouts(t0 + 3)  # the client never answered the close frame
    assert transport.aborted


async def test_denial_with_an_http_response_before_accept() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 404, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no such room"})
        assert await receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    transport, state = open_session(app)
    state.access = structlog.get_logger("access")
    transport.feed(HANDSHAKE)
    await settle()
    out = transport.take()
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"content-length: 12\r\n" in out and out.endswith(b"\r\n\r\nno such room")
    assert transport.closed and state.tasks == set()
    assert state.metrics.by_class[4] == 1 and state.metrics.ws_open == 0
