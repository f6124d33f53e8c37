"""``aionet bench ws ws://HOST:PORT/PATH``: WebSocket echo round trips (RFC 6455).

Each request sends one message (``--size`` bytes, ``--mode text|binary``) and waits for the
echo, which must be the same bytes. ``--messages N`` closes the connection (1000) after N round
trips and opens a new one, so the handshake is part of the load; ``--compress`` offers
permessage-deflate (RFC 7692) and uses it when the server accepts. ``wss://`` (or ``--tls``)
connects with TLS.

The client is a lean ``asyncio.Protocol`` — it must not be the bottleneck against servers
much faster than it. Without compression every message is the same, so each connection masks it
once, with its own key (RFC 6455 §5.3 wants an unpredictable key per frame to defeat cache
poisoning by a hostile *browser* script; a load generator's fixed payload has nothing to hide),
and sends those bytes each time. The echo of an unfragmented message is one known frame, so a
read that is exactly that frame completes the round trip with one comparison; anything else (a
partial read, fragments, a ping, a close, compression) goes through the frame parser. One future
per round trip. Pings from the server are answered; a close from the server fails the request
(``closed``) and the runner reconnects.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..target import BenchError, Target, add_tls_arguments, client_tls_context
from ._stream import FutureProtocol, open_protocol

if TYPE_CHECKING:
    import argparse
    import ssl

__all__ = ["WsTarget", "echo_frame", "frame", "mask"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFLATE_TAIL = b"\x00\x00\xff\xff"
MAX_HEAD = 16 * 1024


def mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3 masking: ``data`` XOR the 4-byte ``key`` repeated (one big-int XOR)."""
    n = len(data)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes, *, rsv1: bool = False, key: bytes | None = None) -> bytes:
    """One final, masked client frame (a random mask ``key`` unless given)."""
    if key is None:
        key = os.urandom(4)
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    return _head(first, 0x80, len(payload)) + key + mask(payload, key)


def _head(first: int, masked: int, n: int) -> bytes:
    """A frame header up to the mask key: the first byte, then the length, minimally encoded."""
    if n < 126:
        return struct.pack("!BB", first, masked | n)
    if n < 65536:
        return struct.pack("!BBH", first, masked | 126, n)
    return struct.pack("!BBQ", first, masked | 127, n)


def echo_frame(opcode: int, payload: bytes) -> bytes:
    """The server's unmasked, final, single-frame echo of an uncompressed ``payload``."""
    return _head(0x80 | opcode, 0, len(payload)) + payload


class _WsSession(FutureProtocol):
    """Handshake, then one message out and its echo back per request."""

    def __init__(self, target: WsTarget) -> None:
        super().__init__()
        self.t = target
        self.buffer = bytearray()
        self.handshaken = False
        self.key = base64.b64encode(os.urandom(16))
        self.deflate: Any = None  # the compressor, when permessage-deflate was agreed
        self.inflate: Any = None
        self.reset_inflate = False
        self.parts: list[bytes] = []
        self.compressed = False
        self.round_trips = 0
        #: Without compression: this connection's masked message and the echo expected back.
        self.message: bytes | None = None
        self.echo: bytes | None = None
        self.error: BenchError | None = None  # a refused handshake, for connect() to raise

    # -- handshake -----------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        t = self.t
        lines = [
            b"GET %s HTTP/1.1" % t.path.encode(),
            b"Host: %s" % t.host_header.encode(),
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + self.key,
            b"Sec-WebSocket-Version: 13",
        ]
        if t.compress:
            lines.append(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        if t.subprotocol:
            lines.append(b"Sec-WebSocket-Protocol: " + t.subprotocol.encode())
        transport.write(b"\r\n".join(lines) + b"\r\n\r\n")

    def _handshake(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self.fail(BenchError("handshake", "response head too large"))
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        status, *fields = head.split("\r\n")
        if not status.startswith("HTTP/1.1 101"):
            self._refuse(f"handshake refused: {status}")
            return
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            self._refuse("bad Sec-WebSocket-Accept")
            return
        extensions = headers.get("sec-websocket-extensions", "").lower()
        if "permessage-deflate" in extensions:
            if not self.t.compress:
                self._refuse("the server chose permessage-deflate, which was not offered")
                return
            self.deflate = zlib.compressobj(wbits=-15)
            self.inflate = zlib.decompressobj(wbits=-15)
            self.reset_inflate = "server_no_context_takeover" in extensions
            self.reset_deflate = "client_no_context_takeover" in extensions
        else:
            t = self.t
            self.message = frame(t.opcode, t.payload, key=os.urandom(4))
            self.echo = t.echo
        self.handshaken = True
        self.done()  # the waiter of connect()

    def _refuse(self, text: str) -> None:
        self.open = False
        self.error = BenchError("handshake", text)
        self.fail(self.error)
        self.transport.close()

    # -- frames --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if data == self.echo and not self.buffer:  # the whole echo, as one frame, in one read
            self.done()
            return
        self.buffer += data
        if not self.handshaken:
            self._handshake()
            if not self.handshaken:
                return
        self._frames()

    def _frames(self) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            first, second = buf[0], buf[1]
            if second & 0x80:
                self._protocol_error("masked frame from the server")
                return
            n, at = second & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, at = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, at = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < at + n:
                return
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            self._frame(first, payload)

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == OP_PING:
            self.transport.write(frame(OP_PONG, payload))
            return
        if opcode == OP_PONG:
            return
        if opcode == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.open = False
            self.fail(BenchError("closed", f"the server closed with {code}"))
            self.transport.close()
            return
        if opcode in (OP_TEXT, OP_BINARY):
            self.compressed = bool(first & 0x40)
            self.parts = [payload]
        elif opcode == OP_CONT:
            self.parts.append(payload)
        else:
            self._protocol_error(f"reserved opcode {opcode}")
            return
        if first & 0x80:  # FIN: the message is whole
            message = b"".join(self.parts)
            self.parts = []
            if self.compressed:
                message = self.inflate.decompress(message + DEFLATE_TAIL)
                if self.reset_inflate:
                    self.inflate = zlib.decompressobj(wbits=-15)
            if message != self.t.payload:
                self.fail(BenchError("protocol", "the echo differs from the message sent"))
            else:
                self.done()

    def _protocol_error(self, text: str) -> None:
        self.open = False
        self.fail(BenchError("protocol", text))
        self.transport.abort()

    # -- requests ------------------------------------------------------------------------------

    async def request(self) -> int:
        t = self.t
        waiter = self.new_waiter()
        payload = t.payload
        if self.deflate is not None:
            data = self.deflate.compress(payload) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
            if data.endswith(DEFLATE_TAIL):
                data = data[:-4]
            if self.reset_deflate:
                self.deflate = zlib.compressobj(wbits=-15)
            self.send(frame(t.opcode, data, rsv1=True))
        else:
            self.send(self.message or frame(t.opcode, payload))
        await waiter
        self.round_trips += 1
        if t.messages and self.round_trips >= t.messages:
            self.open = False  # the runner opens a new connection for the next request
            self.transport.write(frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()
        return 1

    reset_deflate = False


class WsTarget(Target):
    name = "ws"
    help = "WebSocket echo round trips (text or binary, per-connection message count, deflate)"

    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        if url.scheme not in ("ws", "wss"):
            raise ValueError("the target is a ws:// or wss:// URL")
        if url.hostname is None:
            raise ValueError("the URL has no host")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "wss" else 80)
        self.host_header = url.netloc
        self.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.implicit = url.scheme == "wss" or args.tls
        if args.size < 0:
            raise ValueError("--size must not be negative")
        self.size, self.mode = args.size, args.mode
        self.opcode = OP_TEXT if args.mode == "text" else OP_BINARY
        # Text must be UTF-8: ASCII letters; binary: random bytes.
        self.payload = (
            bytes(97 + b % 26 for b in os.urandom(args.size))
            if args.mode == "text"
            else os.urandom(args.size)
        )
        self.echo = echo_frame(self.opcode, self.payload)
        if args.messages < 0:
            raise ValueError("--messages must not be negative")
        self.messages = args.messages
        self.connect_per_request = args.messages == 1
        self.compress = args.compress
        self.subprotocol = args.subprotocol
        self.sni = args.sni
        self._args = args
        self.tls: ssl.SSLContext | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("url", metavar="URL", help="ws://HOST:PORT/PATH or wss://...")
        parser.add_argument("--size", type=int, default=64, help="message bytes (default 64)")
        parser.add_argument("--mode", choices=("text", "binary"), default="binary")
        parser.add_argument(
            "--messages",
            type=int,
            default=0,
            help="round trips per connection, then close and reconnect (default 0: no limit)",
        )
        parser.add_argument(
            "--compress", action="store_true", help="offer permessage-deflate (RFC 7692)"
        )
        parser.add_argument("--subprotocol", help="ask for this Sec-WebSocket-Protocol")
        add_tls_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> WsTarget:
        return cls(args)

    def prepare(self) -> None:
        if self.implicit:
            self.tls = client_tls_context(self._args)

    async def connect(self) -> _WsSession:
        session = await open_protocol(
            lambda: _WsSession(self), self.host, self.port, self.tls, self.sni
        )
        # The 101 may have arrived already (before this coroutine resumed).
        if session.error is not None:
            raise session.error
        if not session.handshaken:
            waiter = session.new_waiter()  # resolved by the 101 (or failed by a refusal)
            try:
                await waiter
            except BaseException:
                session.abort()
                raise
        return session

    def describe(self) -> dict[str, Any]:
        return {
            "url": self._args.url,
            "size": self.size,
            "mode": self.mode,
            "messages_per_connection": self.messages or None,
            "compress": self.compress,
            "tls": self.implicit,
        }
