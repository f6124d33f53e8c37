"""Admission counts a connection from accept(): silent clients on a TLS or PROXY listener cannot
hold more sockets than the caps allow while their handshake or header is pending (issue 13.2)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from aionet.core.server import Server
from aionet.testing import serve
from tests.waiting import wait_until

from .conftest import Pki

SILENT = 40


def _config(pki: Pki, *, listener: dict[str, Any], **limits: Any) -> dict[str, Any]:
    return {
        "logging": {"level": "warning"},
        "server": {"limits": limits} if limits else {},
        "tls": {"certificates": [pki.certificate("main")]},
        "listeners": [
            {"name": "echo", "protocol": "echo", "bind": "127.0.0.1:0", **listener},
        ],
    }


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _closed_by_server(sock: socket.socket, within: float = 5.0) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    try:
        async with asyncio.timeout(within):
            return await loop.sock_recv(sock, 1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def _silent_clients(server: Server, addr: tuple[str, int], count: int) -> list[socket.socket]:
    """Open ``count`` connections that never send a byte; return them once the server has seen
    every one (counted or refused)."""
    clients = []
    for _ in range(count):
        s = socket.socket()
        s.connect(addr)
        clients.append(s)
    stats = server.manager.slots["echo"].stats
    await wait_until(lambda: server.manager.reserved + sum(stats.refused.values()) >= count)
    return clients


@pytest.mark.parametrize(
    ("limits", "listener_limits", "reason"),
    [
        ({"max_connections_per_ip": 5}, {}, "max_connections_per_ip"),
        ({"max_connections": 5}, {}, "max_connections"),
        ({}, {"max_connections": 5}, "listener_max_connections"),
        ({}, {"max_connections_per_ip": 5}, "listener_max_connections_per_ip"),
    ],
    ids=["per-ip", "global", "listener", "listener-per-ip"],
)
async def test_silent_tls_clients_over_the_cap_are_refused_at_once(
    tmp_path: Path,
    pki: Pki,
    limits: dict[str, int],
    listener_limits: dict[str, int],
    reason: str,
) -> None:
    listener = {"tls": {"certificates": ["main"], "handshake_timeout": 30}}
    if listener_limits:
        listener["limits"] = listener_limits
    config = _config(pki, listener=listener, **limits)
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("echo")[:2]
        before = _fds()
        clients = await _silent_clients(server, addr, SILENT)
        try:
            stats = server.manager.slots["echo"].stats
            assert server.manager.reserved == 5  # held while their handshakes are pending
            assert stats.refused == {reason: SILENT - 5}
            # The server holds 5 connections, not 40: the others are closed right away.
            closed = await asyncio.gather(*(_closed_by_server(c, 3.0) for c in clients[5:]))
            assert all(closed)
            # Our 40 clients + the server's 5, each with the spare descriptor a pending handshake
            # keeps for the protocol_version alert (+ slack): bounded by the cap, not the flood.
            assert _fds() - before <= SILENT + 2 * 5 + 2
        finally:
            for c in clients:
                c.close()
        # The silent ones are gone: their failed handshakes give the counts back.
        await wait_until(lambda: server.manager.reserved == 0)
        assert server.manager.slots["echo"].count == 0
        assert server.manager.per_ip == {}


async def test_a_reserved_connection_is_admitted_after_its_handshake(
    tmp_path: Path, pki: Pki
) -> None:
    listener = {"tls": {"certificates": ["main"], "handshake_timeout": 30}}
    config = _config(pki, listener=listener, max_connections_per_ip=2)
    ctx = pki.client()
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("echo")[:2]
        r1, w1 = await asyncio.open_connection(*addr, ssl=ctx, server_hostname="localhost")
        w1.write(b"one")
        assert await r1.readexactly(3) == b"one"
        assert (len(server.manager.live), server.manager.reserved) == (1, 0)
        silent = socket.create_connection(addr)  # the second slot, held by a handshake
        await wait_until(lambda: server.manager.reserved == 1)
        third = socket.create_connection(addr)  # over the cap of 2: closed at once
        assert await _closed_by_server(third, 3.0)
        silent.close()
        third.close()
        await wait_until(lambda: server.manager.reserved == 0)
        r2, w2 = await asyncio.open_connection(*addr, ssl=ctx, server_hostname="localhost")
        w2.write(b"two")
        assert await r2.readexactly(3) == b"two"
        assert server.manager.per_ip == {"127.0.0.1": 2}
        for w in (w1, w2):
            w.close()
            await w.wait_closed()


async def test_silent_clients_waiting_for_a_proxy_header_count_against_the_listener_cap(
    tmp_path: Path, pki: Pki
) -> None:
    listener = {
        "proxy_protocol": True,
        "trusted_proxies": ["127.0.0.1"],
        "proxy_timeout": 30,
        "limits": {"max_connections": 5},
    }
    config = _config(pki, listener=listener)
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("echo")[:2]
        clients = await _silent_clients(server, addr, 12)
        try:
            assert server.manager.reserved == 5
            assert server.manager.slots["echo"].stats.refused == {"listener_max_connections": 7}
            assert all(await asyncio.gather(*(_closed_by_server(c, 3.0) for c in clients[5:])))
        finally:
            for c in clients:
                c.close()
        await wait_until(lambda: server.manager.reserved == 0)
