"""The smtp listener with real clients (smtplib, aiosmtplib, raw sockets) on both loops."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import poplib
import smtplib
from base64 import b64encode
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from aionet.core.logging import configure_logging
from aionet.testing import serve

from .conftest import Pki
from .mail_helpers import (
    delivered,
    mail_config,
    make_users,
    tmp_files,
    without_received,
)

ACCEPTED: list[Any] = []


def record(message: Any) -> None:
    """An ``on_message`` hook: remembers what it was given (and that the file was there)."""
    ACCEPTED.append((message, [p.exists() for p in message.paths]))


async def exchange(addr: Any, data: bytes, *, until: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` in one write, read until ``until`` appears (or EOF)."""
    reader, writer = await asyncio.open_connection(*addr[:2])
    try:
        writer.write(data)
        out = b""
        async with asyncio.timeout(timeout):
            while until not in out:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
        return out
    finally:
        writer.close()


def client_of(server: Any, **kw: Any) -> aiosmtplib.SMTP:
    host, port = server.address("smtp")[:2]
    return aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, **kw)


def codes(transcript: bytes) -> list[int]:
    return [int(line[:3]) for line in transcript.split(b"\r\n") if line[3:4] == b" "]


async def test_plain_round_trip_is_byte_identical(tmp_path: Path) -> None:
    body = (
        b"From: Bob <bob@example.test>\r\nTo: alice@localhost\r\nSubject: round trip\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n.a line with a leading dot\r\n"
        b"caf\xc3\xa9 8-bit\r\n\r\n..\r\nlast line\r\n"
    )
    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("smtp")

        def send() -> dict[str, Any]:
            with smtplib.SMTP(*addr[:2]) as s:
                code, caps = s.ehlo()
                assert code == 250
                for ext in (b"SIZE", b"PIPELINING", b"8BITMIME", b"SMTPUTF8",
                            b"ENHANCEDSTATUSCODES"):  # fmt: skip
                    assert ext in caps
                # no certificate, no STARTTLS; and AUTH is never offered in the clear unless the
                # listener allows it (auth_without_tls), not even to a loopback client
                assert b"AUTH" not in caps and b"STARTTLS" not in caps
                return s.sendmail("bob@example.test", ["alice@localhost"], body)

        assert await asyncio.to_thread(send) == {}
        samples = {(m.name, m.labels): m.value for m in server.handlers["smtp"].metrics()}
    [stored] = delivered(tmp_path / "data")
    assert samples[("aionet_smtp_messages_accepted", ())] == 1
    assert samples[("aionet_smtp_accepted_bytes", ())] == len(stored)
    assert without_received(stored) == body
    assert stored.startswith(b"Received: from [127.0.0.1] ([127.0.0.1])\r\n\tby mx.test (aionet)")
    assert tmp_files(tmp_path / "data") == []


async def test_starttls_then_auth_and_relay_into_outbound(tmp_path: Path, pki: Pki) -> None:
    config = mail_config(tmp_path, pki, {"starttls": "mail", "auth_without_tls": False})
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("smtp")

        def send() -> None:
            with smtplib.SMTP(*addr[:2]) as s:
                s.ehlo()
                assert s.has_extn("starttls") and not s.has_extn("auth")
                with pytest.raises(smtplib.SMTPNotSupportedError):
                    s.login("relayer", "relay-pw")  # AUTH only after TLS
                s.starttls(context=pki.client())
                s.ehlo()
                assert s.has_extn("auth") and not s.has_extn("starttls")
                assert "PLAIN" in s.esmtp_features["auth"]
                s.login("relayer", "relay-pw")
                refused = s.sendmail("r@localhost", ["far@remote.test", "bob@localhost"], b"x\r\n")
                assert refused == {}

        await asyncio.to_thread(send)
        # The upgraded connection was tracked, and released when it closed.
        assert await server.manager.wait_empty(5)
        stats = server.manager.slots["smtp"].stats
        assert stats.accepted == stats.closed == 1 and stats.bytes_in > 0
    outbound = tmp_path / "data" / "mail" / ".outbound" / "new"
    [relayed] = [p.read_bytes() for p in outbound.iterdir()]
    assert b"with ESMTPSA" in relayed and without_received(relayed) == b"x\r\n"
    assert [without_received(m) for m in delivered(tmp_path / "data", "bob")] == [b"x\r\n"]


async def test_auth_login_and_plain_against_the_portal(tmp_path: Path) -> None:
    config = mail_config(tmp_path, smtp={"auth_without_tls": True})
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("smtp")

        def login(mechanism: str, user: str, password: str) -> int:
            with smtplib.SMTP(*addr[:2]) as s:
                s.ehlo()
                s.user, s.password = user, password
                code, _ = s.auth(mechanism, getattr(s, f"auth_{mechanism.lower()}"),
                                 initial_response_ok=mechanism == "PLAIN")  # fmt: skip
                return code

        assert await asyncio.to_thread(login, "LOGIN", "alice", "alice-pw") == 235
        assert await asyncio.to_thread(login, "PLAIN", "bob", "bob-pw") == 235
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            await asyncio.to_thread(login, "PLAIN", "bob", "wrong")
        assert info.value.smtp_code == 535 and info.value.smtp_error.startswith(b"5.7.8")


async def test_implicit_tls_listener(tmp_path: Path, pki: Pki) -> None:
    config = mail_config(tmp_path, pki, implicit=True)
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("smtp")

        def send() -> None:
            with smtplib.SMTP_SSL(*addr[:2], context=pki.client()) as s:
                s.ehlo()
                assert s.has_extn("auth") and not s.has_extn("starttls")
                s.login("alice", "alice-pw")
                s.sendmail("alice@localhost", ["bob@localhost"], b"over tls\r\n")

        await asyncio.to_thread(send)
    [stored] = delivered(tmp_path / "data", "bob")
    assert b"with ESMTPSA" in stored


async def test_relay_unknown_user_and_policy_codes(tmp_path: Path) -> None:
    config = mail_config(tmp_path, smtp={"max_recipients": 2, "auth_without_tls": True})
    async with serve(config, data_dir=tmp_path / "data") as server:
        script = (
            b"EHLO client.test\r\n"
            b"MAIL FROM:<spammer@evil.test>\r\n"
            b"RCPT TO:<victim@elsewhere.test>\r\n"  # open relay attempt
            b"RCPT TO:<victim@localhost.evil.test>\r\n"
            b"RCPT TO:<nobody@localhost>\r\n"  # unknown local user
            b"RCPT TO:<alice@localhost>\r\n"
            b"RCPT TO:<bob@LOCALHOST>\r\n"
            b"RCPT TO:<relayer@localhost>\r\n"  # one too many
            b"AUTH PLAIN " + b64encode(b"\x00alice\x00alice-pw") + b"\r\n"
            b"RSET\r\nMAIL FROM:<alice@localhost>\r\n"
            b"RCPT TO:<x@elsewhere.test>\r\n"  # authenticated, but without the relay role
            b"QUIT\r\n"
        )
        out = await exchange(server.address("smtp"), script, until=b"221 ")
        # What the admin endpoint's /metrics reports (summed into samples at scrape time).
        samples = {(m.name, m.labels): m.value for m in server.handlers["smtp"].metrics()}
    assert codes(out) == [220, 250, 250, 550, 550, 550, 250, 250, 452, 235, 250, 250, 550, 221]
    assert out.count(b"550 5.7.1") == 3 and b"550 5.1.1" in out and b"452 4.5.3" in out
    assert not (tmp_path / "data" / "mail" / ".outbound" / "new").exists()
    assert samples[("aionet_smtp_rejected", (("reason", "relay_denied"),))] == 3
    assert samples[("aionet_smtp_rejected", (("reason", "user_unknown"),))] == 1
    assert samples[("aionet_smtp_rejected", (("reason", "too_many_recipients"),))] == 1
    assert samples[("aionet_smtp_messages_accepted", ())] == 0


async def test_catch_all_takes_unknown_local_users(tmp_path: Path) -> None:
    config = mail_config(tmp_path, smtp={"catch_all": "bob"})
    async with serve(config, data_dir=tmp_path / "data") as server, client_of(server) as client:
        await client.sendmail("a@b.test", ["who-ever@localhost"], b"caught\r\n")
    assert [without_received(m) for m in delivered(tmp_path / "data", "bob")] == [b"caught\r\n"]


async def test_size_limit(tmp_path: Path) -> None:
    config = mail_config(tmp_path, smtp={"max_message_size": "1KiB"})
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("smtp")

        def send() -> None:
            with smtplib.SMTP(*addr[:2]) as s:
                s.ehlo()
                assert s.esmtp_features["size"] == "1024"
                with pytest.raises(smtplib.SMTPSenderRefused) as info:  # declared SIZE
                    s.sendmail("a@b.test", ["alice@localhost"], b"y" * 2000)
                assert info.value.smtp_code == 552
                s.rset()
                s.mail("a@b.test")  # undeclared: refused after the data
                s.rcpt("alice@localhost")
                code, msg = s.data(b"z" * 900 + b"\r\n" + b"z" * 900 + b"\r\n")
                assert (code, msg[:5]) == (552, b"5.3.4")
                s.rset()
                assert s.sendmail("a@b.test", ["alice@localhost"], b"small\r\n") == {}

        await asyncio.to_thread(send)
    assert len(delivered(tmp_path / "data")) == 1


async def test_pipelined_transactions_in_one_write(tmp_path: Path) -> None:
    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        script = b"EHLO pipe.test\r\n"
        for i in range(5):
            script += (
                b"MAIL FROM:<p@pipe.test>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n"
                b"Subject: %d\r\n\r\nbody %d\r\n.\r\n" % (i, i)
            )
        out = await exchange(server.address("smtp"), script + b"QUIT\r\n", until=b"221 ")
    assert codes(out) == [220, 250] + [250, 250, 354, 250] * 5 + [221]
    bodies = sorted(without_received(m) for m in delivered(tmp_path / "data"))
    assert bodies == [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(5)]


async def test_a_10_mib_message(tmp_path: Path) -> None:
    line = b"x" * 998 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (10 * 1024 * 1024 // len(line) + 1)
    assert len(body) > 10 * 1024 * 1024
    config = mail_config(tmp_path, pop3={"auth_without_tls": True})
    async with serve(config, data_dir=tmp_path / "data") as server:
        async with client_of(server, timeout=60) as client:
            await client.sendmail("a@b.test", ["alice@localhost"], body)
        [stored] = delivered(tmp_path / "data")
        assert without_received(stored) == body

        def retr() -> bytes:  # and back out through POP3, byte for byte
            client = poplib.POP3(*server.address("pop3")[:2], timeout=30)
            client.user("alice")
            client.pass_("alice-pw")
            _, lines, _ = client.retr(1)
            client.quit()
            return b"".join(line + b"\r\n" for line in lines)

        assert await asyncio.to_thread(retr) == stored


async def test_50_clients_times_20_messages_each_arrive_exactly_once(tmp_path: Path) -> None:
    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("smtp")[:2]

        async def client(c: int) -> None:
            async with aiosmtplib.SMTP(hostname=host, port=port, timeout=60) as smtp:
                for m in range(20):
                    msg = EmailMessage()
                    msg["Subject"] = f"c{c}m{m}"
                    msg.set_content("x")
                    await smtp.send_message(msg, sender="s@x.test", recipients=["alice@localhost"])

        await asyncio.gather(*(client(c) for c in range(50)))
    subjects = [
        next(ln for ln in m.split(b"\r\n") if ln.startswith(b"Subject: "))[9:]
        for m in delivered(tmp_path / "data")
    ]
    assert sorted(subjects) == sorted(f"c{c}m{m}".encode() for c in range(50) for m in range(20))


async def test_require_auth_and_require_tls(tmp_path: Path) -> None:
    config = mail_config(tmp_path, smtp={"require_auth": True, "auth_without_tls": True})
    async with serve(config, data_dir=tmp_path / "data") as server:
        out = await exchange(
            server.address("smtp"),
            b"EHLO a\r\nMAIL FROM:<a@b.test>\r\nAUTH PLAIN "
            + b64encode(b"\x00bob\x00bob-pw")
            + b"\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n",
            until=b"221 ",
        )
        assert codes(out) == [220, 250, 530, 235, 250, 221]
    config = mail_config(tmp_path, smtp={"require_tls": True})
    async with serve(config, data_dir=tmp_path / "data2") as server:
        out = await exchange(
            server.address("smtp"), b"EHLO a\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n", until=b"221 "
        )
        assert b"530 5.7.0 Must issue a STARTTLS command first" in out


async def test_per_ip_rate_limit(tmp_path: Path) -> None:
    config = mail_config(tmp_path, smtp={"rate_limit": {"messages": 2, "per": "1m"}})
    async with serve(config, data_dir=tmp_path / "data") as server, client_of(server) as client:
        for _ in range(2):
            await client.sendmail("a@b.test", ["alice@localhost"], b"ok\r\n")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as info:
            await client.sendmail("a@b.test", ["alice@localhost"], b"no\r\n")
        assert info.value.code == 450
    assert len(delivered(tmp_path / "data")) == 2


async def test_bad_input_gets_codes_and_the_session_survives(tmp_path: Path) -> None:
    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        script = (
            b"EHLO a\r\n"
            + b"NOOP " + b"A" * 3000 + b"\r\n"  # over-long command line
            + b"\x00\xff\xfe garbage\r\n"
            + b"RCPT TO:<alice@localhost>\r\n"  # out of sequence
            + b"MAIL FROM:<a@b.test> FROB=1\r\n"  # unknown parameter
            + b"MAIL FROM:\r\n"
            + b"NOOP\r\nQUIT\r\n"
        )  # fmt: skip
        out = await exchange(server.address("smtp"), script, until=b"221 ")
        assert codes(out) == [220, 250, 500, 500, 503, 555, 501, 250, 221], out
        async with client_of(server) as client:  # server still fine
            await client.sendmail("a@b.test", ["alice@localhost"], b"after\r\n")


async def test_on_message_runs_after_the_message_is_on_disk(tmp_path: Path) -> None:
    ACCEPTED.clear()
    config = mail_config(tmp_path, smtp={"on_message": f"{__name__}:record"})
    async with serve(config, data_dir=tmp_path / "data") as server, client_of(server) as client:
        await client.sendmail("a@b.test", ["alice@localhost", "bob@localhost"], b"hook\r\n")
    [(message, existed)] = ACCEPTED
    assert existed == [True, True]
    assert message.rcpt_tos == ("alice@localhost", "bob@localhost") and message.user is None


async def test_a_failed_delivery_answers_451_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aionet.storage import maildir

    real = os.rename
    calls: list[int] = []

    def second_fails(src: Any, dst: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(src, dst)

    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        monkeypatch.setattr(maildir.os, "rename", second_fails)
        async with client_of(server) as client:
            with pytest.raises(aiosmtplib.SMTPDataError) as info:
                await client.sendmail("a@b.test", ["alice@localhost", "bob@localhost"], b"x\r\n")
            assert info.value.code == 451
    assert delivered(tmp_path / "data") == [] == delivered(tmp_path / "data", "bob")
    assert tmp_files(tmp_path / "data") == []


async def test_drain_answers_421_at_the_next_command_and_refusal_is_421(tmp_path: Path) -> None:
    config = mail_config(tmp_path, limits={"max_connections": 1})
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("smtp")
        reader, writer = await asyncio.open_connection(*addr[:2])
        assert (await reader.readline()).startswith(b"220 ")
        refused = await exchange(addr, b"", until=b"\r\n")
        assert refused.startswith(b"421 4.3.2")
        writer.write(b"EHLO a\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        shutdown = asyncio.create_task(server.shutdown())
        async with asyncio.timeout(5):
            line = await reader.readline()
            assert line.startswith(b"421 4.3.2")
            assert await reader.read() == b""
            await shutdown
        writer.close()


async def test_enhanced_codes_on_every_reply_but_greeting_helo_and_ehlo(tmp_path: Path) -> None:
    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        out = await exchange(
            server.address("smtp"), b"HELO a\r\nNOOP\r\nEHLO b\r\nRSET\r\nQUIT\r\n", until=b"221 "
        )
    lines = [ln for ln in out.split(b"\r\n") if ln[3:4] == b" "]
    assert lines[0].startswith(b"220 mx.test ")
    assert lines[1:3] == [b"250 mx.test", b"250 2.0.0 OK"]
    assert lines[3] == b"250 HELP"  # EHLO's last line (RFC 2034 4: no code there)
    assert lines[4] == b"250 2.0.0 OK"
    assert lines[5] == b"221 2.0.0 Bye"


@pytest.mark.parametrize(("client", "offered"), [("127.0.0.5", True), ("203.0.113.9", False)])
async def test_auth_without_tls_loopback_allows_only_loopback_clients(
    tmp_path: Path, client: str, offered: bool
) -> None:
    # The client address comes from a PROXY header (from a trusted 127.0.0.1), so a remote
    # client can be played on this machine. Dovecot's rule: loopback counts as secure.
    config = mail_config(
        tmp_path, smtp={"auth_without_tls": "loopback"}, pop3={"auth_without_tls": "loopback"}
    )
    for listener in config["listeners"]:
        listener |= {"proxy_protocol": True, "trusted_proxies": ["127.0.0.1"]}
    proxy = f"PROXY TCP4 {client} 127.0.0.1 40000 25\r\n".encode()
    async with serve(config, data_dir=tmp_path / "data") as server:
        smtp = await exchange(server.address("smtp"), proxy + b"EHLO c\r\nQUIT\r\n", until=b"221")
        pop3 = await exchange(server.address("pop3"), proxy + b"CAPA\r\nQUIT\r\n", until=b"+OK bye")
    assert (b"250-AUTH" in smtp) is offered
    assert (b"\r\nUSER\r\n" in pop3) is offered


async def test_aiosmtpd_line_logging_never_carries_credentials(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("json", "debug", out)
    secret = b"AUTH PLAIN AGFsaWNlAGFsaWNlLXB3"  # \0alice\0alice-pw
    config = {
        "auth": {"users_file": str(make_users(tmp_path))},
        "listeners": [{"name": "smtp", "protocol": "smtp", "bind": "127.0.0.1:0",
                       "options": {"auth_without_tls": True}}],
    }  # fmt: skip
    async with serve(config, data_dir=tmp_path / "data") as server:
        reader, writer = await asyncio.open_connection(*server.address("smtp")[:2])
        writer.write(b"EHLO a\r\n" + secret + b"\r\nQUIT\r\n")
        assert b"235 2.7.0" in await reader.read()
        writer.close()
    logging.getLogger("mail.log").warning("other aiosmtpd records: %s", "kept")
    text = out.getvalue()
    assert "auth_succeeded" in text and "other aiosmtpd records: kept" in text
    assert "AGFsaWNl" not in text and ">>" not in text
