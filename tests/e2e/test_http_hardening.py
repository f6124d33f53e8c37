"""Hardening of the ``http`` handler on raw sockets (issue 13): the pipelining bound, the send
and body timeouts, a half-close in the middle of a body, and hostile static-file paths."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from aionet.http.protocol import MAX_QUEUE, HttpProtocol
from aionet.testing import serve
from tests.apps.raw_apps import STATE, reset_state
from tests.http_helpers import http_config, split_responses

RAW = "tests.apps.raw_apps"
#: About 80 bytes each: 1.4 MB of them is some 17,000 requests.
FLOOD_GET = b"GET /%d HTTP/1.1\r\nHost: t\r\nUser-Agent: flood-%030d\r\n\r\n"


def the_protocol(server: Any) -> HttpProtocol:
    [proto] = server.manager.slots["web"].handler.state.protocols
    assert isinstance(proto, HttpProtocol)
    return proto


def raw_client(host: str, port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, port))
    sock.setblocking(False)
    return sock


async def recv_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``timeout`` passes (False)."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    return bytes(received), True
                received += chunk
    except TimeoutError:
        return bytes(received), False
    except ConnectionError:
        return bytes(received), True


# -- item 3: the pipelining bound ------------------------------------------------------------


async def test_a_pipelined_flood_that_is_not_read_stays_bounded(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:slow_path")
    count = 1_400_000 // len(FLOOD_GET % (0, 0))
    flood = b"".join(FLOOD_GET % (i, i) for i in range(count))
    with capture_logs() as logs:
        async with serve(config, data_dir=tmp_path) as server:
            loop = asyncio.get_running_loop()
            sock = raw_client(*server.address("web"), rcvbuf=4096)
            sending = asyncio.create_task(loop.sock_sendall(sock, flood))
            await asyncio.sleep(0.2)
            proto = the_protocol(server)
            deepest = unparsed = 0
            for _ in range(40):  # the server answers what the socket buffers take, then waits
                deepest = max(deepest, len(proto._queue))
                unparsed = max(unparsed, len(getattr(proto, "_backlog", b"")))
                await asyncio.sleep(0.05)
            assert deepest <= MAX_QUEUE + 1, deepest
            assert unparsed <= 512 * 1024, unparsed  # at most one read waits unparsed
            received = bytearray()
            while received.count(b"HTTP/1.1 200 ") < count:  # the client reads at last
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 20)
                assert chunk
                received += chunk
            await sending
            sock.close()
            bodies = [r.body for r in split_responses(bytes(received))]
            assert bodies == [b"/%d" % i for i in range(count)]
    assert sum(1 for e in logs if e["event"] == "http_request") == count


async def test_requests_never_answered_are_not_each_logged(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:never_reads")
    reset_state()
    flood = b"".join(FLOOD_GET % (i, i) for i in range(20_000))
    with capture_logs() as logs:
        async with serve(config, data_dir=tmp_path) as server:
            loop = asyncio.get_running_loop()
            sock = raw_client(*server.address("web"))
            sending = asyncio.create_task(loop.sock_sendall(sock, flood))
            await asyncio.wait_for(STATE["started"].wait(), 5)
            await asyncio.sleep(0.3)
            assert len(the_protocol(server)._queue) <= MAX_QUEUE + 1
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset: the client vanishes
            with contextlib.suppress(OSError):
                await sending
            STATE["release"].set()  # the request in flight is answered (into a reset socket)
            for _ in range(100):
                if not server.manager.slots["web"].handler.state.protocols:
                    break
                await asyncio.sleep(0.05)
    answered = [e for e in logs if e["event"] == "http_request"]
    assert [e["path"] for e in answered] in ([], ["/0"])
    # The queued requests cost one line for the connection, not one each.
    [summary] = [e for e in logs if e["event"] == "http_requests_unanswered"]
    assert 1 <= summary["count"] <= MAX_QUEUE + 1
