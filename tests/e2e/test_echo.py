"""Echo over real loopback sockets, driven by stdlib clients (socket, asyncio streams)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from aionet.testing import serve
from tests.waiting import wait_until


def echo_config(**listener: Any) -> dict[str, Any]:
    server = listener.pop("server", {})
    return {
        "server": {"limits": {"idle_timeout": "5m", "max_connections_per_ip": 1000}, **server},
        "listeners": [{"name": "echo", "protocol": "echo", "bind": "127.0.0.1:0", **listener}],
    }


async def ping(host: str, port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    await writer.drain()
    data = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return data


async def test_500_concurrent_clients_each_get_their_bytes(tmp_path: Path) -> None:
    async with serve(echo_config(), data_dir=tmp_path) as server:
        host, port = server.address("echo")
        payloads = [os.urandom(64) + str(i).encode() for i in range(500)]
        answers = await asyncio.gather(*(ping(host, port, p) for p in payloads))
        assert answers == payloads
        stats = server.manager.slots["echo"].stats
        await wait_until(lambda: stats.accepted == 500, 5, what="every connection counted")


async def test_one_mebibyte_round_trips_identically(tmp_path: Path) -> None:
    async with serve(echo_config(), data_dir=tmp_path) as server:
        host, port = server.address("echo")
        blob = os.urandom(1024 * 1024)
        reader, writer = await asyncio.open_connection(host, port)

        async def send() -> None:
            for i in range(0, len(blob), 65536):
                writer.write(blob[i : i + 65536])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        received = await reader.read(-1)  # until the server closes after our EOF
        await sender
        writer.close()
        assert received == blob


async def test_stdlib_socket_client_in_a_thread(tmp_path: Path) -> None:
    async with serve(echo_config(), data_dir=tmp_path) as server:
        host, port = server.address("echo")

        def blocking_client() -> bytes:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(b"hello, aionet\n")
                return s.recv(100)

        assert await asyncio.to_thread(blocking_client) == b"hello, aionet\n"


async def test_ipv6_loopback(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    async with serve(echo_config(bind="[::1]:0"), data_dir=tmp_path) as server:
        host, port = server.address("echo")[:2]
        assert host == "::1"
        assert await ping(host, port, b"six") == b"six"


async def test_unix_socket_echo_and_stale_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on, as a killed process leaves it
    stale.close()
    async with serve(echo_config(bind=f"unix:{path}"), data_dir=tmp_path):
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"over unix")
        assert await reader.readexactly(9) == b"over unix"
        writer.close()
    assert not path.exists()  # removed on stop


async def test_unix_socket_in_use_is_not_stolen(tmp_path: Path) -> None:
    from aionet.errors import StartupError

    path = tmp_path / "busy.sock"
    async with serve(echo_config(bind=f"unix:{path}"), data_dir=tmp_path):
        with pytest.raises(StartupError, match="is in use by a running server"):
            async with serve(echo_config(bind=f"unix:{path}"), data_dir=tmp_path):
                pass


async def test_per_ip_cap_refuses_the_next_connection(tmp_path: Path) -> None:
    config = {
        "listeners": [
            {
                "name": "greet",
                "protocol": "aionet_greet:Greet",
                "bind": "127.0.0.1:0",
                "limits": {"max_connections_per_ip": 2},
            }
        ],
    }
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "greet-plugin"))
    try:
        async with serve(config, data_dir=tmp_path) as server:
            host, port = server.address("greet")
            held = [await asyncio.open_connection(host, port) for _ in range(2)]
            for reader, writer in held:  # both are really being served
                writer.write(b"x\n")
                assert await reader.readline() == b"hello x\r\n"
            reader, writer = await asyncio.open_connection(host, port)
            assert await reader.read() == b"busy, try later\r\n"  # then closed
            writer.close()
            assert server.manager.slots["greet"].stats.refused == {
                "listener_max_connections_per_ip": 1
            }
            for _, w in held:
                w.close()
    finally:
        sys.path.pop(0)


async def test_idle_connection_is_closed_at_the_idle_timeout(tmp_path: Path) -> None:
    config = echo_config(limits={"idle_timeout": "300ms"})
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("echo")
        quiet_r, quiet_w = await asyncio.open_connection(host, port)
        busy_r, busy_w = await asyncio.open_connection(host, port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(8):  # keep one connection busy past the timeout
            busy_w.write(b".")
            assert await busy_r.readexactly(1) == b"."
            await asyncio.sleep(0.1)  # part of the test: a byte every 0.1 s, for 0.8 s
        assert await asyncio.wait_for(quiet_r.read(), 2) == b""  # closed by the server
        assert loop.time() - start >= 0.25
        busy_w.write(b"!")
        assert await busy_r.readexactly(1) == b"!"
        assert server.manager.slots["echo"].stats.idle_closed == 1
        quiet_w.close()
        busy_w.close()


async def test_client_that_never_reads_cannot_grow_server_memory(tmp_path: Path) -> None:
    async with serve(echo_config(), data_dir=tmp_path) as server:
        host, port = server.address("echo")
        sock = socket.create_connection((host, port))
        sock.settimeout(0.5)

        def flood() -> int:
            # Send, never reading, until the kernel buffers on both sides are full and the
            # server has paused reading: sends then stop making progress.
            sent = 0
            chunk = b"z" * 65536
            while True:
                try:
                    sent += sock.send(chunk)
                except TimeoutError:
                    return sent
                assert sent < 256 * 1024 * 1024, "the server kept reading without bound"

        sent = await asyncio.to_thread(flood)
        [rec] = server.manager.live.values()
        written_not_read = rec.bytes_out
        transport = rec.transport
        assert transport.get_write_buffer_size() <= 4 * 1024 * 1024
        assert sent - rec.bytes_in < 64 * 1024 * 1024  # the rest is in kernel buffers
        assert written_not_read == rec.bytes_in
        sock.close()


async def test_half_close_flushes_then_closes(tmp_path: Path) -> None:
    async with serve(echo_config(), data_dir=tmp_path) as server:
        host, port = server.address("echo")
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"last words")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"last words"
        writer.close()


def exchange(host: str, port: int, payloads: list[bytes]) -> list[bytes | None]:
    """Each payload sent from one UDP socket in turn, and the reply to it (None: none in
    half a second)."""
    out: list[bytes | None] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for payload in payloads:
            s.sendto(payload, (host, port))
            try:
                out.append(s.recv(65536))
            except TimeoutError:
                out.append(None)
    return out


async def test_udp_echo(tmp_path: Path) -> None:
    config = {
        "listeners": [
            {
                "name": "u",
                "protocol": "udp-echo",
                "bind": "127.0.0.1:0",
                "options": {"max_datagram": 1000},
            },
        ]
    }
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("u", "udp")

        payloads = [b"ping", b"x" * 1000, b"y" * 1001]
        assert await asyncio.to_thread(exchange, host, port, payloads) == [
            b"ping",
            b"x" * 1000,
            None,
        ]
        stats = server.manager.slots["u"].stats
        assert (stats.datagrams_in, stats.datagrams_out) == (3, 2)


async def test_udp_and_tcp_echo_share_a_port_number(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {
        "listeners": [
            {"name": "t", "protocol": "echo", "bind": f"127.0.0.1:{port}"},
            {"name": "u", "protocol": "udp-echo", "bind": f"127.0.0.1:{port}"},
        ]
    }
    async with serve(config, data_dir=tmp_path) as server:
        assert server.address("t")[1] == server.address("u", "udp")[1] == port
        assert await ping("127.0.0.1", port, b"tcp") == b"tcp"


async def test_reuse_port_lets_two_servers_share_a_port(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = echo_config(bind=f"127.0.0.1:{port}", reuse_port=True, backlog=16)
    async with (
        serve(config, data_dir=tmp_path / "a") as one,
        serve(config, data_dir=tmp_path / "b") as two,
    ):
        answers = await asyncio.gather(*(ping("127.0.0.1", port, b"%d" % i) for i in range(64)))
        assert answers == [b"%d" % i for i in range(64)]

        def total() -> int:
            return sum(s.manager.slots["echo"].stats.accepted for s in (one, two))

        await wait_until(lambda: total() == 64, 5, what="every connection counted")


async def test_without_reuse_port_a_second_bind_fails(tmp_path: Path) -> None:
    from aionet.errors import StartupError

    async with serve(echo_config(), data_dir=tmp_path) as one:
        port = one.address("echo")[1]
        with pytest.raises(StartupError, match="Address already in use"):
            async with serve(echo_config(bind=f"127.0.0.1:{port}"), data_dir=tmp_path):
                pass


async def test_unix_datagram_echo(tmp_path: Path) -> None:
    path = tmp_path / "udp.sock"
    config = {"listeners": [{"name": "u", "protocol": "udp-echo", "bind": f"unix:{path}"}]}
    async with serve(config, data_dir=tmp_path):

        def client() -> bytes:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.bind(str(tmp_path / "client.sock"))  # a named socket, so it can be answered
                s.settimeout(2)
                s.sendto(b"unix datagram", str(path))
                return s.recv(100)

        assert await asyncio.to_thread(client) == b"unix datagram"


async def test_every_datagram_reply_kind_is_sent_and_counted(tmp_path: Path) -> None:
    """bytes go out inline; bytearray, memoryview and awaited replies take the other path;
    no reply and a failing handler send nothing. The counters see each one."""
    handler = "tests.e2e.ops_handlers:ReplyKinds"
    config = {"listeners": [{"name": "u", "protocol": handler, "bind": "127.0.0.1:0"}]}
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("u", "udp")

        payloads = [b"b1", b"a22", b"m333", b"w4444", b"n", b"x", b"b5"]
        replies = await asyncio.to_thread(exchange, host, port, payloads)
        assert replies == [b"B1", b"A22", b"M333", b"W4444", None, None, b"B5"]
        stats = server.manager.slots["u"].stats
        assert (stats.datagrams_in, stats.datagrams_out, stats.handler_errors) == (7, 5, 1)
        assert (stats.bytes_in, stats.bytes_out) == (18, 16)
