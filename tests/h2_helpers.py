"""Raw HTTP/2 for the tests: frames built with hyperframe and HPACK, read back without a
client state machine (h2's client stops at a GOAWAY, and an attacker follows no rules)."""

from __future__ import annotations

import socket
from typing import Any

from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame

__all__ = ["RawH2", "frames_until_eof", "request_block"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def request_block(encoder: Encoder, path: str = "/", **extra: str) -> bytes:
    headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x")]
    return encoder.encode(headers + list(extra.items()))


class RawH2:
    """A socket that has sent the preface and an empty SETTINGS (and ACKs the server's)."""

    def __init__(self, port: int, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.encoder = Encoder()
        self.sock.sendall(PREFACE + SettingsFrame(0, settings or {}).serialize())

    def send(self, *frames: Any) -> None:
        self.sock.sendall(b"".join(f.serialize() for f in frames))

    def headers(self, stream: int, block: bytes, *, end_stream: bool = True) -> HeadersFrame:
        flags = ["END_HEADERS", *(["END_STREAM"] if end_stream else [])]
        return HeadersFrame(stream, block, flags=flags)

    def read_all(self, on_goaway: Any = None) -> list[Any]:
        try:
            return frames_until_eof(self.sock, on_goaway)
        finally:
            self.sock.close()


def frames_until_eof(sock: socket.socket, on_goaway: Any = None) -> list[Any]:
    """Every frame the server sends until it closes; PINGs and SETTINGS are acknowledged, and
    ``on_goaway(frame)`` may send bytes when a GOAWAY arrives."""
    sock.settimeout(10)
    data = b""
    frames: list[Any] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            frame.parse_body(memoryview(data[9 : 9 + length]))
            data = data[9 + length :]
            frames.append(frame)
            try:
                if isinstance(frame, GoAwayFrame) and on_goaway is not None:
                    sock.sendall(on_goaway(frame))
                if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                    sock.sendall(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            except OSError:
                pass  # the server closed first
    return frames


def goaway(frames: list[Any]) -> GoAwayFrame | None:
    found = [f for f in frames if isinstance(f, GoAwayFrame)]
    return found[-1] if found else None
