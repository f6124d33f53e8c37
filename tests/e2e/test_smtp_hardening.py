"""SMTP hardening (issue 13, item 8): vanished clients are released, bytes out are counted,
postmaster is always accepted. Both loops."""

from __future__ import annotations

import asyncio
import poplib
import smtplib
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from aionet import ProtocolHandler
from aionet.core.connections import HALF_CLOSE_TIMEOUT
from aionet.testing import serve
from tests.waiting import wait_until

from .conftest import Pki
from .mail_helpers import delivered, mail_config


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
        await wait_until(lambda: stats.accepted == 5, 5)
        await wait_until(lambda: not server.manager.live, 5)
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
        await wait_until(lambda: stats.accepted == 6, 5)
        # HALF_CLOSE_TIMEOUT (5 s) after the EOF, at the next sweep (1 s apart at most)
        await wait_until(lambda: not server.manager.live, HALF_CLOSE_TIMEOUT + 5)
        assert stats.closed == 6 and stats.idle_closed == 0


class Session:
    """A raw SMTP client that counts every byte it receives (plaintext, under TLS too)."""

    def __init__(self, addr: Any) -> None:
        self.sock: Any = socket.create_connection(addr[:2], timeout=10)
        self.received = 0
        self.pending = b""

    def reply(self) -> bytes:
        """Read one complete (possibly multi-line) reply."""
        while True:
            end = self.pending.find(b"\r\n")
            while end >= 0:
                line, self.pending = self.pending[: end + 2], self.pending[end + 2 :]
                if line[3:4] == b" ":
                    return line
                end = self.pending.find(b"\r\n")
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.received += len(chunk)
            self.pending += chunk

    def command(self, line: bytes, code: bytes) -> None:
        self.sock.sendall(line + b"\r\n")
        assert self.reply().startswith(code)

    def until_eof(self) -> None:
        while chunk := self.sock.recv(65536):
            self.received += len(chunk)
        self.sock.close()


def smtp_session(addr: Any, tls: ssl.SSLContext | None) -> int:
    client = Session(addr)
    assert client.reply().startswith(b"220 ")
    client.command(b"EHLO counter.test", b"250 ")
    if tls is not None:
        client.command(b"STARTTLS", b"220 ")
        client.sock = tls.wrap_socket(client.sock, server_hostname="localhost")
        client.command(b"EHLO counter.test", b"250 ")
    client.command(b"MAIL FROM:<c@counter.test>", b"250 ")
    client.command(b"RCPT TO:<alice@localhost>", b"250 ")
    client.command(b"DATA", b"354 ")
    client.command(b"Subject: counted\r\n\r\nhello\r\n.", b"250 ")
    client.command(b"QUIT", b"221 ")
    client.until_eof()
    return client.received


@pytest.mark.parametrize("starttls", [False, True])
async def test_bytes_out_of_an_smtp_session_are_counted(
    tmp_path: Path, pki: Pki, starttls: bool
) -> None:
    config = mail_config(tmp_path, pki, {"starttls": "mail"})
    with capture_logs() as logs:
        async with serve(config, data_dir=tmp_path / "data") as server:
            received = await asyncio.to_thread(
                smtp_session, server.address("smtp"), pki.client() if starttls else None
            )
            await wait_until(lambda: not server.manager.live, 5)
            stats = server.manager.slots["smtp"].stats
            samples = {(s.name, s.labels): s.value for s in server.samples()}
    assert received > 0
    assert stats.bytes_out == received
    assert samples[("aionet_sent_bytes", (("listener", "smtp"),))] == received
    [closed] = [e for e in logs if e["event"] == "connection_closed" and e["listener"] == "smtp"]
    assert closed["bytes_out"] == received
    assert len(delivered(tmp_path / "data")) == 1


def rcpt_codes(addr: Any, rcpts: list[str]) -> list[int]:
    """RCPT each address in its own transaction (with a message); the RCPT reply codes."""
    out = []
    with smtplib.SMTP(*addr[:2]) as s:
        s.ehlo()
        for rcpt in rcpts:
            s.mail("someone@far.test")
            code, _ = s.rcpt(rcpt)
            out.append(code)
            if code == 250:
                assert s.data(f"Subject: to {rcpt}\r\n\r\nhi\r\n".encode())[0] == 250
            else:
                s.rset()
    return out


FORMS = ["<postmaster@localhost>", "<POSTMASTER@LOCALHOST>", "<postmaster>", "<PostMaster@mx.test>"]


async def test_postmaster_goes_to_the_named_mailbox(tmp_path: Path) -> None:
    config = mail_config(
        tmp_path,
        smtp={"domains": ["localhost", "mx.test"], "postmaster": "alice"},
        pop3={"auth_without_tls": True},
    )
    async with serve(config, data_dir=tmp_path / "data") as server:
        codes = await asyncio.to_thread(rcpt_codes, server.address("smtp"), FORMS)

        def read() -> list[bytes]:  # alice reads the localhost ones over POP3
            client = poplib.POP3(*server.address("pop3")[:2], timeout=10)
            client.user("alice")
            client.pass_("alice-pw")
            count, _ = client.stat()
            msgs = [b"\r\n".join(client.retr(i + 1)[1]) for i in range(count)]
            client.quit()
            return msgs

        popped = await asyncio.to_thread(read)
    assert codes == [250] * 4
    subjects = sorted(m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in popped)
    assert subjects == [
        b"to <POSTMASTER@LOCALHOST>",
        b"to <postmaster>",
        b"to <postmaster@localhost>",
    ]
    [other] = delivered(tmp_path / "data", "alice", "mx.test")
    assert b"Subject: to <PostMaster@mx.test>" in other
    assert not (tmp_path / "data" / "mail" / "localhost" / "postmaster").exists()


async def test_postmaster_without_a_user_is_accepted_into_its_own_maildir(tmp_path: Path) -> None:
    # no `postmaster` option and no such user: still 250 (RFC 5321 4.5.1), kept in the Maildir
    # a user named postmaster would read; unknown users are still refused
    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        codes = await asyncio.to_thread(
            rcpt_codes, server.address("smtp"), [*FORMS[:3], "<postmistress@localhost>"]
        )
    assert codes == [250, 250, 250, 550]
    assert len(delivered(tmp_path / "data", "postmaster")) == 3
    assert delivered(tmp_path / "data", "alice") == []
