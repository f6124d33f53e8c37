"""What every line service (SMTP, POP3, IMAP, FTP) shares, checked the same way for each.

The shared pieces are ``core.sessions`` (the sessions set, drain and the idle goodbye),
``core.starttls`` (the upgrade and the clear-text login policy) and ``proto.lines`` (bounded
line reading). A new
protocol whose options derive from ``InBandTlsOptions`` fails ``test_every_line_service_is_
covered`` until its row is added to ``SERVICES``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aionet.core.handler import InBandTlsOptions
from aionet.core.registry import BUILTIN, resolve
from aionet.testing import serve
from tests.waiting import wait_until

from .conftest import Pki
from .mail_helpers import make_users


@dataclass(frozen=True)
class Service:
    greeting: re.Pattern[bytes]
    noop: bytes  # a command that changes nothing, and the start of its reply
    noop_reply: bytes
    goodbye: re.Pattern[bytes]  # what an idle session hears when the server drains
    too_long: re.Pattern[bytes]  # the reply to an over-long command line
    too_long_closes: bool  # whether the session ends after it
    idle_goodbye: bytes  # what a session closed for inactivity hears, exactly
    starttls: bytes  # the commands that begin the in-band TLS upgrade
    starttls_go: re.Pattern[bytes]  # the go-ahead, after which the client's handshake is due


SERVICES: dict[str, Service] = {
    "smtp": Service(
        greeting=re.compile(rb"^220 "),
        noop=b"NOOP\r\n",
        noop_reply=b"250 ",
        goodbye=re.compile(rb"^421 4\.3\.2 "),
        too_long=re.compile(rb"^500 5\.5\.2 Command line too long"),
        too_long_closes=False,
        idle_goodbye=b"421 4.4.2 mx.test Error: timeout exceeded\r\n",  # Postfix's
        starttls=b"EHLO client.test\r\nSTARTTLS\r\n",
        starttls_go=re.compile(rb"^220 "),
    ),
    "pop3": Service(
        greeting=re.compile(rb"^\+OK "),
        noop=b"NOOP\r\n",  # before login: -ERR, but an answer all the same
        noop_reply=b"-ERR ",
        goodbye=re.compile(rb"^-ERR \[SYS/TEMP\] server shutting down"),
        too_long=re.compile(rb"^-ERR .*too long"),
        too_long_closes=False,
        idle_goodbye=b"-ERR Disconnected for inactivity.\r\n",  # Dovecot's
        starttls=b"STLS\r\n",
        starttls_go=re.compile(rb"^\+OK "),
    ),
    "imap": Service(
        greeting=re.compile(rb"^\* OK "),
        noop=b"a NOOP\r\n",  # allowed in every state
        noop_reply=b"a OK ",
        goodbye=re.compile(rb"^\* BYE "),
        too_long=re.compile(rb"^\S+ BAD .*too long"),
        too_long_closes=False,
        idle_goodbye=b"* BYE Autologout; idle for too long\r\n",  # RFC 9051 7.1.5's
        starttls=b"a STARTTLS\r\n",
        starttls_go=re.compile(rb"^a OK "),
    ),
    "ftp": Service(
        greeting=re.compile(rb"^220 "),
        noop=b"NOOP\r\n",
        noop_reply=b"200 ",
        goodbye=re.compile(rb"^421 "),
        too_long=re.compile(rb"^500 Command line too long"),
        too_long_closes=True,
        idle_goodbye=b"421 Timeout.\r\n",  # vsftpd's
        starttls=b"AUTH TLS\r\n",
        starttls_go=re.compile(rb"^234 "),
    ),
}


def test_every_line_service_is_covered() -> None:
    services = {
        name
        for name in BUILTIN
        if issubclass(resolve(name).Options, InBandTlsOptions)  # type: ignore[arg-type]
    }
    assert services == set(SERVICES), "add the new line service's row to SERVICES"


def _config(
    tmp_path: Path,
    protocol: str,
    *,
    idle_timeout: str | None = None,
    pki: Pki | None = None,
) -> dict[str, Any]:
    options: dict[str, Any] = {"hostname": "mx.test"} if protocol == "smtp" else {}
    config: dict[str, Any] = {
        "logging": {"level": "warning"},
        "auth": {"users_file": str(make_users(tmp_path))},
        "listeners": [
            {"name": "svc", "protocol": protocol, "bind": "127.0.0.1:0", "options": options}
        ],
    }
    if idle_timeout is not None:
        config["server"] = {"limits": {"idle_timeout": idle_timeout}}
    if pki is not None:
        config["tls"] = {"certificates": [pki.certificate("mail")]}
        options["starttls"] = "mail"
    return config


async def _open(server: Any, service: Service) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection(*server.address("svc")[:2])
    async with asyncio.timeout(5):
        assert service.greeting.match(await reader.readline())
    return reader, writer


async def _closed(server: Any) -> Any:
    """The listener's counters once its one connection is gone."""
    stats = server.manager.slots["svc"].stats
    await wait_until(lambda: stats.closed == 1, 5, what="the connection released")
    return stats


@pytest.mark.parametrize("protocol", sorted(SERVICES))
async def test_drain_says_goodbye_to_an_idle_session_at_once(tmp_path: Path, protocol: str) -> None:
    service = SERVICES[protocol]
    async with serve(_config(tmp_path, protocol), data_dir=tmp_path / "data") as server:
        idle, idle_w = await _open(server, service)
        busy, busy_w = await _open(server, service)
        busy_w.write(service.noop)  # answered before the drain: the session is idle again
        async with asyncio.timeout(5):
            assert (await busy.readline()).startswith(service.noop_reply)
        await server.begin_drain()
        for reader in (idle, busy):
            async with asyncio.timeout(5):  # not at the idle timeout: now
                assert service.goodbye.match(await reader.readline())
                assert await reader.read() == b""  # and closed
        for writer in (idle_w, busy_w):
            writer.close()


@pytest.mark.parametrize("protocol", sorted(SERVICES))
async def test_an_over_long_line_is_refused_and_costs_no_memory(
    tmp_path: Path, protocol: str
) -> None:
    service = SERVICES[protocol]
    async with serve(_config(tmp_path, protocol), data_dir=tmp_path / "data") as server:
        reader, writer = await _open(server, service)
        # 1 MiB in 64 KiB pieces: far past every line bound, never kept whole.
        for _ in range(16):
            writer.write(b"X" * 65536)
            await writer.drain()
        writer.write(b"\r\n" + service.noop)
        async with asyncio.timeout(10):
            assert service.too_long.match(await reader.readline())
            if service.too_long_closes:
                assert await reader.read() == b""
            else:
                assert (await reader.readline()).startswith(service.noop_reply)
        writer.close()


@pytest.mark.parametrize("protocol", sorted(SERVICES))
async def test_an_idle_session_hears_the_idle_goodbye_then_eof(
    tmp_path: Path, protocol: str
) -> None:
    service = SERVICES[protocol]
    config = _config(tmp_path, protocol, idle_timeout="1s")
    async with serve(config, data_dir=tmp_path / "data") as server:
        reader, writer = await asyncio.open_connection(*server.address("svc")[:2])
        greeting = await reader.readline()
        silent_since = time.monotonic()
        async with asyncio.timeout(5):
            assert await reader.readline() == service.idle_goodbye
            assert await reader.read() == b""
        assert time.monotonic() - silent_since >= 0.9  # at the idle timeout, not before
        writer.close()
        stats = await _closed(server)
        assert stats.idle_closed == 1
        assert stats.bytes_out == len(greeting) + len(service.idle_goodbye)  # counted


@pytest.mark.parametrize("protocol", sorted(SERVICES))
async def test_no_goodbye_into_a_starttls_handshake(
    tmp_path: Path, pki: Pki, protocol: str
) -> None:
    # The client asks for TLS, hears the go-ahead, and never starts its handshake: the idle
    # sweep closes it, without plaintext the client's TLS layer would take for a broken record.
    service = SERVICES[protocol]
    config = _config(tmp_path, protocol, idle_timeout="1s", pki=pki)
    async with serve(config, data_dir=tmp_path / "data") as server:
        reader, writer = await _open(server, service)
        writer.write(service.starttls)
        async with asyncio.timeout(5):
            while not service.starttls_go.match(line := await reader.readline()):
                assert line, "closed before the go-ahead"
            assert await reader.read() == b""  # closed without a word
        writer.close()
        assert (await _closed(server)).idle_closed == 1  # and released, not kept live
