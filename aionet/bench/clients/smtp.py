"""``aionet bench smtp HOST:PORT``: full SMTP transactions (RFC 5321) on kept sessions.

A session: greeting, EHLO, optional STARTTLS (then EHLO again) and AUTH PLAIN. A request:
``MAIL FROM``, ``RCPT TO`` x recipients, ``DATA``, the message (``--size`` bytes of body),
``.`` and its 250. Any other reply code is an error "reply NNN".
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

from ..target import BenchError, add_tls_arguments
from ._lines import LineSession, LineTarget

if TYPE_CHECKING:
    import argparse

__all__ = ["SmtpTarget", "make_message"]


def make_message(sender: str, recipients: list[str], size: int) -> bytes:
    """An RFC 5322 message of about ``size`` body bytes, already dot-safe and CRLF-ended."""
    head = (
        f"From: <{sender}>\r\nTo: {', '.join(f'<{r}>' for r in recipients)}\r\n"
        f"Subject: aionet bench\r\nMessage-ID: <{os.urandom(8).hex()}@aionet.bench>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    full, rest = divmod(size, len(line))
    body = line * full + (b"y" * max(0, rest - 2) + b"\r\n" if rest else b"")
    return head + body


class _SmtpSession(LineSession):
    def __init__(self, target: SmtpTarget, reader: Any, writer: Any) -> None:
        super().__init__(reader, writer)
        self.t = target

    async def handshake(self) -> None:
        t = self.t
        await self.reply(220)
        await self.command(b"EHLO " + t.helo.encode(), 250)
        if t.upgrade_tls:
            await self.command(b"STARTTLS", 220)
            await t.start_tls(self)
            await self.command(b"EHLO " + t.helo.encode(), 250)
        if t.user is not None:
            token = base64.b64encode(f"\0{t.user}\0{t.password}".encode()).decode()
            await self.command(f"AUTH PLAIN {token}".encode(), 235)

    async def request(self) -> int:
        try:
            return await self._transaction()
        except BenchError:
            if self.open:  # a refused MAIL/RCPT/DATA: reset, so the next one starts clean
                await self.command(b"RSET", 250)
            raise

    async def _transaction(self) -> int:
        t = self.t
        await self.command(f"MAIL FROM:<{t.sender}>".encode(), 250)
        for rcpt in t.recipients:
            await self.command(f"RCPT TO:<{rcpt}>".encode(), 250, 251)
        await self.command(b"DATA", 354)
        self.writer.write(t.message + b".\r\n")
        await self.reply(250)
        return 1

    async def aclose(self) -> None:
        await self.goodbye(b"QUIT")


class SmtpTarget(LineTarget):
    name = "smtp"
    help = "SMTP transactions: MAIL, RCPT x k, DATA (optional STARTTLS, AUTH PLAIN)"
    default_port, upgrade = 25, "starttls"

    def __init__(self, args: argparse.Namespace) -> None:
        self.setup(args)
        self.helo = args.helo
        self.sender = args.sender
        rcpt = args.rcpt or ["bench@example.test"]
        if args.recipients < 1:
            raise ValueError("--recipients must be at least 1")
        if len(rcpt) >= args.recipients:
            self.recipients = rcpt[: args.recipients]
        else:  # make distinct addresses from the first one: local+N@domain
            local, _, domain = rcpt[0].partition("@")
            self.recipients = [f"{local}+{i}@{domain}" for i in range(args.recipients)]
        self.size = args.size
        self.message = make_message(self.sender, self.recipients, args.size)
        self.user, self.password = args.user, args.password or ""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT", help="the SMTP server (port 25)")
        parser.add_argument("--from", dest="sender", default="bench@aionet.test")
        parser.add_argument("--rcpt", action="append", default=[], help="recipient (repeatable)")
        parser.add_argument(
            "--recipients", type=int, default=1, help="recipients per message (default 1)"
        )
        parser.add_argument("--size", type=int, default=1024, help="body bytes (default 1024)")
        parser.add_argument("--helo", default="bench.aionet.test", help="EHLO name")
        parser.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS")
        parser.add_argument("--user", help="AUTH PLAIN user")
        parser.add_argument("--password", help="AUTH PLAIN password")
        add_tls_arguments(parser)

    def make_session(self, reader: Any, writer: Any) -> _SmtpSession:
        return _SmtpSession(self, reader, writer)

    def describe(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "size": self.size,
            "recipients": len(self.recipients),
            "tls": self.tls_mode(),
            "auth": self.user is not None,
        }
