"""The WebSocket fast path (``_ws_frames``, ``_ws_receive``) on a ``MemoryTransport``: the same
messages, replies and close codes as ``websockets``' own parser, wherever the reads cut the
frames; whole frames that are not plain messages still go to ``websockets``."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side

from aionet.http._ws_frames import BAD_HEAD, frame_at, server_head, unmask
from aionet.http.websocket import MAX_QUEUE_BYTES, WsLimits
from tests.handlers.test_http_protocol import settle
from tests.handlers.test_websocket_protocol import HANDSHAKE, frames, open_session
from tests.ws_helpers import frame

BIG = bytes(range(256)) * 64  # 16 KiB: the 16-bit length form
HUGE = bytes(range(251)) * 300  # 75,300 bytes: the 64-bit length form
# Client frames, and the ASGI messages (or the frames the server answers with) they make.
STREAM = [
    frame(1, "héllo".encode()),
    frame(2, b"x" * 64),
    frame(2, BIG),
    frame(9, b"are you there"),  # a ping between messages: a pong
    frame(1, b"frag", fin=False),
    frame(9, b"mid"),  # a ping inside a fragmented message
    frame(0, " ment é".encode(), fin=False),
    frame(0, b"ed"),
    frame(10, b"unsolicited"),  # a pong nobody asked for: nothing
    frame(2, HUGE),
    frame(2, b""),
    frame(1, b""),
]
RECEIVED = [
    ("text", "héllo"),
    ("bytes", b"x" * 64),
    ("bytes", BIG),
    ("text", "frag ment éed"),
    ("bytes", HUGE),
    ("bytes", b""),
    ("text", ""),
]


def echo_app(seen: list[Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({**message, "type": "websocket.send"})

    return app


async def opened(app: Any, limits: WsLimits | None = None) -> tuple[Any, Any]:
    transport, state = open_session(app, limits)
    transport.feed(HANDSHAKE)
    await settle()
    assert transport.take().startswith(b"HTTP/1.1 101 ")
    return transport, state


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 13, 125, 4096, 1 << 20])
async def test_any_cut_of_the_stream_gives_the_same_messages_and_replies(cut: int) -> None:
    seen: list[Any] = []
    transport, state = await opened(echo_app(seen))
    stream, out = b"".join(STREAM), b""
    for at in range(0, len(stream), cut):
        transport.feed(stream[at : at + cut])
        await settle(3)
        out += transport.take()  # the client reads: the app is never parked in send()
    await settle()
    got = [(k, m[k]) for m in seen for k in ("text", "bytes") if m.get(k) is not None]
    assert got == RECEIVED
    client = Protocol(Side.CLIENT, max_size=None)
    replies = [(f.opcode, bytes(f.data)) for f in frames(client, out + transport.take())]
    # Pongs go out as the pings are read, echoes when the app gets to them: each in order.
    assert [data for op, data in replies if op is Opcode.PONG] == [b"are you there", b"mid"]
    assert [(op, data) for op, data in replies if op is not Opcode.PONG] == [
        (
            Opcode.TEXT if kind == "text" else Opcode.BINARY,
            value.encode() if kind == "text" else value,
        )
        for kind, value in RECEIVED
    ]
    transport.feed(frame(8, struct.pack("!H", 1000)))
    await settle()
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
    assert state.metrics.ws_messages == [len(RECEIVED), len(RECEIVED)]


def close_code(transport: Any) -> int:
    (close,) = frames(Protocol(Side.CLIENT, max_size=None), transport.take())
    assert close.opcode is Opcode.CLOSE
    return int.from_bytes(close.data[:2], "big")


@pytest.mark.parametrize(
    ("first", "then", "code"),
    [
        # Over max_size (1000): 1009 from the head alone, before any of the payload.
        (b"", frame(2, b"x" * 1001)[:4], 1009),
        (frame(1, b"a" * 600, fin=False), frame(0, b"b" * 401)[:4], 1009),
        (frame(2, b"x" * 10), frame(2, b"y", mask=False), 1002),
        (frame(1, b"ok"), frame(1, b"\xff") + frame(1, b"never delivered"), 1007),
        (frame(1, b"a", fin=False), frame(2, b"b"), 1002),  # a new message inside one
    ],
    ids=["too-big", "too-big-fragmented", "unmasked", "invalid-utf8", "interleaved"],
)
async def test_violations_after_fast_frames_get_their_close_code(
    first: bytes, then: bytes, code: int
) -> None:
    seen: list[Any] = []
    transport, _ = await opened(echo_app(seen), WsLimits(max_size=1000))
    transport.feed(first)
    await settle()
    transport.take()
    for byte in then:  # one byte per read: the head is complete only at the end
        transport.feed(bytes([byte]))
    await settle()
    assert close_code(transport) == code
    assert transport.closed
    assert seen[-1]["type"] == "websocket.disconnect" and seen[-1]["code"] == code
    assert all("never" not in str(m) for m in seen)


async def test_a_frame_cut_by_the_end_of_stream_is_abnormal() -> None:
    seen: list[Any] = []
    transport, _ = await opened(echo_app(seen))
    transport.feed(frame(2, BIG)[:1000])
    transport.feed_eof()
    await settle()
    assert seen == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


async def test_non_ascii_text_is_counted_in_bytes_both_ways() -> None:
    """The inbox counts UTF-8 bytes in and out: many large non-ASCII messages the app takes
    one by one never leave reading paused."""
    seen: list[Any] = []
    transport, _ = await opened(echo_app(seen))
    text = "é" * 100_000  # 200,000 bytes, 100,000 characters
    for _ in range(2 * MAX_QUEUE_BYTES // 100_000):
        transport.feed(frame(1, text.encode()))
        await settle()
        transport.take()
        await settle()
        assert transport.reading
    assert len(seen) == 2 * MAX_QUEUE_BYTES // 100_000


def test_frame_heads() -> None:
    whole = frame(2, b"x" * 300)
    assert frame_at(whole, 0, 1000) == (0x82, 8, len(whole))
    assert frame_at(whole[:3], 0, 1000) is None  # the 16-bit length is not all there
    assert frame_at(whole, 0, 299) == BAD_HEAD
    assert frame_at(frame(3, b""), 0, 1000) == BAD_HEAD
    assert frame_at(frame(2, b"", mask=False), 0, 1000) == BAD_HEAD
    masked = frame(1, b"hello" * 300)
    first, start, end = frame_at(masked, 0, 10_000) or BAD_HEAD
    assert first == 0x81
    assert unmask(masked, start, end) == b"hello" * 300
    for n in (0, 125, 126, 65535, 65536):
        client = Protocol(Side.CLIENT, max_size=None)
        (got,) = frames(client, server_head(0x82, n) + b"z" * n)
        assert (got.opcode, len(got.data), got.fin) == (Opcode.BINARY, n, True)
