"""The idle goodbye, as the stdlib clients meet it, on both loops.

A session closed for inactivity hears its protocol's goodbye first (``Handler.idle_goodbye``:
SMTP ``421 4.4.2``, POP3 ``-ERR``, IMAP ``* BYE``, FTP ``421``), whichever timer closes it: the
connection manager's idle sweep (``limits.idle_timeout``, 1 s here) or the protocol's own
(aiosmtpd's ``timeout``, IMAP's IDLE autologout). A session inside a command that is still
moving (a DATA, an APPEND literal, a SASL exchange, an upload) is not idle and hears nothing
early; once silent, it hears the goodbye too. The raw-socket check of every line service is in
``test_line_services.py``.
"""

from __future__ import annotations

import asyncio
import ftplib
import imaplib
import io
import poplib
import smtplib
import socket
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest

import aionet.imap.session
from aionet.storage.maildir import Maildir, deliver_many
from aionet.testing import serve
from tests.waiting import wait_until

from .mail_helpers import delivered, mail_config

PLAIN = {"auth_without_tls": True}
SMTP_GOODBYE = b"421 4.4.2 mx.test Error: timeout exceeded\r\n"
POP3_GOODBYE = b"-ERR Disconnected for inactivity.\r\n"
IMAP_GOODBYE = b"* BYE Autologout; idle for too long\r\n"
FTP_GOODBYE = b"421 Timeout.\r\n"
#: Between two pieces of a command that is still moving: well inside the 1 s idle timeout.
PAUSE = 0.25


def config(tmp_path: Path, idle_timeout: str = "1s", **smtp: Any) -> dict[str, Any]:
    """SMTP, POP3, IMAP and FTP for the same users (alice/alice-pw), idle after ``idle_timeout``."""
    config = mail_config(tmp_path, smtp=smtp, pop3=PLAIN, imap=PLAIN)
    config["server"] = {"limits": {"idle_timeout": idle_timeout}}
    config["logging"] = {"level": "warning"}
    config["listeners"].append(
        {"name": "ftp", "protocol": "ftp", "bind": "127.0.0.1:0", "options": PLAIN}
    )
    return config


async def idle_closed(server: Any, listener: str, count: int = 1) -> None:
    """Wait until the idle sweep (or the protocol's timer) has closed ``count`` sessions."""
    stats = server.manager.slots[listener].stats
    await wait_until(lambda: stats.idle_closed >= count, 5, what=f"{listener} closed as idle")


async def connect(server: Any, listener: str) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection(*server.address(listener)[:2])
    await reader.readline()  # the greeting
    return reader, writer


async def expect(reader: asyncio.StreamReader, line: bytes) -> None:
    async with asyncio.timeout(5):
        got = await reader.readline()
    assert got == line


async def goodbye_then_eof(reader: asyncio.StreamReader, goodbye: bytes) -> None:
    """Silence from the client (since its last bytes, just before): the goodbye comes at the
    idle timeout, not before (less the sweep's coarse clock, 1/8 of it), then EOF."""
    silent_since = time.monotonic()
    await expect(reader, goodbye)
    assert time.monotonic() - silent_since >= 0.8
    async with asyncio.timeout(5):
        assert await reader.read() == b""


async def trickle(writer: Any, data: bytes, pieces: int = 7) -> None:
    """Send ``data`` in ``pieces`` parts ``PAUSE`` apart: longer than the idle timeout in all,
    never silent for long."""
    step = -(-len(data) // pieces)
    for i in range(0, len(data), step):
        if i:
            await asyncio.sleep(PAUSE)  # the pause is the thing tested
        writer.write(data[i : i + step])
        await writer.drain()


# -- the stdlib clients ---------------------------------------------------------------------------


async def test_smtplib_reads_421_timeout_exceeded(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        client = await asyncio.to_thread(smtplib.SMTP, *server.address("smtp")[:2], timeout=10)
        try:
            assert (await asyncio.to_thread(client.ehlo))[0] == 250
            await idle_closed(server, "smtp")
            reply = await asyncio.to_thread(client.noop)
            assert reply == (421, b"4.4.2 mx.test Error: timeout exceeded")
        finally:
            client.close()


async def test_poplib_reads_err_disconnected_for_inactivity(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:

        def login() -> poplib.POP3:
            client = poplib.POP3(*server.address("pop3")[:2], timeout=10)
            client.user("alice")
            client.pass_("alice-pw")
            return client

        client = await asyncio.to_thread(login)
        try:
            await idle_closed(server, "pop3")
            with pytest.raises(poplib.error_proto) as error:
                await asyncio.to_thread(client.noop)
            assert error.value.args[0] == POP3_GOODBYE.rstrip()
        finally:
            client.close()


async def test_imaplib_reads_bye_autologout(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        client = await asyncio.to_thread(imaplib.IMAP4, *server.address("imap")[:2], timeout=10)
        try:
            await asyncio.to_thread(client.login, "alice", "alice-pw")
            await idle_closed(server, "imap")
            with pytest.raises(imaplib.IMAP4.abort, match="Autologout; idle for too long"):
                await asyncio.to_thread(client.noop)
        finally:
            client.shutdown()


async def test_ftplib_reads_421_timeout(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:

        def login() -> ftplib.FTP:
            client = ftplib.FTP()
            client.connect(*server.address("ftp")[:2], timeout=10)
            client.login("alice", "alice-pw")
            return client

        client = await asyncio.to_thread(login)
        try:
            await idle_closed(server, "ftp")
            with pytest.raises(ftplib.error_temp, match=r"^421 Timeout\.$"):
                await asyncio.to_thread(client.voidcmd, "NOOP")
        finally:
            client.close()


# -- inside a command: nothing early, the goodbye once silent ----------------------------------


@pytest.mark.parametrize(
    ("idle_timeout", "smtp"),
    [("1s", {}), ("5m", {"timeout": "1s"})],
    ids=["idle-sweep", "aiosmtpd-timeout"],
)
async def test_smtp_data_sent_slowly_is_not_idle(
    tmp_path: Path, idle_timeout: str, smtp: dict[str, str]
) -> None:
    """A body trickling in for ~1.75 s past a 1 s timeout — the idle sweep's, or aiosmtpd's
    own, which runs from the DATA command (Postfix's ``smtpd_timeout`` bounds each read, not
    the whole DATA) — is not cut: 250, and the goodbye only once the client falls silent."""
    async with serve(config(tmp_path, idle_timeout, **smtp), data_dir=tmp_path / "data") as server:
        reader, writer = await connect(server, "smtp")
        writer.write(b"HELO client.test\r\nMAIL FROM:<bob@x.test>\r\nRCPT TO:<alice@localhost>\r\n")
        writer.write(b"DATA\r\n")
        for _ in range(4):
            assert (await reader.readline())[:3] in (b"250", b"354")
        await trickle(writer, b"Subject: slow\r\n\r\n" + b"a line of the body\r\n" * 7)
        writer.write(b".\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"250 2.0.0 ")  # no 421 before it
        await goodbye_then_eof(reader, SMTP_GOODBYE)
        writer.close()
    assert len(delivered(tmp_path / "data")) == 1


async def test_imap_append_literal_sent_slowly_is_not_idle(tmp_path: Path) -> None:
    message = b"Subject: slow\r\n\r\n" + b"a line of the body\r\n" * 7
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        reader, writer = await connect(server, "imap")
        writer.write(b"a LOGIN alice alice-pw\r\nb APPEND INBOX {%d}\r\n" % len(message))
        assert (await reader.readline()).startswith(b"a OK ")
        assert (await reader.readline()).startswith(b"+ ")
        await trickle(writer, message)
        writer.write(b"\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"b OK [APPENDUID ")
        await goodbye_then_eof(reader, IMAP_GOODBYE)
        writer.close()


async def test_pop3_sasl_response_sent_slowly_is_not_idle(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        reader, writer = await connect(server, "pop3")
        writer.write(b"AUTH PLAIN\r\n")
        assert (await reader.readline()).startswith(b"+ ")
        await trickle(writer, b64encode(b"\0alice\0alice-pw") + b"\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"+OK ")
        await goodbye_then_eof(reader, POP3_GOODBYE)
        writer.close()


async def test_ftp_upload_sent_slowly_keeps_the_control_connection(tmp_path: Path) -> None:
    # The control connection is silent while the data connection carries the upload.
    class Slow(io.RawIOBase):
        def __init__(self) -> None:
            self.pieces = [b"x" * 1000] * 7

        def read(self, size: int = -1) -> bytes:
            if not self.pieces:
                return b""
            time.sleep(PAUSE)
            return self.pieces.pop()

    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:

        def upload() -> tuple[ftplib.FTP, str]:
            client = ftplib.FTP()
            client.connect(*server.address("ftp")[:2], timeout=10)
            client.login("alice", "alice-pw")
            return client, client.storbinary("STOR slow.bin", Slow(), blocksize=1000)

        client, reply = await asyncio.to_thread(upload)
        try:
            assert reply.startswith("226")  # no 421 before it
            assert server.manager.slots["ftp"].stats.idle_closed == 0
            await idle_closed(server, "ftp")
            with pytest.raises(ftplib.error_temp, match=r"^421 Timeout\.$"):
                await asyncio.to_thread(client.voidcmd, "NOOP")
        finally:
            client.close()
    assert (tmp_path / "data" / "ftp" / "alice" / "slow.bin").stat().st_size == 7000


async def test_no_goodbye_inside_a_reply_the_client_is_not_reading(tmp_path: Path) -> None:
    # A RETR bigger than the socket buffers, to a client that stops reading: the session is
    # closed as idle, but no goodbye is queued behind (or inside) the message.
    body = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * (8 * 1024 * 1024 // 16) + b"\r\n"
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        await asyncio.to_thread(_deliver, tmp_path, body)
        reader, writer = await connect(server, "pop3")
        writer.write(b"USER alice\r\nPASS alice-pw\r\nRETR 1\r\n")
        await idle_closed(server, "pop3")  # not reading meanwhile
        async with asyncio.timeout(10):
            received = await reader.read()
        writer.close()
    assert received.endswith(b"\r\n.\r\n")  # the message, whole, and nothing after it
    assert POP3_GOODBYE not in received


def _deliver(tmp_path: Path, body: bytes) -> None:
    deliver_many([Maildir(tmp_path / "data" / "mail" / "localhost" / "alice")], body)


# -- the protocols' own timers say the same ------------------------------------------------------


async def test_aiosmtpd_timeout_says_the_idle_goodbye(tmp_path: Path) -> None:
    # The idle sweep is far off (5 m); aiosmtpd's own ``timeout`` (1 s) closes the session.
    async with serve(config(tmp_path, "5m", timeout="1s"), data_dir=tmp_path / "data") as server:
        reader, writer = await connect(server, "smtp")
        writer.write(b"EHLO client.test\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        await goodbye_then_eof(reader, SMTP_GOODBYE)
        writer.close()
        stats = server.manager.slots["smtp"].stats
        assert stats.idle_closed == 1  # counted as the sweep counts


async def test_imap_idle_autologout_says_the_idle_goodbye(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # IDLE's autologout is 30 minutes at least: the session's clock is moved on instead.
    class Clock:
        offset = 0.0

        @classmethod
        def monotonic(cls) -> float:
            return time.monotonic() + cls.offset

    monkeypatch.setattr(aionet.imap.session, "time", Clock)
    options = config(tmp_path, "5m")
    options["listeners"][2]["options"] = {**PLAIN, "idle_poll": 0.1}
    async with serve(options, data_dir=tmp_path / "data") as server:
        reader, writer = await connect(server, "imap")
        writer.write(b"a LOGIN alice alice-pw\r\nb IDLE\r\n")
        assert (await reader.readline()).startswith(b"a OK ")
        assert await reader.readline() == b"+ idling\r\n"
        Clock.offset = 3600.0
        await expect(reader, IMAP_GOODBYE)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        assert server.manager.slots["imap"].stats.idle_closed == 1


async def test_a_client_reading_a_long_reply_slowly_is_not_idle(tmp_path: Path) -> None:
    """A 4 MB RETR taken by a client with a small window (a slow link) in slices over ~1.6 s,
    past the 1 s idle timeout, and nothing sent meanwhile: reading counts as activity. The
    session lives on (NOOP answered) and is closed as idle only once the client is silent and
    takes nothing more."""
    body = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * (4 * 1024 * 1024 // 16) + b"\r\n"
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        await asyncio.to_thread(_deliver, tmp_path, body)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)  # no autotuning
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, server.address("pop3")[:2])
        reader, writer = await asyncio.open_connection(sock=sock)
        await reader.readline()  # the greeting
        writer.write(b"USER alice\r\nPASS alice-pw\r\n")
        for _ in range(2):
            assert (await reader.readline()).startswith(b"+OK")
        writer.write(b"RETR 1\r\n")
        received, started = b"", time.monotonic()
        async with asyncio.timeout(20):
            while not received.endswith(b"\r\n.\r\n"):
                received += await reader.read(256 * 1024)
                await asyncio.sleep(0.1)  # a slow link
        assert time.monotonic() - started > 1.2  # longer than the idle timeout
        assert len(received) > len(body) and server.manager.slots["pop3"].stats.idle_closed == 0
        writer.write(b"NOOP\r\n")
        await expect(reader, b"+OK\r\n")
        await goodbye_then_eof(reader, POP3_GOODBYE)
        writer.close()
