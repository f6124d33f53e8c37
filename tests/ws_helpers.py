"""Helpers for the WebSocket tests: a raw-socket client (for what no real client sends) and the
app's view of the server (the live sessions)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any

from aionet.core.server import Server


async def raw_open(
    host: str, port: int, path: str = "/echo", *, rcvbuf: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a WebSocket by hand (no extension offered); returns the streams and the 101 head.

    ``rcvbuf`` shrinks the client's socket receive buffer (a slow reader fills up sooner).
    """
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (path.encode(), host.encode(), port, key)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """One client frame, masked unless told otherwise (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (never masked): (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    assert not b1 & 0x80, "a server frame must not be masked"
    size = b1 & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(size)


async def read_close(reader: asyncio.StreamReader) -> tuple[int, list[int]]:
    """Read frames up to the close frame: (its code, the opcodes before it)."""
    before: list[int] = []
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == 8:
            return struct.unpack("!H", payload[:2])[0], before
        before.append(opcode)


def sessions(server: Server, listener: str = "web") -> list[Any]:
    """The live WebSocket sessions of an ``http`` listener."""
    return list(server.handlers[listener].state.websockets)  # type: ignore[attr-defined]
