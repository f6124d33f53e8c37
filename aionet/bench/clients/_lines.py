"""A session over asyncio streams for the line protocols (SMTP, POP3, IMAP, FTP): commands out,
replies in, an unexpected reply is a ``BenchError("reply NNN")`` (or ``"reply -ERR"``); and
``LineTarget``, what their targets share: HOST:PORT, TLS implicit (``--tls``) or by the
protocol's in-band upgrade (``--starttls``, ``--stls``, ``--ftps``), the connect."""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, TypeVar

from ..target import BenchError, Session, Target, client_tls_context, parse_hostport
from ._connect import shielded_connect

if TYPE_CHECKING:
    import argparse
    import ssl
    from collections.abc import Callable

__all__ = ["LineSession", "LineTarget", "connect_streams", "open_session"]

STREAM_LIMIT = 1 << 20  # longest reply line we accept


async def connect_streams(
    host: str, port: int, tls: ssl.SSLContext | None, sni: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await shielded_connect(
        asyncio.open_connection(
            host,
            port,
            ssl=tls,
            server_hostname=(sni or host) if tls is not None else None,
            limit=STREAM_LIMIT,
        )
    )


S = TypeVar("S", bound="LineSession")


async def open_session(
    make: Callable[[asyncio.StreamReader, asyncio.StreamWriter], S],
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    sni: str | None,
) -> S:
    """Connect, build the session with ``make`` and run its ``handshake()`` (greeting, login,
    TLS upgrade); a failed handshake aborts the connection."""
    reader, writer = await connect_streams(host, port, tls, sni)
    session = make(reader, writer)
    try:
        await session.handshake()
    except BaseException:
        session.abort()
        raise
    return session


class LineSession(Session):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.open = True

    async def line(self) -> bytes:
        line = await self.reader.readline()
        if not line.endswith(b"\n"):
            self.open = False
            raise BenchError("closed", "connection closed by the peer")
        return line

    async def reply(self, *expect: int) -> tuple[int, bytes]:
        """Read a (possibly multi-line) ``NNN text`` reply; check its code is in ``expect``."""
        text = b""
        while True:
            line = await self.line()
            text += line
            if len(line) >= 4 and line[:3].isdigit() and line[3:4] != b"-":
                break
            if len(line) < 4 and line[:3].isdigit():
                break
        code = int(line[:3])
        if expect and code not in expect:
            if code in (421, 221):
                self.open = False
            raise BenchError(f"reply {code}", text.decode("latin-1").strip())
        return code, text

    async def command(self, line: bytes, *expect: int) -> tuple[int, bytes]:
        self.writer.write(line + b"\r\n")
        return await self.reply(*expect)

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str) -> None:
        await self.writer.start_tls(ctx, server_hostname=server_hostname)

    async def handshake(self) -> None:
        """What a new connection does before its first request (greeting, login...)."""

    def abort(self) -> None:
        self.open = False
        self.writer.transport.abort()

    async def goodbye(self, line: bytes) -> None:
        """Send QUIT and wait briefly for the answer; always close."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                self.writer.write(line + b"\r\n")
                await self.reader.readline()
        self.abort()


class LineTarget(Target):
    """A line-protocol target. Subclasses name their ``default_port``, the option of their
    in-band TLS upgrade (``upgrade``: ``"starttls"``, ``"stls"``, ``"ftps"``), how ``describe``
    calls it (``upgrade_mode``), and ``make_session``; ``__init__`` calls ``setup(args)``."""

    default_port: int
    upgrade: str
    upgrade_mode: str | None = None  # None: the option's name

    def setup(self, args: argparse.Namespace) -> None:
        """HOST:PORT and the TLS choice; the upgrade and ``--tls`` exclude each other."""
        self.host, self.port = parse_hostport(args.target, self.default_port)
        self.upgrade_tls: bool = bool(getattr(args, self.upgrade))
        self.implicit: bool = args.tls
        self.sni: str | None = args.sni
        if self.upgrade_tls and self.implicit:
            raise ValueError(f"--{self.upgrade} and --tls exclude each other")
        self._args = args
        self.tls: ssl.SSLContext | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LineTarget:
        return cls(args)  # type: ignore[call-arg]

    def prepare(self) -> None:
        if self.upgrade_tls or self.implicit:
            self.tls = client_tls_context(self._args)

    @abstractmethod
    def make_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        """The protocol's session on a connected stream (each target says which)."""

    async def connect(self) -> Any:
        implicit = self.tls if self.implicit else None
        return await open_session(self.make_session, self.host, self.port, implicit, self.sni)

    async def start_tls(self, session: LineSession) -> None:
        """The in-band upgrade, once the server agreed to it."""
        assert self.tls is not None
        await session.start_tls(self.tls, self.sni or self.host)

    def tls_mode(self) -> str:
        """``describe()``'s ``tls``: the upgrade, ``implicit`` or ``none``."""
        if self.upgrade_tls:
            return self.upgrade_mode or self.upgrade
        return "implicit" if self.implicit else "none"
