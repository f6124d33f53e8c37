"""The ``ftp`` handler in-process: ``FtpHandler.handle(conn)`` on in-memory streams.

No socket, no server: ``aionet.testing.memory_connection()`` gives the ``Connection`` the core
would hand the handler, and the test is the client on the other end, writing command lines
and reading the exact reply codes. Only the handler's public face is used. Data transfers
(PASV/EPSV, RETR, STOR, listings) need real data sockets: they are tested in tests/e2e.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aionet.testing import MemoryTransport, memory_connection
from tests.e2e.mail_helpers import make_users
from tests.handlers.conftest import BuildHandler, serve_session
from tests.waiting import wait_until

FINAL = re.compile(rb"^\d{3}(?: [^\r\n]*)?\r\n", re.MULTILINE)
REMOTE = ("192.0.2.7", 40000)  # not loopback: the clear-text login policy applies in full


class Client:
    """The client's end of one FTP control connection served by ``handler.handle()``."""

    def __init__(self, handler: Any, peer: tuple[str, int]) -> None:
        conn, self.transport = memory_connection(handler, peername=peer)
        self.transport: MemoryTransport
        self.session = asyncio.create_task(serve_session(handler, conn))
        self.received = b""

    async def reply(self) -> tuple[int, bytes]:
        """The next complete reply (all its lines): its code and its text."""

        def complete() -> bool:
            self.received += self.transport.take()
            return FINAL.search(self.received) is not None

        await wait_until(complete, 5, what="a complete FTP reply")
        end = FINAL.search(self.received)
        assert end is not None
        text, self.received = self.received[: end.end()], self.received[end.end() :]
        return int(text[:3]), text

    async def command(self, line: str) -> tuple[int, bytes]:
        self.transport.feed(line.encode() + b"\r\n")
        return await self.reply()

    async def codes(self, *lines: str) -> list[int]:
        """Send the lines one by one; the code of each reply."""
        return [(await self.command(line))[0] for line in lines]

    async def login(self, user: str = "alice", password: str = "alice-pw") -> None:
        assert await self.codes(f"USER {user}", f"PASS {password}") == [331, 230]


Connect = Callable[..., Awaitable[Client]]


@pytest_asyncio.fixture
async def connect(build_handler: BuildHandler, tmp_path: Path) -> AsyncIterator[Connect]:
    """``await connect(**options)``: a greeted client of a new ftp handler (users: alice, bob
    from the mail helpers' users file); each session must have ended when the test does."""
    clients: list[Client] = []
    users = make_users(tmp_path)

    async def start(peer: tuple[str, int] = REMOTE, **options: Any) -> Client:
        handler = await build_handler("ftp", options, users_file=users)
        client = Client(handler, peer)
        clients.append(client)
        assert await client.reply() == (220, b"220 aionet FTP server ready.\r\n")
        return client

    yield start
    for client in clients:
        if not client.session.done():
            client.transport.feed_eof()  # the client hangs up: the session ends
        await asyncio.wait_for(client.session, 5)


def home(tmp_path: Path, user: str = "alice") -> Path:
    return tmp_path / "data" / "ftp" / user


async def test_greeting_login_and_quit(connect: Connect) -> None:
    client = await connect(auth_without_tls=True)
    assert await client.command("USER alice") == (331, b"331 Please specify the password.\r\n")
    assert await client.command("PASS alice-pw") == (230, b"230 Login successful.\r\n")
    assert await client.command("QUIT") == (221, b"221 Goodbye.\r\n")
    await asyncio.wait_for(client.session, 5)  # QUIT ends handle()
    assert client.transport.closed


async def test_a_wrong_password_is_530_and_the_session_goes_on(connect: Connect) -> None:
    client = await connect(auth_without_tls=True)
    assert await client.codes("USER alice") == [331]
    assert await client.command("PASS nope") == (530, b"530 Login incorrect.\r\n")
    assert await client.command("PASS alice-pw") == (503, b"503 Login with USER first.\r\n")
    await client.login()


async def test_login_before_tls_is_refused_by_default(connect: Connect) -> None:
    client = await connect()  # auth_without_tls: false
    assert await client.command("USER alice") == (
        534,
        b"534 Policy requires TLS: use AUTH TLS first.\r\n",
    )
    assert await client.command("PASS alice-pw") == (
        530,
        b"530 Policy requires TLS: use AUTH TLS first.\r\n",
    )
    assert await client.command("PWD") == (530, b"530 Please login with USER and PASS.\r\n")


async def test_loopback_policy_lets_only_a_local_client_log_in(connect: Connect) -> None:
    remote = await connect(auth_without_tls="loopback")
    assert await remote.codes("USER alice") == [534]
    local = await connect(("127.0.0.1", 40001), auth_without_tls="loopback")
    await local.login()


@pytest.mark.parametrize(
    "verb", ["CWD", "PWD", "CDUP", "LIST", "NLST", "MLSD", "STAT", "TYPE I", "PASV", "EPSV"]
)
async def test_commands_before_login_get_530(connect: Connect, verb: str) -> None:
    client = await connect(auth_without_tls=True)
    assert await client.command(verb) == (530, b"530 Please login with USER and PASS.\r\n")


@pytest.mark.parametrize(
    ("verb", "needed"),
    [
        ("MKD", "a directory name"),
        ("RMD", "a directory name"),
        ("DELE", "a file name"),
        ("RNFR", "a path name"),
        ("RNTO", "a path name"),
        ("RETR", "a file name"),
        ("STOR", "a file name"),
        ("SIZE", "a file name"),
    ],
)
async def test_bare_commands_that_need_an_argument_get_501(
    connect: Connect, verb: str, needed: str
) -> None:
    client = await connect(auth_without_tls=True)
    expected = f"501 Syntax error in parameters or arguments: {needed} needed.\r\n".encode()
    assert await client.command(verb) == (501, expected)  # the argument is checked first
    await client.login()
    assert await client.command(f"{verb}  ") == (501, expected)  # blank counts as bare
    assert await client.command("USER") == (530, b"530 Can't change to another user.\r\n")


async def test_bare_user_gets_501(connect: Connect) -> None:
    client = await connect(auth_without_tls=True)
    assert await client.command("USER") == (501, b"501 USER needs a name.\r\n")


async def test_directories_and_files_in_the_jail(connect: Connect, tmp_path: Path) -> None:
    client = await connect(auth_without_tls=True)
    await client.login()
    root = home(tmp_path)
    assert await client.command("PWD") == (257, b'257 "/" is the current directory\r\n')
    assert await client.command("MKD docs") == (257, b'257 "/docs" created\r\n')
    assert (root / "docs").is_dir()
    assert await client.command("MKD docs") == (
        550,
        b"550 Create directory operation failed: file exists.\r\n",
    )
    assert await client.command("CWD docs") == (250, b"250 Directory successfully changed.\r\n")
    assert await client.command("PWD") == (257, b'257 "/docs" is the current directory\r\n')
    (root / "docs" / "a.txt").write_text("a")
    assert await client.command("RNFR a.txt") == (350, b"350 Ready for RNTO.\r\n")
    assert await client.command("RNTO /b.txt") == (250, b"250 Rename successful.\r\n")
    assert (root / "b.txt").read_text() == "a" and not (root / "docs" / "a.txt").exists()
    assert await client.command("RNTO c.txt") == (503, b"503 RNFR required first.\r\n")
    assert await client.command("CDUP") == (250, b"250 Directory successfully changed.\r\n")
    assert await client.command("DELE b.txt") == (250, b"250 Delete operation successful.\r\n")
    assert not (root / "b.txt").exists()
    assert await client.command("DELE docs") == (
        550,
        b"550 Delete operation failed: is a directory.\r\n",
    )
    assert await client.command("RMD docs") == (
        250,
        b"250 Remove directory operation successful.\r\n",
    )
    assert not (root / "docs").exists()
    assert await client.command("CWD docs") == (550, b"550 Failed to change directory.\r\n")
    assert await client.command("RMD /") == (550, b"550 Remove directory operation failed.\r\n")


@pytest.mark.parametrize(
    "command",
    [
        "CWD ..",
        "CWD ../..",
        "CWD /../bob",
        "MKD ../escape",
        "RMD ../alice",
        "DELE ../../../users.yaml",  # home is tmp_path/data/ftp/alice: that is tmp_path's
        "RNFR ../../../users.yaml",
        "SIZE ..%2f..%2f..%2fusers.yaml",
        "CWD sub\\..\\..",
        "MKD a\x00b",
    ],
)
async def test_traversal_out_of_the_home_is_refused_with_550(
    connect: Connect, tmp_path: Path, command: str
) -> None:
    client = await connect(auth_without_tls=True)
    await client.login()
    (home(tmp_path, "bob")).mkdir(parents=True)
    code, text = await client.command(command)
    assert code == 550, text
    assert text in (
        b"550 Path outside the home directory.\r\n",
        b"550 Forbidden characters in path.\r\n",
    )
    assert (tmp_path / "users.yaml").exists()
    assert not (tmp_path / "data" / "ftp" / "escape").exists()
    assert await client.command("PWD") == (257, b'257 "/" is the current directory\r\n')


async def test_a_symlink_out_of_the_home_is_refused_with_550(
    connect: Connect, tmp_path: Path
) -> None:
    client = await connect(auth_without_tls=True)
    await client.login()
    (home(tmp_path) / "out").symlink_to(tmp_path)
    assert await client.command("CWD out") == (550, b"550 Path outside the home directory.\r\n")
    assert await client.command("DELE out/users.yaml") == (
        550,
        b"550 Path outside the home directory.\r\n",
    )
    assert (tmp_path / "users.yaml").exists()


@pytest.mark.parametrize("command", ["PBSZ 0", "PROT P", "PROT C"])
async def test_pbsz_and_prot_without_tls_get_503(connect: Connect, command: str) -> None:
    client = await connect(auth_without_tls=True)
    verb = command.split()[0]
    reply = f"503 {verb} needs a secure control connection.\r\n".encode()
    assert await client.command(command) == (503, reply)
    await client.login()
    assert await client.command(command) == (503, reply)  # logged in or not: no TLS


async def test_auth_tls_without_a_certificate_is_502(connect: Connect) -> None:
    client = await connect(auth_without_tls=True)
    assert await client.command("AUTH TLS") == (
        502,
        b"502 AUTH not supported (no certificate configured).\r\n",
    )


@pytest.mark.parametrize("verb", ["FROB", "SITE CHMOD 777 x", "XYZZY"])
async def test_an_unknown_verb_is_502_and_the_session_goes_on(connect: Connect, verb: str) -> None:
    client = await connect(auth_without_tls=True)
    name = verb.split()[0]
    assert await client.command(verb) == (502, f"502 Command {name} not implemented.\r\n".encode())
    assert await client.command("NOOP") == (200, b"200 NOOP ok.\r\n")


async def test_an_over_long_line_is_500_and_ends_the_session(connect: Connect) -> None:
    client = await connect(auth_without_tls=True)
    client.transport.feed(b"NOOP " + b"x" * 70_000 + b"\r\n")
    assert await client.reply() == (500, b"500 Command line too long.\r\n")
    await asyncio.wait_for(client.session, 5)
    assert client.transport.closed


async def test_the_client_hanging_up_ends_the_session(connect: Connect) -> None:
    client = await connect(auth_without_tls=True)
    await client.login()
    client.transport.feed_eof()
    await asyncio.wait_for(client.session, 5)
    await wait_until(lambda: client.transport.closed, 5, what="the control connection closing")
