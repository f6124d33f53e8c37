"""``aionet bench imap HOST:PORT --user U --password P``: login, SELECT, then FETCH (RFC 9051).

What one request is (``--fetch``):

* ``body`` (default) — ``FETCH n BODY.PEEK[]`` of the next message (cycling over EXISTS);
* ``headers`` — ``FETCH n BODY.PEEK[HEADER]``;
* ``flags`` — ``FETCH 1:* (UID FLAGS RFC822.SIZE)``: the whole mailbox's list, as a client
  syncing a folder asks for it;
* ``select`` — ``SELECT`` the mailbox again (what opening a big folder costs).

A session logs in and selects once; ``--relogin`` makes every request a whole session
(connect, LOGIN, SELECT, the request, LOGOUT). ``--starttls`` upgrades with STARTTLS, ``--tls``
connects with TLS (imaps).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..target import BenchError, add_tls_arguments
from ._lines import LineSession, LineTarget

if TYPE_CHECKING:
    import argparse

__all__ = ["ImapTarget"]

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")
FETCHES = {
    "body": b"FETCH %d BODY.PEEK[]",
    "headers": b"FETCH %d BODY.PEEK[HEADER]",
    "flags": b"FETCH 1:* (UID FLAGS RFC822.SIZE)",
}


def _quote(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class _ImapSession(LineSession):
    def __init__(self, target: ImapTarget, reader: Any, writer: Any) -> None:
        super().__init__(reader, writer)
        self.t = target
        self.tags = 0
        self.exists = 0
        self.next = 0

    async def response_line(self) -> bytes:
        """One response line with its literals inlined (``{n}`` then n bytes)."""
        line = await self.line()
        while True:
            match = _LITERAL.search(line)
            if match is None:
                return line
            line += await self.reader.readexactly(int(match.group(1)))
            line += await self.line()

    async def run(self, command: bytes) -> list[bytes]:
        """Send a tagged command; the untagged lines before its ``OK`` (else BenchError)."""
        self.tags += 1
        tag = b"b%d" % self.tags
        self.writer.write(tag + b" " + command + b"\r\n")
        untagged: list[bytes] = []
        while True:
            line = await self.response_line()
            if line.startswith(tag + b" "):
                if line[len(tag) + 1 :].startswith(b"OK"):
                    return untagged
                raise BenchError("reply NO/BAD", line.decode("latin-1").strip())
            if line.startswith(b"* BYE"):
                self.open = False
                raise BenchError("bye", line.decode("latin-1").strip())
            untagged.append(line)

    async def handshake(self) -> None:
        t = self.t
        greeting = await self.line()
        if not greeting.startswith(b"* OK"):
            raise BenchError("greeting", greeting.decode("latin-1").strip())
        if t.upgrade_tls:
            await self.run(b"STARTTLS")
            await t.start_tls(self)
        await self.run(b"LOGIN " + _quote(t.user) + b" " + _quote(t.password))
        await self.select()
        if self.exists == 0 and t.fetch in ("body", "headers"):
            raise BenchError("empty mailbox", f"{t.mailbox} has no messages to FETCH")

    async def select(self) -> None:
        for line in await self.run(b"SELECT " + _quote(self.t.mailbox)):
            match = _EXISTS.match(line)
            if match:
                self.exists = int(match.group(1))

    async def request(self) -> int:
        t = self.t
        if t.fetch == "select":
            await self.select()
        elif t.fetch == "flags":
            await self.run(FETCHES["flags"])
        else:
            self.next = self.next % self.exists + 1
            await self.run(FETCHES[t.fetch] % self.next)
        if t.relogin:
            await self.goodbye(b"z LOGOUT")
        return 1

    async def aclose(self) -> None:
        await self.goodbye(b"z LOGOUT")


class ImapTarget(LineTarget):
    name = "imap"
    help = "IMAP: login + SELECT, then FETCH a body, headers, the flag list, or SELECT again"
    default_port, upgrade = 143, "starttls"

    def __init__(self, args: argparse.Namespace) -> None:
        self.setup(args)
        if not args.user:
            raise ValueError("imap needs --user and --password")
        self.user, self.password = args.user, args.password or ""
        self.mailbox = args.mailbox
        self.fetch = args.fetch
        self.relogin = args.relogin
        self.connect_per_request = args.relogin

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT", help="the IMAP server (port 143)")
        parser.add_argument("--user", required=True)
        parser.add_argument("--password", default="")
        parser.add_argument("--mailbox", default="INBOX", help="the mailbox to SELECT")
        parser.add_argument(
            "--fetch",
            choices=("body", "headers", "flags", "select"),
            default="body",
            help="what one request is (default: FETCH n BODY.PEEK[])",
        )
        parser.add_argument(
            "--relogin",
            action="store_true",
            help="each request is a whole session: connect, LOGIN, SELECT, request, LOGOUT",
        )
        parser.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS")
        add_tls_arguments(parser)

    def make_session(self, reader: Any, writer: Any) -> _ImapSession:
        return _ImapSession(self, reader, writer)

    def describe(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "user": self.user,
            "mailbox": self.mailbox,
            "fetch": self.fetch,
            "relogin": self.relogin,
            "tls": self.tls_mode(),
        }
