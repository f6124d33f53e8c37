"""The pop3 listener with poplib and raw sockets, reading what smtp delivered, on both loops."""

from __future__ import annotations

import asyncio
import poplib
import smtplib
from pathlib import Path
from typing import Any

import pytest

from aionet.storage.maildir import Maildir, deliver_many
from aionet.testing import serve
from tests.waiting import poll_until

from .conftest import Pki
from .mail_helpers import mail_config, without_received

PLAIN = {"auth_without_tls": True}


def put(data_dir: Path, *bodies: bytes, user: str = "alice") -> list[str]:
    box = Maildir(data_dir / "mail" / "localhost" / user)
    return [deliver_many([box], body)[0] for body in bodies]


def pop(addr: Any, user: str = "alice", password: str = "alice-pw") -> poplib.POP3:
    client = poplib.POP3(*addr[:2], timeout=10)
    try:
        client.user(user)
        client.pass_(password)
    except BaseException:
        client.close()
        raise
    return client


def pop_after_drop(addr: Any) -> poplib.POP3:
    """Log in again after dropping a session: the server frees the lock when it sees the drop."""
    clients: list[poplib.POP3] = []

    def logged_in() -> bool:
        try:
            clients.append(pop(addr))
        except poplib.error_proto as exc:
            if b"IN-USE" not in exc.args[0]:
                raise
            return False
        return True

    poll_until(logged_in, 2.5, what="the mailbox unlocked after the session dropped")
    return clients[0]


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


async def test_smtp_to_pop3_round_trip_is_byte_identical(tmp_path: Path) -> None:
    body = b"Subject: rt\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n"
    async with serve(mail_config(tmp_path, pop3=PLAIN), data_dir=tmp_path / "data") as server:
        smtp_addr, pop_addr = server.address("smtp"), server.address("pop3")

        def run() -> bytes:
            with smtplib.SMTP(*smtp_addr[:2]) as s:
                s.sendmail("b@x.test", ["alice@localhost"], body)
            client = pop(pop_addr)
            assert client.stat()[0] == 1
            _, lines, _ = client.retr(1)
            client.quit()
            return joined(lines)

        assert without_received(await asyncio.to_thread(run)) == body


async def test_stls_and_plaintext_login_refused_before_it(tmp_path: Path, pki: Pki) -> None:
    config = mail_config(tmp_path, pki, pop3={"starttls": "mail", "auth_without_tls": False})
    put(tmp_path / "data", b"Subject: a\r\n\r\nx\r\n")
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("pop3")

        def run() -> None:
            client = poplib.POP3(*addr[:2], timeout=10)
            assert "STLS" in client.capa() and "USER" not in client.capa()
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
                client.user("alice")
            client.stls(context=pki.client())
            assert "USER" in client.capa()
            client.user("alice")
            client.pass_("alice-pw")
            assert client.stat() == (1, 17)
            client.quit()

        await asyncio.to_thread(run)


async def test_implicit_tls(tmp_path: Path, pki: Pki) -> None:
    put(tmp_path / "data", b"x\r\n")
    config = mail_config(tmp_path, pki, implicit=True)
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("pop3")

        def run() -> tuple[int, int]:
            client = poplib.POP3_SSL(*addr[:2], context=pki.client(), timeout=10)
            client.user("alice")
            client.pass_("alice-pw")
            stat = client.stat()
            client.quit()
            return stat

        assert await asyncio.to_thread(run) == (1, 3)


async def test_second_session_gets_in_use_and_the_lock_is_released(tmp_path: Path) -> None:
    put(tmp_path / "data", b"x\r\n")
    async with serve(mail_config(tmp_path, pop3=PLAIN), data_dir=tmp_path / "data") as server:
        addr = server.address("pop3")

        def run() -> None:
            first = pop(addr)
            with pytest.raises(poplib.error_proto, match=r"IN-USE"):
                pop(addr)
            bob = pop(addr, "bob", "bob-pw")
            assert bob.stat() == (0, 0)  # other mailboxes are free
            bob.quit()
            first.quit()
            pop(addr).quit()

        await asyncio.to_thread(run)


async def test_update_state_semantics_and_stable_uidls(tmp_path: Path) -> None:
    names = put(tmp_path / "data", b"one\r\n", b"two\r\n", b"three\r\n")
    async with serve(mail_config(tmp_path, pop3=PLAIN), data_dir=tmp_path / "data") as server:
        addr = server.address("pop3")

        def run() -> None:
            client = pop(addr)
            uidls = [ln.split()[1].decode() for ln in client.uidl()[1]]
            assert uidls == names
            client.dele(1)
            client.dele(3)
            client.close()  # dropped without QUIT: nothing is deleted
            client = pop_after_drop(addr)
            assert [ln.split()[1].decode() for ln in client.uidl()[1]] == names
            client.dele(2)
            client.rset()  # undone
            client.dele(1)
            client.dele(3)
            assert client.stat() == (1, 5)
            client.quit()  # UPDATE: both go, together
            client = pop(addr)
            assert client.uidl()[1] == [b"1 " + names[1].encode()]  # renumbered, same UIDL
            assert client.retr(1)[1] == [b"two"]
            client.quit()

        await asyncio.to_thread(run)
    new = tmp_path / "data" / "mail" / "localhost" / "alice" / "new"
    assert sorted(p.name for p in new.iterdir()) == [names[1]]


async def test_top_list_and_bad_input(tmp_path: Path) -> None:
    put(tmp_path / "data", b"Subject: t\r\nX: y\r\n\r\nl1\r\nl2\r\nl3\r\n")
    async with serve(mail_config(tmp_path, pop3=PLAIN), data_dir=tmp_path / "data") as server:
        reader, writer = await asyncio.open_connection(*server.address("pop3")[:2])
        assert (await reader.readline()).startswith(b"+OK")

        async def say(line: bytes) -> bytes:
            writer.write(line + b"\r\n")
            return await reader.readline()

        assert await say(b"USER alice") == b"+OK send PASS\r\n"
        assert (await say(b"PASS wrong")).startswith(b"-ERR [AUTH]")
        assert await say(b"X" * 5000) == b"-ERR line too long\r\n"
        assert await say(b"\x00\x01garbage") == b"-ERR unknown command\r\n"
        assert await say(b"RETR 1") == b"-ERR command not valid in this state\r\n"
        await say(b"USER alice")
        assert (await say(b"PASS alice-pw")).startswith(b"+OK maildrop locked")
        assert await say(b"TOP 1 1") == b"+OK top of message\r\n"
        top = b""
        while not top.endswith(b"\r\n.\r\n"):
            top += await reader.readline()
        assert top == b"Subject: t\r\nX: y\r\n\r\nl1\r\n.\r\n"
        assert await say(b"LIST 9") == b"-ERR no such message\r\n"
        assert await say(b"QUIT") == b"+OK bye\r\n"
        writer.close()


async def test_too_many_bad_commands_close_the_session(tmp_path: Path) -> None:
    config = mail_config(tmp_path, pop3={"max_bad_commands": 3})
    async with serve(config, data_dir=tmp_path / "data") as server:
        reader, writer = await asyncio.open_connection(*server.address("pop3")[:2])
        writer.write(b"A\r\nB\r\nC\r\nD\r\n")
        async with asyncio.timeout(5):
            out = await reader.read()  # until the server closes
        assert out.endswith(b"-ERR too many bad commands, closing\r\n")
        assert out.count(b"-ERR") == 3
        writer.close()


async def test_refusal_and_drain_say_err(tmp_path: Path) -> None:
    config = mail_config(tmp_path, limits={"max_connections": 1})
    async with serve(config, data_dir=tmp_path / "data") as server:
        addr = server.address("pop3")
        reader, writer = await asyncio.open_connection(*addr[:2])
        assert (await reader.readline()).startswith(b"+OK")
        r2, w2 = await asyncio.open_connection(*addr[:2])
        assert (await r2.readline()).startswith(b"-ERR [SYS/TEMP]")
        w2.close()
        shutdown = asyncio.create_task(server.shutdown())
        async with asyncio.timeout(5):
            assert await reader.readline() == b"-ERR [SYS/TEMP] server shutting down\r\n"
            await shutdown
        writer.close()
