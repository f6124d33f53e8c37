"""Command injection across an in-band TLS upgrade (CVE-2011-0411 class), for every protocol.

A man in the middle pipelines a plaintext command after the upgrade verb (``STARTTLS``,
``STLS``, ``AUTH TLS``) in the same packet; a server that keeps it runs it as if the client had
sent it under TLS. The upgrade path every protocol shares (``aionet.core.starttls.upgrade``)
must discard every plaintext byte received before the handshake, whatever its size and
wherever it waits (the protocol machine, the StreamReader).

The table below covers each built-in protocol whose options offer ``starttls``; a protocol that
offers it and is missing from the table fails ``test_every_upgrading_protocol_is_covered``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from aionet.core.handler import InBandTlsOptions
from aionet.core.registry import BUILTIN, resolve
from aionet.testing import serve

from .conftest import Pki
from .mail_helpers import make_users


@dataclass(frozen=True)
class Upgrade:
    hello: bytes | None  # sent (and its reply read) before the upgrade verb
    verb: bytes  # the upgrade command
    go: bytes  # the reply that starts the handshake
    probe: bytes  # sent under TLS: its reply must be the first one
    probe_reply: re.Pattern[bytes]  # what the probe's first reply line looks like
    last_line: re.Pattern[bytes]  # the last line of a reply
    probe_end: re.Pattern[bytes] | None = None  # the probe reply's last line, if other


UPGRADES: dict[str, Upgrade] = {
    "smtp": Upgrade(
        hello=b"EHLO client.test\r\n",
        verb=b"STARTTLS",
        go=b"220 ",
        probe=b"NOOP",
        probe_reply=re.compile(rb"^250 "),
        last_line=re.compile(rb"^\d{3} "),
    ),
    "pop3": Upgrade(
        hello=None,
        verb=b"STLS",
        go=b"+OK",
        probe=b"CAPA",
        probe_reply=re.compile(rb"^\+OK Capability"),
        last_line=re.compile(rb"^[+-]"),
        probe_end=re.compile(rb"^\.\r\n"),
    ),
    "imap": Upgrade(
        hello=None,
        verb=b"a STARTTLS",
        go=b"a OK",
        probe=b"p NOOP",
        probe_reply=re.compile(rb"^p OK "),
        last_line=re.compile(rb"^(\* OK|\S+ (OK|NO|BAD)) "),
    ),
    "ftp": Upgrade(
        hello=None,
        verb=b"AUTH TLS",
        go=b"234 ",
        probe=b"NOOP",
        probe_reply=re.compile(rb"^200 "),
        last_line=re.compile(rb"^\d{3} "),
    ),
}

#: Commands a man in the middle would inject; every one of them has a reply unlike the probe's.
INJECTED = b"QUIT\r\n"
#: Past one read (64 KiB) and past the StreamReader's limit, but within what it buffers.
PADDING = b"X" * 70_000 + b"\r\n"


def test_every_upgrading_protocol_is_covered() -> None:
    offering = {
        name
        for name in BUILTIN
        if issubclass(resolve(name).Options, InBandTlsOptions)  # type: ignore[arg-type]
    }
    assert offering == set(UPGRADES), "add the new protocol's upgrade dialog to UPGRADES"


def _config(tmp_path: Path, pki: Pki, protocol: str) -> dict[str, Any]:
    return {
        "logging": {"level": "warning"},
        "auth": {"users_file": str(make_users(tmp_path))},
        "tls": {"certificates": [pki.certificate("mail")]},
        "listeners": [
            {"name": "up", "protocol": protocol, "bind": "127.0.0.1:0",
             "options": {"starttls": "mail"}},
        ],
    }  # fmt: skip


def _reply(stream: Any, last: re.Pattern[bytes]) -> bytes:
    """The first line of one reply, reading its continuation lines too."""
    first = line = stream.readline()
    while line and not last.match(line):
        line = stream.readline()
    return first


def _attack(
    addr: tuple[str, int], up: Upgrade, padding: bytes, ctx: ssl.SSLContext
) -> bytes | None:
    """The first reply under TLS (None when the handshake fails: nothing was executed)."""
    end = up.probe_end or up.last_line
    with socket.create_connection(addr, timeout=15) as sock:
        with sock.makefile("rb", buffering=0) as plain:  # unbuffered: reads no TLS byte
            _reply(plain, up.last_line)  # greeting
            if up.hello is not None:
                sock.sendall(up.hello)
                _reply(plain, up.last_line)
            sock.sendall(up.verb + b"\r\n" + padding + INJECTED)
            go = plain.readline()
        assert go.startswith(up.go), go
        try:
            tls = ctx.wrap_socket(sock, server_hostname="localhost")
        except (ssl.SSLError, ConnectionError):
            return None  # the plaintext reached the handshake: it failed, nothing ran
        with tls, tls.makefile("rb") as stream:
            tls.sendall(up.probe + b"\r\n")
            first = _reply(stream, end)
            tls.sendall(up.probe + b"\r\n")  # the session is still open: QUIT never ran
            second = _reply(stream, end)
            assert up.probe_reply.match(second), (first, second)
            return first


@pytest.mark.parametrize("protocol", sorted(UPGRADES))
@pytest.mark.parametrize("padded", [False, True], ids=["pipelined", "padded-past-one-read"])
async def test_commands_pipelined_after_the_upgrade_verb_never_run(
    tmp_path: Path, pki: Pki, protocol: str, padded: bool
) -> None:
    up = UPGRADES[protocol]
    async with serve(_config(tmp_path, pki, protocol), data_dir=tmp_path / "data") as server:
        addr = server.address("up")[:2]
        padding = PADDING if padded else b""
        first = await asyncio.to_thread(_attack, addr, up, padding, pki.client())
    if not padded:
        assert first is not None, "the handshake must succeed when only a command was injected"
    if first is not None:
        assert up.probe_reply.match(first), f"an injected command ran under TLS: {first!r}"


async def test_discarded_plaintext_is_logged(tmp_path: Path, pki: Pki) -> None:
    up = UPGRADES["pop3"]
    config = _config(tmp_path, pki, "pop3")
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("up")[:2]
        with capture_logs() as logs:
            await asyncio.to_thread(_attack, addr, up, b"", pki.client())
        seen = [e for e in logs if e.get("event") == "starttls_plaintext_discarded"]
    assert len(seen) == 1
    assert seen[0]["bytes"] == len(INJECTED)
    assert seen[0]["log_level"] == "warning"
