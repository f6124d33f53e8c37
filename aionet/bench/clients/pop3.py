"""``aionet bench pop3 HOST:PORT --user U --password P``: login, then RETR (RFC 1939).

By default a session logs in once and each request retrieves the next message (cycling over
the ``STAT`` count); ``--relogin`` makes every request a whole session — connect, USER/PASS,
RETR, QUIT — whose latency includes the connect and login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..target import BenchError, add_tls_arguments
from ._lines import LineSession, LineTarget

if TYPE_CHECKING:
    import argparse

__all__ = ["Pop3Target"]


class _Pop3Session(LineSession):
    def __init__(self, target: Pop3Target, reader: Any, writer: Any) -> None:
        super().__init__(reader, writer)
        self.t = target
        self.count = 0
        self.next = 0

    async def ok(self, command: bytes | None = None) -> bytes:
        if command is not None:
            self.writer.write(command + b"\r\n")
        line = await self.line()
        if not line.startswith(b"+OK"):
            raise BenchError("reply -ERR", line.decode("latin-1").strip())
        return line

    async def handshake(self) -> None:
        t = self.t
        await self.ok()
        if t.upgrade_tls:
            await self.ok(b"STLS")
            await t.start_tls(self)
        await self.ok(b"USER " + t.user.encode())
        await self.ok(b"PASS " + t.password.encode())
        stat = await self.ok(b"STAT")
        try:
            self.count = int(stat.split()[1])
        except (IndexError, ValueError):
            raise BenchError("protocol", f"bad STAT reply {stat!r}") from None
        if self.count == 0:
            raise BenchError("empty mailbox", "STAT says 0 messages: nothing to RETR")

    async def request(self) -> int:
        self.next = self.next % self.count + 1
        await self.ok(b"RETR %d" % self.next)
        data = await self.reader.readuntil(b".\r\n")
        while data != b".\r\n" and not data.endswith(b"\r\n.\r\n"):
            data += await self.reader.readuntil(b".\r\n")
        if self.t.relogin:  # the RETR completed the request; QUIT is a courtesy
            await self.goodbye(b"QUIT")
        return 1

    async def aclose(self) -> None:
        await self.goodbye(b"QUIT")


class Pop3Target(LineTarget):
    name = "pop3"
    help = "POP3: login + RETR (per session, or a whole session per request)"
    default_port, upgrade = 110, "stls"

    def __init__(self, args: argparse.Namespace) -> None:
        self.setup(args)
        if not args.user:
            raise ValueError("pop3 needs --user and --password")
        self.user, self.password = args.user, args.password or ""
        self.relogin = args.relogin
        self.connect_per_request = args.relogin

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT", help="the POP3 server (port 110)")
        parser.add_argument("--user", required=True)
        parser.add_argument("--password", default="")
        parser.add_argument(
            "--relogin",
            action="store_true",
            help="each request is a whole session: connect, login, RETR, QUIT",
        )
        parser.add_argument("--stls", action="store_true", help="upgrade with STLS")
        add_tls_arguments(parser)

    def make_session(self, reader: Any, writer: Any) -> _Pop3Session:
        return _Pop3Session(self, reader, writer)

    def describe(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "user": self.user,
            "relogin": self.relogin,
            "tls": self.tls_mode(),
        }
