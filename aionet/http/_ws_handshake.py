"""The WebSocket opening handshake (RFC 6455 §4.2) for ``HttpProtocol``: checks and the 101.

A request that llhttp reports as an upgrade, with ``Upgrade: websocket`` and ``GET``, on a
listener hosting an ASGI app, becomes a ``WebSocket`` session (``aionet.http.websocket``).
The checks and the negotiation of permessage-deflate (RFC 7692) are ``websockets``' own
(``ServerProtocol.accept`` on the already-parsed head): a malformed handshake is answered
with its status (400, 426) before the app is called; otherwise the 101 is built here when the
app sends ``websocket.accept`` (its subprotocol and headers added).

Library choice (issue 17): ``websockets``' sans-IO framing against ``wsproto``, measured
in-process (parse a masked client frame + serialize the echo, one core, CPython 3.11,
websockets 17.4 with its C speedups, wsproto 1.3.2)::

    64 B    x 100,000:  websockets 144,700 msg/s   wsproto 61,000 msg/s
    16 KiB  x  20,000:  websockets 126,600 msg/s   wsproto 25,200 msg/s

``websockets`` is 2.4x faster on small messages and 5x on large ones (its C unmasking), and
its ``Protocol`` enforces the RFC's close codes itself; so it is the one used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request
from websockets.server import ServerProtocol

if TYPE_CHECKING:
    from websockets.extensions import Extension
    from websockets.http11 import Response

__all__ = ["Handshake", "is_websocket_upgrade"]

#: permessage-deflate with bounded memory: a 4 KiB window each way and zlib's memLevel 5
#: (~ 16 KiB of compressor state instead of ~ 256 KiB), as websockets' own server does.
_DEFLATE = ServerPerMessageDeflateFactory(
    server_max_window_bits=12,
    client_max_window_bits=12,
    compress_settings={"memLevel": 5},
)
_DROP = frozenset(("date", "server", "content-length", "content-type", "connection"))


def is_websocket_upgrade(method: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request llhttp reports as an upgrade asks for WebSocket."""
    if method != b"GET":
        return False
    return any(name == b"upgrade" and value.lower() == b"websocket" for name, value in headers)


class Handshake:
    """The checked handshake of one request: the 101 to send, or the refusal to answer with."""

    __slots__ = ("extensions", "refusal", "response")

    def __init__(self, target: bytes, headers: list[tuple[bytes, bytes]], deflate: bool) -> None:
        server = ServerProtocol(extensions=[_DEFLATE] if deflate else None)
        request = Request(
            target.decode("latin-1"),
            Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
        )
        response: Response = server.accept(request)
        self.response = response
        #: The negotiated extensions (permessage-deflate or none) for the framing protocol.
        self.extensions: list[Extension] = list(server.extensions)
        #: The HTTP response refusing a malformed handshake (None: it is valid).
        self.refusal: bytes | None = None
        if response.status_code != 101:
            self.refusal = _serialize(response.status_code, response.reason_phrase, response)

    def accept(self, prelude: bytes, subprotocol: str | None, extra: list[Any]) -> bytes:
        """The ``101 Switching Protocols`` head with the app's subprotocol and headers."""
        lines = [b"HTTP/1.1 101 Switching Protocols\r\n", prelude]
        for name, value in self.response.headers.raw_items():
            if name.lower() not in _DROP:
                lines.append(b"%s: %s\r\n" % (name.encode(), value.encode("latin-1")))
        lines.append(b"connection: Upgrade\r\n")
        if subprotocol is not None:
            lines.append(b"sec-websocket-protocol: %s\r\n" % subprotocol.encode())
        for header in extra:
            key, raw = bytes(header[0]).lower(), bytes(header[1])
            if key in (b"sec-websocket-protocol", b"sec-websocket-extensions"):
                continue  # the server negotiates these
            if b"\r" in raw or b"\n" in raw or b"\r" in key or b"\n" in key:
                raise ValueError(f"invalid header {key!r}")
            lines.append(b"%s: %s\r\n" % (key, raw))
        lines.append(b"\r\n")
        return b"".join(lines)


def _serialize(status: int, reason: str, response: Response) -> bytes:
    body = response.body or b""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())]
    for name, value in response.headers.raw_items():
        if name.lower() not in ("content-length", "connection", "server", "date"):
            lines.append(b"%s: %s\r\n" % (name.encode(), value.encode("latin-1")))
    lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join(lines) + body
