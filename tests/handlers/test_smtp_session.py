"""The ``smtp`` handler in-process: ``SmtpHandler.protocol_factory()`` on a ``MemoryTransport``.

No socket, no server: the test is the client, feeding command lines into the protocol and
reading its replies, with the exact codes (and enhanced codes) a client sees. Only the
handler's public face is used, so the engine behind it can be reorganised freely.
"""

from __future__ import annotations

import re
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest

from aionet.testing import MemoryTransport
from tests.e2e.mail_helpers import make_users
from tests.handlers.conftest import BuildHandler, record_writes
from tests.waiting import wait_until

FINAL = re.compile(rb"^\d{3}(?: [^\r\n]*)?\r\n", re.MULTILINE)
REMOTE = ("192.0.2.7", 40000)  # not loopback: the clear-text login policy applies in full


class Client:
    """The client's end of one SMTP session on a ``MemoryTransport``."""

    def __init__(self, handler: Any, peer: tuple[str, int] = REMOTE) -> None:
        self.transport = MemoryTransport(peername=peer, sockname=("192.0.2.25", 25))
        self.transport.connect(handler.protocol_factory())
        self.received = b""

    def send(self, *lines: bytes) -> None:
        """Write command lines (pipelined when several)."""
        self.transport.feed(b"".join(line + b"\r\n" for line in lines))

    async def reply(self) -> tuple[int, bytes]:
        """The next complete reply (all its lines): its code and its text."""

        def complete() -> bool:
            self.received += self.transport.take()
            return FINAL.search(self.received) is not None

        await wait_until(complete, 5, what="a complete SMTP reply")
        end = FINAL.search(self.received)
        assert end is not None
        text, self.received = self.received[: end.end()], self.received[end.end() :]
        return int(text[:3]), text

    async def command(self, line: bytes) -> tuple[int, bytes]:
        self.send(line)
        return await self.reply()

    async def codes(self, *lines: bytes) -> list[int]:
        """Send the lines one by one; the code of each reply."""
        return [(await self.command(line))[0] for line in lines]

    async def quit(self) -> None:
        assert await self.command(b"QUIT") == (221, b"221 2.0.0 Bye\r\n")
        await wait_until(lambda: self.transport.lost, 5, what="the session closing")


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return make_users(tmp_path)  # alice, bob; relayer has the relay role


async def smtp(build_handler: BuildHandler, users_file: Path, **options: Any) -> Any:
    return await build_handler("smtp", {"hostname": "mx.test", **options}, users_file=users_file)


async def greeted(handler: Any, peer: tuple[str, int] = REMOTE) -> Client:
    client = Client(handler, peer)
    assert await client.reply() == (220, b"220 mx.test aionet ESMTP\r\n")
    return client


def plain(user: str, password: str) -> bytes:
    return b64encode(f"\0{user}\0{password}".encode())


async def test_greeting_ehlo_and_helo(build_handler: BuildHandler, users_file: Path) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    code, text = await client.command(b"EHLO client.test")
    lines = text.decode().splitlines()
    assert code == 250 and lines[0] == "250-mx.test"
    assert {"250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME"} <= set(lines)
    assert "250-SIZE 33554432" in lines  # max_message_size's default, 32 MiB
    assert not any("AUTH" in line or "STARTTLS" in line for line in lines)  # no TLS: neither
    assert lines[-1].startswith("250 ")
    assert await client.command(b"HELO again.test") == (250, b"250 mx.test\r\n")  # RFC 2034 4
    await client.quit()


async def test_a_message_is_on_disk_in_the_maildir_when_250_is_sent(
    build_handler: BuildHandler, users_file: Path, tmp_path: Path
) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.codes(b"EHLO client.test") == [250]
    assert await client.command(b"MAIL FROM:<bob@example.test>") == (250, b"250 2.1.0 OK\r\n")
    assert await client.command(b"RCPT TO:<alice@localhost>") == (250, b"250 2.1.5 OK\r\n")
    code, text = await client.command(b"DATA")
    assert code == 354 and text.startswith(b"354 ")
    client.send(b"Subject: in memory", b"", b"..a dot-stuffed line", b"the end", b".")
    code, text = await client.reply()
    assert code == 250 and text.startswith(b"250 2.0.0 OK: queued as "), text
    new = tmp_path / "data" / "mail" / "localhost" / "alice" / "new"
    [message] = [p.read_bytes() for p in new.iterdir()]
    assert message.startswith(b"Received: from client.test ([192.0.2.7])\r\n\tby mx.test")
    assert message.endswith(b"\r\nSubject: in memory\r\n\r\n.a dot-stuffed line\r\nthe end\r\n")
    assert not list((new.parent / "tmp").iterdir())  # nothing left half-written
    await client.quit()


async def test_commands_out_of_sequence_get_503(
    build_handler: BuildHandler, users_file: Path
) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    code, text = await client.command(b"MAIL FROM:<bob@example.test>")
    assert (code, text) == (503, b"503 5.5.1 Error: send HELO first\r\n")
    assert await client.codes(b"EHLO client.test") == [250]
    assert await client.command(b"RCPT TO:<alice@localhost>") == (
        503,
        b"503 5.5.1 Error: need MAIL command\r\n",
    )
    assert await client.command(b"DATA") == (503, b"503 5.5.1 Error: need RCPT command\r\n")
    assert await client.codes(b"MAIL FROM:<bob@example.test>") == [250]
    assert await client.command(b"MAIL FROM:<bob@example.test>") == (
        503,
        b"503 5.5.1 Error: nested MAIL command\r\n",
    )
    await client.quit()


async def test_unknown_and_garbage_commands_get_500_and_the_session_goes_on(
    build_handler: BuildHandler, users_file: Path
) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.command(b"FROB x") == (
        500,
        b'500 5.5.2 Error: command "FROB" not recognized\r\n',
    )
    assert (await client.command(b"\x00\xff\xfe garbage"))[0] == 500
    assert await client.command(b"NOOP") == (250, b"250 2.0.0 OK\r\n")
    await client.quit()


async def test_an_over_long_command_line_gets_500_and_the_session_goes_on(
    build_handler: BuildHandler, users_file: Path
) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.command(b"NOOP " + b"A" * 3000) == (
        500,
        b"500 5.5.2 Command line too long\r\n",
    )
    assert await client.command(b"NOOP") == (250, b"250 2.0.0 OK\r\n")
    await client.quit()


async def test_rset_forgets_the_transaction(build_handler: BuildHandler, users_file: Path) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.codes(
        b"EHLO client.test", b"MAIL FROM:<bob@example.test>", b"RCPT TO:<alice@localhost>"
    ) == [250, 250, 250]
    assert await client.command(b"RSET") == (250, b"250 2.0.0 OK\r\n")
    assert await client.codes(b"DATA", b"RCPT TO:<alice@localhost>") == [503, 503]
    assert await client.codes(b"MAIL FROM:<bob@example.test>") == [250]  # a fresh one starts
    await client.quit()


async def test_recipients_unknown_and_relay_are_refused(
    build_handler: BuildHandler, users_file: Path
) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.codes(b"EHLO client.test", b"MAIL FROM:<bob@example.test>") == [250, 250]
    assert await client.command(b"RCPT TO:<nobody@localhost>") == (
        550,
        b"550 5.1.1 Recipient address rejected: user unknown\r\n",
    )
    assert await client.command(b"RCPT TO:<someone@elsewhere.test>") == (
        550,
        b"550 5.7.1 Relay access denied\r\n",
    )
    await client.quit()


@pytest.mark.parametrize("auth_without_tls", [False, "loopback"])
async def test_auth_is_refused_before_tls(
    build_handler: BuildHandler, users_file: Path, auth_without_tls: bool | str
) -> None:
    """With no TLS, a password is never taken from a remote client: not offered in EHLO and
    refused with 538 (RFC 4954 4) when sent anyway, right password or not."""
    handler = await smtp(build_handler, users_file, auth_without_tls=auth_without_tls)
    client = await greeted(handler)
    code, text = await client.command(b"EHLO client.test")
    assert code == 250 and b"AUTH" not in text
    assert await client.command(b"AUTH PLAIN " + plain("alice", "alice-pw")) == (
        538,
        b"538 5.7.11 Encryption required for requested authentication mechanism\r\n",
    )
    assert await client.codes(b"MAIL FROM:<x@example.test>", b"RCPT TO:<a@far.test>") == [
        250,
        550,  # not authenticated: no relay
    ]
    await client.quit()


async def test_auth_without_tls_checks_the_password_through_the_portal(
    build_handler: BuildHandler, users_file: Path
) -> None:
    handler = await smtp(build_handler, users_file, auth_without_tls="loopback")
    client = await greeted(handler, ("127.0.0.1", 40000))  # loopback: allowed by the policy
    code, text = await client.command(b"EHLO client.test")
    assert code == 250 and b"250-AUTH LOGIN PLAIN\r\n" in text
    assert await client.command(b"AUTH PLAIN " + plain("alice", "wrong")) == (
        535,
        b"535 5.7.8 Authentication credentials invalid\r\n",
    )
    assert await client.command(b"AUTH PLAIN " + plain("relayer", "relay-pw")) == (
        235,
        b"235 2.7.0 Authentication successful\r\n",
    )
    assert await client.codes(b"MAIL FROM:<r@example.test>", b"RCPT TO:<a@far.test>") == [
        250,
        250,  # the relay role may send anywhere
    ]
    await client.quit()


async def test_quit_answers_221_and_closes(build_handler: BuildHandler, users_file: Path) -> None:
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.command(b"QUIT") == (221, b"221 2.0.0 Bye\r\n")
    await wait_until(lambda: client.transport.lost, 5, what="the session closing")
    assert client.transport.closed and not client.transport.aborted


async def test_a_pipelined_envelope_is_answered_in_one_write(
    build_handler: BuildHandler, users_file: Path, tmp_path: Path
) -> None:
    """RFC 2920 3.1: the replies to MAIL and RCPT wait while the next command is already
    here, and go out with the DATA's 354 — in order, each its own, in one segment."""
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.codes(b"EHLO client.test") == [250]
    writes = record_writes(client.transport)
    client.send(
        b"MAIL FROM:<bob@example.test>",
        b"RCPT TO:<alice@localhost>",
        b"RCPT TO:<nobody@localhost>",
        b"RCPT TO:<bob@localhost>",
        b"DATA",
    )
    assert [(await client.reply())[0] for _ in range(5)] == [250, 250, 550, 250, 354]
    assert writes == [
        b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n"
        b"550 5.1.1 Recipient address rejected: user unknown\r\n250 2.1.5 OK\r\n"
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
    ]
    client.send(b"Subject: piped", b"", b"body", b".")
    code, text = await client.reply()
    assert code == 250 and text.startswith(b"250 2.0.0 OK: queued as ")
    assert len(writes) == 2  # the 250 after the data: its own write
    for user in ("alice", "bob"):
        [message] = (tmp_path / "data" / "mail" / "localhost" / user / "new").iterdir()
        assert message.read_bytes().endswith(b"Subject: piped\r\n\r\nbody\r\n")
    await client.quit()


async def test_a_reply_is_held_only_while_a_whole_command_waits(
    build_handler: BuildHandler, users_file: Path
) -> None:
    """One command at a time, or a command's first bytes only: every reply goes out at once
    (a client waiting for it would otherwise wait forever)."""
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.codes(b"EHLO client.test") == [250]
    writes = record_writes(client.transport)
    assert await client.command(b"MAIL FROM:<bob@example.test>") == (250, b"250 2.1.0 OK\r\n")
    client.transport.feed(b"RCPT TO:<alice@localhost>\r\nRCPT TO:<bob@loc")
    assert await client.reply() == (250, b"250 2.1.5 OK\r\n")  # not held for half a line
    client.transport.feed(b"alhost>\r\n")
    assert await client.reply() == (250, b"250 2.1.5 OK\r\n")
    assert writes == [b"250 2.1.0 OK\r\n", b"250 2.1.5 OK\r\n", b"250 2.1.5 OK\r\n"]
    client.send(b"RSET", b"NOOP", b"MAIL FROM:<bob@example.test>", b"QUIT")
    assert [(await client.reply())[0] for _ in range(4)] == [250, 250, 250, 221]
    # RSET's reply rides with NOOP's (not a grouped command: it flushes); MAIL's with QUIT's
    assert writes[3:] == [b"250 2.0.0 OK\r\n" * 2, b"250 2.1.0 OK\r\n221 2.0.0 Bye\r\n"]
    await wait_until(lambda: client.transport.lost, 5, what="the session closing")


async def test_a_client_streaming_rsets_meets_a_bounded_hold(
    build_handler: BuildHandler, users_file: Path
) -> None:
    """Thousands of pipelined RSETs: the held replies go out every ~4 KiB, not all at the end
    (a client that never reads meets the transport's back-pressure, not a growing buffer)."""
    client = await greeted(await smtp(build_handler, users_file))
    assert await client.codes(b"EHLO client.test") == [250]
    writes = record_writes(client.transport)
    client.send(*[b"RSET"] * 2000, b"NOOP")
    for _ in range(2001):
        assert (await client.reply())[0] == 250
    ok = b"250 2.0.0 OK\r\n"
    assert b"".join(writes) == ok * 2001
    assert max(map(len, writes)) < 4096 + len(ok)
    assert len(writes) >= 2001 * len(ok) // (4096 + len(ok))
    await client.quit()


async def test_aiosmtpd_timeout_says_the_idle_goodbye_before_closing(
    build_handler: BuildHandler, users_file: Path
) -> None:
    handler = await smtp(build_handler, users_file, timeout="200ms")
    goodbye = b"421 4.4.2 mx.test Error: timeout exceeded\r\n"  # Postfix's words
    assert handler.idle_goodbye() == goodbye  # the idle sweep says the same
    client = await greeted(handler)
    assert await client.reply() == (421, goodbye)
    await wait_until(lambda: client.transport.lost, 5, what="the session closing")
