"""``aionet bench ftp HOST:PORT --user U --password P (--get PATH | --put SIZE)``.

A session logs in once (``USER``/``PASS``, ``TYPE I``; with ``--ftps``: ``AUTH TLS``,
``PBSZ 0``, ``PROT P`` first, RFC 4217; with ``--tls``, implicit FTPS: TLS from the first
byte, then ``PBSZ 0``, ``PROT P``). A request is one transfer over a passive data
connection (``EPSV``, falling back to ``PASV``): ``RETR PATH`` read to the end, or ``STOR`` of
``SIZE`` bytes; it completes with the 226. Under FTPS the data connection's TLS handshake
starts after the server's ``150``, as curl, lftp and ftplib do (a server such as vsftpd or
aionet sends the ``150`` before it accepts the handshake). TLS sessions are not resumed on the
data connection (asyncio cannot): a server requiring it (``require_session_reuse``,
vsftpd's ``require_ssl_reuse``) answers ``522``. The data connection goes to the control
connection's host whatever address PASV names (as curl does), so NAT and wildcard binds work.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any

from ..target import BenchError, add_tls_arguments
from ._connect import shielded_connect
from ._lines import LineSession, LineTarget

if TYPE_CHECKING:
    import argparse

__all__ = ["FtpTarget"]

_PASV = re.compile(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPSV = re.compile(rb"\(\|\|\|(\d+)\|\)")
#: How long closing a data connection may take before it is aborted.
CLOSE_GRACE = 2.0
CHUNK = 256 * 1024


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a data connection and wait for it (a TLS one exchanges close_notify first); abort
    it when that does not finish in time or the run is cancelled, so no transport outlives the
    run's loop (it would be reported unclosed when collected)."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):  # not wait_for: on 3.11 it can lose a cancel
            await writer.wait_closed()
    except (TimeoutError, OSError):  # ssl.SSLError and ConnectionError are OSErrors
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


class _FtpSession(LineSession):
    def __init__(self, target: FtpTarget, reader: Any, writer: Any) -> None:
        super().__init__(reader, writer)
        self.t = target
        self.epsv = True
        self.n = 0

    async def handshake(self) -> None:
        t = self.t
        await self.reply(220)
        if t.upgrade_tls:
            await self.command(b"AUTH TLS", 234)
            await t.start_tls(self)
        code, _ = await self.command(b"USER " + t.user.encode(), 230, 331)
        if code == 331:
            await self.command(b"PASS " + t.password.encode(), 230)
        if t.upgrade_tls or t.implicit:
            await self.command(b"PBSZ 0", 200)
            await self.command(b"PROT P", 200)
        await self.command(b"TYPE I", 200)

    async def _data_port(self) -> int:
        if self.epsv:
            self.writer.write(b"EPSV\r\n")
            code, text = await self.reply()
            m = _EPSV.search(text)
            if code == 229 and m:
                return int(m.group(1))
            self.epsv = False
        _, text = await self.command(b"PASV", 227)
        m = _PASV.search(text)
        if not m:
            raise BenchError("protocol", f"cannot parse PASV reply {text!r}")
        return int(m.group(5)) * 256 + int(m.group(6))

    async def request(self) -> int:
        t = self.t
        port = await self._data_port()
        data_r, data_w = await shielded_connect(asyncio.open_connection(t.host, port))
        try:
            if t.get is not None:
                await self.command(b"RETR " + t.get.encode(), 125, 150)
                await self._secure(data_w)
                received = 0
                while chunk := await data_r.read(CHUNK):
                    received += len(chunk)
                if t.get_size is not None and received != t.get_size:
                    raise BenchError("short transfer", f"{received} of {t.get_size} bytes")
            else:
                self.n += 1
                name = f"{t.put_prefix}{os.getpid()}-{id(self):x}-{self.n}.bin"
                await self.command(b"STOR " + name.encode(), 125, 150)
                await self._secure(data_w)
                for i in range(0, len(t.payload), CHUNK):
                    data_w.write(t.payload[i : i + CHUNK])
                    await data_w.drain()
                if data_w.can_write_eof():
                    data_w.write_eof()
        finally:
            await _close(data_w)
        await self.reply(226, 250)
        return 1

    async def _secure(self, data: asyncio.StreamWriter) -> None:
        """Start TLS on the data connection (with ``--ftps``), after the 150."""
        t = self.t
        if t.tls is not None:
            await data.start_tls(t.tls, server_hostname=t.sni or t.host)

    async def aclose(self) -> None:
        await self.goodbye(b"QUIT")


class FtpTarget(LineTarget):
    name = "ftp"
    help = "FTP transfers over passive data connections: --get PATH or --put SIZE (FTPS)"
    default_port, upgrade, upgrade_mode = 21, "ftps", "explicit"

    def __init__(self, args: argparse.Namespace) -> None:
        self.setup(args)
        self.user, self.password = args.user, args.password
        if (args.get is None) == (args.put is None):
            raise ValueError("give one of --get PATH or --put SIZE")
        self.get: str | None = args.get
        self.get_size: int | None = args.expect_size
        self.put_size = args.put or 0
        self.put_prefix = args.put_prefix
        self.payload = os.urandom(min(self.put_size, 1 << 20)) * (
            -(-self.put_size // (1 << 20)) if self.put_size > 1 << 20 else 1
        )
        self.payload = self.payload[: self.put_size]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT", help="the FTP server (port 21)")
        parser.add_argument("--user", default="anonymous")
        parser.add_argument("--password", default="bench@aionet.test")
        parser.add_argument("--get", metavar="PATH", help="download this file per request")
        parser.add_argument(
            "--expect-size", type=int, help="with --get: the size every download must have"
        )
        parser.add_argument("--put", type=int, metavar="SIZE", help="upload SIZE bytes per request")
        parser.add_argument(
            "--put-prefix", default="aionet-bench-", help="name prefix of uploaded files"
        )
        parser.add_argument("--ftps", action="store_true", help="explicit FTPS (AUTH TLS)")
        add_tls_arguments(parser)  # --tls: implicit FTPS

    def make_session(self, reader: Any, writer: Any) -> _FtpSession:
        return _FtpSession(self, reader, writer)

    def describe(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "transfer": f"get {self.get}" if self.get else f"put {self.put_size} bytes",
            "ftps": self.upgrade_tls,
            "tls": self.tls_mode(),
        }
