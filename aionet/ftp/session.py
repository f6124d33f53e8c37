"""One FTP control session: the command table and the transfers it starts.

Commands are read and answered **in order**, one at a time (so RNFR/RNTO, REST/RETR and
AUTH TLS cannot race). A transfer (RETR STOR APPE LIST NLST MLSD) runs as a background task,
so ABOR, STAT, NOOP and QUIT are heard while it runs; any other command waits until the
transfer has finished, as with vsftpd. Replies are written whole, by one ``write()`` each, so
a transfer's ``226`` and a command's reply never interleave.

Each command is ``async def cmd_xxx(s, arg) -> None`` in the table ``commands.COMMANDS``, with
its preconditions (argument, login, secure control connection) as data, checked before it runs;
refusals raise ``Refused(code, message)``, which the loop turns into the reply (the session
goes on).

The package behind this module: ``commands`` (the table), ``_login``, ``_files``,
``_transfers`` (data connections, RETR), ``_uploads`` (STOR/APPE, durability, quota use),
``listing``, ``data`` (the data path), ``accounts``, ``jail``, ``quota``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ._uploads import QUOTAS, usage
from .accounts import permission_of
from .commands import COMMANDS, DURING_TRANSFER, preconditions
from .data import DataChannel, open_channel
from .jail import Jail, Refused
from .quota import QuotaLedger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..core.handler import Connection
    from ..core.passive import PassivePorts, PassiveSocket
    from ..core.starttls import ClearTextLogin
    from .accounts import FtpUser, PortalUserManager
    from .quota import Reservation

__all__ = ["COMMANDS", "QUOTAS", "FtpSession", "SessionConfig", "usage"]

MAX_LINE = 4096
_IAC = re.compile(rb"\xff[\xf0-\xfe]?")


@dataclass
class SessionConfig:
    """What every session of one listener shares (built once by the handler)."""

    users: PortalUserManager
    passive: PassivePorts
    banner: str = "aionet FTP server ready."
    starttls: ssl.SSLContext | None = None
    require_tls: bool = False
    auth_without_tls: ClearTextLogin = False
    require_session_reuse: bool = False
    passive_address: str | None = None
    data_timeout: float = 30.0
    tls_handshake_timeout: float = 10.0
    active: bool = False
    fsync: bool = False
    draining: bool = False
    sessions: set[FtpSession] = field(default_factory=set)
    #: Quota usage per home (on disk + reserved by uploads in flight); see ftp/quota.py.
    quotas: QuotaLedger = field(default_factory=lambda: QuotaLedger(usage))
    #: For /metrics: data bytes each way and transfers completed (226).
    bytes_sent: int = 0
    bytes_received: int = 0
    downloads: int = 0
    uploads: int = 0


class FtpSession:
    """The state of one control connection and the loop that serves it."""

    def __init__(self, config: SessionConfig, conn: Connection) -> None:
        self.config = config
        self.conn = conn
        self.writer = conn.writer
        peer = conn.writer.get_extra_info("peername") or ("", 0)
        local = conn.writer.get_extra_info("sockname") or ("", 0)
        self.peer_ip: str = peer[0]
        self.local_ip: str = local[0]
        self.tls_context: ssl.SSLContext | None = None
        sslobj = conn.writer.get_extra_info("ssl_object")
        if sslobj is not None:  # implicit FTPS: the listener's context serves the data channels
            self.tls_context = sslobj.context
        self.pending: FtpUser | None = None
        self.user: FtpUser | None = None
        self.cwd = PurePosixPath("/")
        self.prot_private = False
        self.pbsz = False
        self.binary = True
        self.restart = 0
        self.rename_from: tuple[Path, PurePosixPath] | None = None
        self.epsv_all = False
        self.passive: PassiveSocket | None = None
        self.data: asyncio.Task[socket.socket] | None = None
        self.transfer: asyncio.Task[None] | None = None
        self.log = conn.log

    # -- replies ----------------------------------------------------------------------------

    def reply(self, code: str, *lines: str) -> None:
        """Write one reply (multi-line when several lines are given) in one write()."""
        if not lines:
            lines = ("",)
        if len(lines) == 1:
            text = f"{code} {lines[0]}\r\n"
        else:
            head, *body, tail = lines
            text = f"{code}-{head}\r\n" + "".join(f" {b}\r\n" for b in body) + f"{code} {tail}\r\n"
        if not self.writer.is_closing():
            self.writer.write(text.encode("utf-8", "surrogateescape"))

    # -- the loop ---------------------------------------------------------------------------

    async def serve(self) -> None:
        """Greet, then read and run commands until QUIT, EOF, drain or a fatal error."""
        with contextlib.suppress(OSError):
            sock = self.writer.get_extra_info("socket")
            if sock is not None:  # ABOR sent as urgent data stays in the stream
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        self.config.sessions.add(self)
        try:
            self.reply("220", self.config.banner)
            while True:
                await self.writer.drain()
                line = await self._read_line()
                if line is None:
                    return
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if self.config.draining:
                    await self._finish_transfer()
                    self.reply("421", "Service closing control connection (server shutting down).")
                    return
                if not await self._run(verb, arg):
                    return
        finally:
            self.config.sessions.discard(self)
            await self.close()

    async def _read_line(self) -> str | None:
        reader = self.conn.reader
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            self.reply("500", "Command line too long.")
            return None
        except (ConnectionError, ssl.SSLError):
            return None
        if len(raw) > MAX_LINE:
            self.reply("500", "Command line too long.")
            return None
        raw = _IAC.sub(b"", raw).rstrip(b"\r\n")
        self.conn.touch()
        return raw.decode("utf-8", "surrogateescape").lstrip()

    async def _run(self, verb: str, arg: str) -> bool:
        """Run one command; False ends the session."""
        command = COMMANDS.get(verb)
        if command is None:
            self.reply("502", f"Command {verb[:16]!s} not implemented.")
            return True
        if verb not in DURING_TRANSFER:
            await self._finish_transfer()
        try:
            preconditions(self, verb, command, arg)
            result = await command.run(self, arg)
        except Refused as refused:
            self.reply(refused.code, refused.message)
            result = None
        except OSError as exc:
            self.log.info("ftp_command_failed", command=verb, error=str(exc))
            self.reply("550", _os_message(exc))
            result = None
        if verb not in ("REST", "RETR", "STOR", "APPE"):
            self.restart = 0
        if verb != "RNFR":
            self.rename_from = None
        return result is not False

    async def _finish_transfer(self) -> None:
        if self.transfer is not None and not self.transfer.done():
            await asyncio.wait([self.transfer])

    async def close(self) -> None:
        """End the session's data side: cancel the transfer, close passive sockets."""
        if self.transfer is not None and not self.transfer.done():
            self.transfer.cancel()
            await asyncio.wait([self.transfer])
        self.drop_data()

    def drop_data(self) -> None:
        if self.passive is not None:
            self.passive.close()
            self.passive = None
        task, self.data = self.data, None
        if task is not None:
            if task.done():
                if not task.cancelled() and task.exception() is None:
                    task.result().close()
            else:
                task.cancel()
                task.add_done_callback(_close_result)

    # -- helpers ----------------------------------------------------------------------------

    def logged_in(self) -> FtpUser:
        if self.user is None:
            raise Refused("530", "Please login with USER and PASS.")
        return self.user

    def jail(self) -> Jail:
        jail = self.logged_in().jail
        assert jail is not None
        return jail

    def resolve(self, arg: str, *, default: str = ".") -> tuple[Path, PurePosixPath]:
        return self.jail().resolve(self.cwd, arg.strip() or default)

    def check(self, virtual: PurePosixPath, *, read: bool = False, write: bool = False) -> None:
        perm = permission_of(self.logged_in(), virtual)
        if (read and not perm.readable) or (write and not perm.writable):
            raise Refused("550", "Permission denied.")

    def needs_private_data(self) -> None:
        if self.config.require_tls and not self.prot_private:
            raise Refused("521", "Data connections must be encrypted (PROT P).")

    def start_transfer(
        self,
        work: Callable[[socket.socket], Awaitable[None]],
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work`` on the next data connection, in the background; ``work`` owns the
        socket from then on; ``cleanup`` runs however the transfer ends."""
        if self.data is None:
            if cleanup is not None:
                cleanup()
            raise Refused("425", "Use PASV or EPSV first.")
        data, self.data = self.data, None
        self.passive = None  # the accept task owns and closes the listening socket
        self.transfer = asyncio.create_task(self._transfer(data, work, cleanup))

    async def _transfer(
        self,
        data: asyncio.Task[socket.socket],
        work: Callable[[socket.socket], Awaitable[None]],
        cleanup: Callable[[], None] | None,
    ) -> None:
        try:
            try:
                sock = await asyncio.shield(data)
            except asyncio.CancelledError:
                data.cancel()
                data.add_done_callback(_close_result)
                raise
            except (TimeoutError, OSError):
                self.reply("425", "Failed to establish connection.")
                return
            await work(sock)
        except asyncio.CancelledError:
            self.reply("426", "Connection closed; transfer aborted.")
        except Refused as refused:
            self.reply(refused.code, refused.message)
        except (OSError, ssl.SSLError, EOFError) as exc:
            self.log.info("ftp_transfer_failed", error=repr(exc))
            self.reply("426", "Connection closed; transfer aborted.")
        except Exception:
            self.log.exception("ftp_transfer_crashed")
            self.reply("451", "Requested action aborted: local error in processing.")
        finally:
            if cleanup is not None:
                cleanup()

    async def channel(self, sock: socket.socket, opening: str, sink: Any = None) -> DataChannel:
        """Answer ``150 opening``, then set up the data connection: TLS when PROT P (checking
        session reuse if required). The 150 comes first: ftplib starts its TLS handshake only
        after it, like vsftpd expects."""
        self.reply("150", opening)
        context = self.tls_context if self.prot_private else None
        try:
            chan = await open_channel(
                sock, context, sink=sink, handshake_timeout=self.config.tls_handshake_timeout
            )
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self.log.info("ftp_data_tls_failed", error=repr(exc))
            raise Refused("425", "TLS handshake on the data connection failed.") from None
        if context is not None and self.config.require_session_reuse and not chan.session_reused:
            chan.abort()
            raise Refused("522", "TLS session of the data connection must resume the control's.")
        return chan

    def control_gone(self) -> bool:
        """Whether the client has closed the control connection, even if the loop has not
        read that yet (a peek at the kernel's queue: the FIN may sit behind the data's)."""
        if self.conn.reader.at_eof() or self.writer.is_closing():
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            with socket.socket(fileno=os.dup(sock.fileno())) as peek:
                return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def touch(self, n_in: int = 0, n_out: int = 0) -> None:
        self.conn.touch(n_in, n_out)

    async def reserve_quota(self, credit: int, start: int) -> Reservation | None:
        """A reservation for an upload replacing ``credit`` bytes (None: no quota).

        Raises:
            QuotaExceeded: the user is over the quota already.
        """
        user = self.logged_in()
        if user.quota is None:
            return None
        root = self.jail().root
        return await self.config.quotas.reserve(root, user.quota, credit=credit, start=start)


def _close_result(task: asyncio.Task[socket.socket]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


def _os_message(exc: OSError) -> str:
    return {
        "ENOENT": "No such file or directory.",
        "EEXIST": "File exists.",
        "ENOTEMPTY": "Directory not empty.",
        "ENOTDIR": "Not a directory.",
        "EISDIR": "Is a directory.",
        "EACCES": "Permission denied.",
        "ENOSPC": "No space left on device.",
    }.get(_errname(exc), "Requested action not taken.")


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "")
