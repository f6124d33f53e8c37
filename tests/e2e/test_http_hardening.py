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
from tests.waiting import wait_until

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
            with raw_client(*server.address("web"), rcvbuf=4096) as sock:
                sending = asyncio.create_task(loop.sock_sendall(sock, flood))
                state = server.manager.slots["web"].handler.state
                await wait_until(lambda: state.protocols, 5, what="the connection served")
                proto = the_protocol(server)
                deepest = unparsed = 0
                for _ in range(40):  # the server answers what the socket buffers take, then waits
                    deepest = max(deepest, len(proto._queue))
                    unparsed = max(unparsed, len(getattr(proto, "_backlog", b"")))
                    await asyncio.sleep(0.05)  # part of the test: sampled for 2 s
                assert deepest <= MAX_QUEUE + 1, deepest
                assert unparsed <= 512 * 1024, unparsed  # at most one read waits unparsed
                received = bytearray()
                while received.count(b"HTTP/1.1 200 ") < count:  # the client reads at last
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 20)
                    assert chunk
                    received += chunk
                await sending
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
            with raw_client(*server.address("web")) as sock:
                sending = asyncio.create_task(loop.sock_sendall(sock, flood))
                await asyncio.wait_for(STATE["started"].wait(), 5)
                proto = the_protocol(server)  # the flood fills its queue up to the bound
                await wait_until(lambda: len(proto._queue) >= MAX_QUEUE, 5, what="a full queue")
                assert len(proto._queue) <= MAX_QUEUE + 1
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # a reset: the client vanishes
                with contextlib.suppress(OSError):
                    await sending
                STATE["release"].set()  # the request in flight is answered (into a reset socket)
                state = server.manager.slots["web"].handler.state
                await wait_until(lambda: not state.protocols, 5, what="the connection gone")
    answered = [e for e in logs if e["event"] == "http_request"]
    assert [e["path"] for e in answered] in ([], ["/0"])
    # The queued requests cost one line for the connection, not one each.
    [summary] = [e for e in logs if e["event"] == "http_requests_unanswered"]
    assert 1 <= summary["count"] <= MAX_QUEUE + 1


# -- item 4: send and body timeouts, a half-close mid-body ----------------------------------


async def wait_closed(server: Any, timeout: float, *, seen: bool = False) -> bool:
    """Whether the listener's one connection, once seen (or known to have been opened), is
    gone (closed and released) within ``timeout``."""
    slot = server.manager.slots["web"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        seen = seen or slot.count > 0
        if seen and not slot.handler.state.protocols and slot.count == 0:
            return True
        await asyncio.sleep(0.05)  # polling the condition until the deadline
    return False


async def test_a_client_that_stops_reading_is_cut_off_at_send_timeout(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:big", send_timeout="500ms")
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        loop = asyncio.get_running_loop()
        with raw_client(*server.address("web"), rcvbuf=4096) as sock:
            await loop.sock_sendall(sock, b"GET /?mib=64 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert await wait_closed(server, 10), "a zero-window client held the connection"
            state = server.manager.slots["web"].handler.state
            # the app's send() saw the disconnect: its task ended
            await wait_until(lambda: not state.tasks, 2, what="the app's task ending")
            assert STATE["chunks_sent"] < 64 * 16


async def test_a_static_file_not_read_is_cut_off_at_send_timeout(tmp_path: Path) -> None:
    public = tmp_path / "public"
    public.mkdir()
    (public / "big.bin").write_bytes(b"x" * (32 * 1024 * 1024))  # sendfile on the asyncio loop
    config = http_config(static_dir=str(public), send_timeout="500ms")
    async with serve(config, data_dir=tmp_path) as server:
        loop = asyncio.get_running_loop()
        with raw_client(*server.address("web"), rcvbuf=4096) as sock:
            await loop.sock_sendall(sock, b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            assert await wait_closed(server, 10), "a zero-window client held the connection"
            state = server.manager.slots["web"].handler.state
            # the file send did not hang on the closed socket
            await wait_until(lambda: not state.tasks, 2, what="the file send ending")


async def test_a_slow_reader_that_makes_progress_is_not_cut_off(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:big", send_timeout="500ms", keepalive_timeout="60s")
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        loop = asyncio.get_running_loop()
        with raw_client(*server.address("web"), rcvbuf=4096) as sock:
            await loop.sock_sendall(sock, b"GET /?mib=2 HTTP/1.1\r\nHost: t\r\n\r\n")
            received = bytearray()
            while not split_responses(bytes(received)):  # a little at a time, for seconds
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 16384), 5)
                assert chunk, "closed while the client was still reading"
                received += chunk
                await asyncio.sleep(0.01)  # part of the test: a slow reader
            [response] = split_responses(bytes(received))
            assert response.status == 200 and len(response.body) == 2 * 1024 * 1024
            assert server.manager.slots["web"].count == 1  # still open, for the next request


POST_100 = b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"


async def test_a_body_that_stops_coming_gets_408_at_body_timeout(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:records_body", body_timeout="500ms")
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        loop = asyncio.get_running_loop()
        with raw_client(*server.address("web")) as sock:
            await loop.sock_sendall(sock, POST_100 + b"x" * 10)  # 90 bytes owed, never sent
            data, closed = await recv_until_closed(sock, 10)
            assert closed and split_responses(data)[0].status == 408
            assert STATE["received"][-1] == "http.disconnect"
            assert await wait_closed(server, 5, seen=True)


async def test_a_body_that_trickles_within_body_timeout_is_read(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:records_body", body_timeout="500ms")
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        loop = asyncio.get_running_loop()
        with raw_client(*server.address("web")) as sock:
            await loop.sock_sendall(sock, POST_100)
            for _ in range(10):  # 2 s in all, never more than 0.2 s between two reads
                await asyncio.sleep(0.2)  # part of the test: the trickle
                await loop.sock_sendall(sock, b"x" * 10)
            data, closed = await recv_until_closed(sock, 2)
            [response] = split_responses(data)
            assert (response.status, response.body, closed) == (200, b"100", False)


async def test_a_half_close_mid_body_disconnects_the_app_and_closes(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:records_body")  # default body_timeout: 60 s
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        loop = asyncio.get_running_loop()
        with raw_client(*server.address("web")) as sock:
            await loop.sock_sendall(sock, POST_100 + b"x" * 10)
            received = STATE["received"]
            await wait_until(lambda: received == ["http.request"], 5, what="the app mid-body")
            sock.shutdown(socket.SHUT_WR)
            data, closed = await recv_until_closed(sock, 5)
            assert closed and b"200" not in data
            assert STATE["received"][-1] == "http.disconnect"
            assert await wait_closed(
                server, 2, seen=True
            )  # not left in CLOSE-WAIT until the idle sweep


# -- item 11: hostile static paths, chunk extensions and trailers ---------------------------


def static_site(tmp_path: Path) -> Path:
    public = tmp_path / "public"
    (public / "evil.example").mkdir(parents=True)
    (public / "evil.example" / "index.html").write_text("<p>a directory named like a host</p>")
    return public


async def one_exchange(server: Any, request: bytes) -> tuple[bytes, bool]:
    with raw_client(*server.address("web")) as sock:
        await asyncio.get_running_loop().sock_sendall(sock, request)
        return await recv_until_closed(sock, 5)


async def test_a_segment_longer_than_the_filesystem_allows_is_404_without_traceback(
    tmp_path: Path,
) -> None:
    config = http_config(static_dir=str(static_site(tmp_path)))
    with capture_logs() as logs:
        async with serve(config, data_dir=tmp_path) as server:
            for target in (b"/" + b"a" * 300, b"/evil.example/" + b"b" * 1000 + b"/c"):
                request = b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target
                data, _ = await one_exchange(server, request)
                assert split_responses(data)[0].status == 404
    assert not [e for e in logs if e["event"] == "http_app_error" or "exc_info" in e]


async def test_a_directory_redirect_is_never_protocol_relative(tmp_path: Path) -> None:
    config = http_config(static_dir=str(static_site(tmp_path)))
    async with serve(config, data_dir=tmp_path) as server:
        for target, status, location in (
            (b"/evil.example", 301, "/evil.example/"),
            (b"//evil.example", 301, "/evil.example/"),
            (b"///evil.example", 301, "/evil.example/"),
            (b"//evil.example?x=1", 301, "/evil.example/?x=1"),
            (b"/\\evil.example", 400, None),
            (b"/%5Cevil.example", 400, None),
            (b"/%2Fevil.example", 400, None),
        ):
            request = b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target
            data, _ = await one_exchange(server, request)
            [response] = split_responses(data)
            assert (response.status, response.headers.get("location")) == (status, location)


CHUNKED_POST = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


async def send_in_pieces(server: Any, pieces: list[bytes]) -> tuple[bytes, bool]:
    """Send ``pieces`` one by one (each its own read, as from a slow client); the server may
    cut us off part way."""
    loop = asyncio.get_running_loop()
    with raw_client(*server.address("web")) as sock:
        with contextlib.suppress(ConnectionError):
            for piece in pieces:
                await loop.sock_sendall(sock, piece)
                await asyncio.sleep(0.002)  # part of the test: each piece its own read
        return await recv_until_closed(sock, 5)


async def test_chunk_extensions_are_bounded_like_the_head(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:records_body", max_header_size="2KiB")
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        flood = [b"1;ext=" + b"a" * 8192] + [b"a" * 8192] * 100 + [b"\r\nx\r\n0\r\n\r\n"]
        data, closed = await send_in_pieces(server, [CHUNKED_POST, *flood])
        assert split_responses(data)[0].status == 400 and closed


async def test_trailers_are_bounded_like_the_head(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:records_body", max_header_size="2KiB")
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        trailer = [b"1\r\nx\r\n0\r\nX-Trailer: "] + [b"a" * 8192] * 100 + [b"\r\n\r\n"]
        data, closed = await send_in_pieces(server, [CHUNKED_POST, *trailer])
        assert split_responses(data)[0].status == 431 and closed


async def test_many_small_chunks_and_a_small_trailer_are_fine(tmp_path: Path) -> None:
    config = http_config(app=f"{RAW}:records_body", max_header_size="2KiB", keepalive_timeout="60s")
    reset_state()
    async with serve(config, data_dir=tmp_path) as server:
        chunks = [b"1\r\nx\r\n" * 500] * 6 + [b"a;n=v\r\n" + b"y" * 10 + b"\r\n0\r\nX-T: 1\r\n\r\n"]
        data, closed = await send_in_pieces(server, [CHUNKED_POST, *chunks])
        [response] = split_responses(data)
        assert (response.status, response.body, closed) == (200, b"3010", False)
