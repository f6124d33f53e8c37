"""SMTP hardening (issue 13, item 8): vanished clients are released, bytes out are counted,
postmaster is always accepted. Both loops."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aionet import ProtocolHandler
from aionet.core.connections import HALF_CLOSE_TIMEOUT
from aionet.testing import serve

from .mail_helpers import mail_config


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def vanish(addr: Any, how: str) -> None:
    """Connect and go away at once: a plain close (FIN), or a reset (SO_LINGER 0)."""
    s = socket.create_connection(addr[:2])
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_clients_gone_before_the_greeting_are_released(tmp_path: Path, how: str) -> None:
    config = mail_config(tmp_path, limits={"idle_timeout": "5m"})
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("smtp")
        for _ in range(5):
            vanish(addr, how)
        # every one was admitted (counted), and every one is released long before the sweep
        stats = server.manager.slots["smtp"].stats
        await wait_until(lambda: stats.accepted == 5)
        await wait_until(lambda: not server.manager.live)
        assert stats.closed == 5 and stats.idle_closed == 0


class Mute(ProtocolHandler):
    """A third-party-style protocol that keeps a half-closed connection open and never writes
    nor closes it (``StreamReaderProtocol``'s default, without a task to close it)."""

    def protocol_factory(self) -> asyncio.Protocol:
        return _MuteProtocol()


class _MuteProtocol(asyncio.Protocol):
    def eof_received(self) -> bool:
        return True


async def test_a_wrapped_protocol_that_keeps_a_vanished_peer_is_released(tmp_path: Path) -> None:
    config = {
        "server": {"limits": {"idle_timeout": "5m"}},
        "listeners": [
            {"name": "mute", "protocol": f"{__name__}:Mute", "bind": "127.0.0.1:0"},
        ],
    }
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("mute")
        for i in range(6):
            vanish(addr, "reset" if i % 2 else "close")
        stats = server.manager.slots["mute"].stats
        await wait_until(lambda: stats.accepted == 6)
        # HALF_CLOSE_TIMEOUT (5 s) after the EOF, at the next sweep (1 s apart at most)
        await wait_until(lambda: not server.manager.live, HALF_CLOSE_TIMEOUT + 5)
        assert stats.closed == 6 and stats.idle_closed == 0
