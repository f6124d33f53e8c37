"""One FTP control session: its state, and the helpers commands and transfers share.

Commands are read and answered **in order**, one at a time (so RNFR/RNTO, REST/RETR and
AUTH TLS cannot race). A transfer (RETR STOR APPE LIST NLST MLSD) runs as a background task,
so ABOR, STAT, NOOP and QUIT are heard while it runs; any other command waits until the
transfer has finished, as with vsftpd. Replies are written whole, by one ``write()`` each, so
a transfer's ``226`` and a command's reply never interleave.

Each command is ``async def cmd_xxx(s, arg) -> None`` in the table ``commands.COMMANDS``, with
its preconditions (argument, login, secure control connection) as data, checked before it runs;
refusals raise ``Refused(code, message)``, which the loop turns into the reply (the session
goes on).

The package: ``control`` (the loop that reads and runs commands), ``commands`` (the table),
``_login``, ``_files``, ``_transfers`` (data connections, RETR), ``_uploads`` (STOR/APPE,
durability, quota use), ``listing``, ``data`` (the data path), ``accounts``, ``jail``,
``quota``. Imports go one way: ``control`` → ``commands`` → the command modules → this one;
this module imports none of them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..core.sessions import Sessions
from ..proto.lines import LineBuffer
from .accounts import permission_of
from .data import DataChannel, open_channel
from .jail import Jail, Refused
from .quota import QuotaLedger, usage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..core.handler import Connection
    from ..core.passive import PassivePorts, PassiveSocket
    from ..core.starttls import ClearTextLogin
    from .accounts import FtpUser, PortalUserManager
    from .quota import Reservation

__all__ = ["MAX_LINE", "FtpSession", "SessionConfig"]

#: The longest command line, CRLF included (vsftpd: 4096 bytes too).
MAX_LINE = 4096


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
    #: The live sessions and their drain (``core.sessions``).
    sessions: Sessions[FtpSession] = field(default_factory=Sessions)
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
        self.lines = LineBuffer(MAX_LINE)
        self.reading = False  # waiting for the next command line

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

    async def finish_transfer(self) -> None:
        """Wait for the running transfer (if any) to end."""
        if self.transfer is not None and not self.transfer.done():
            await asyncio.wait([self.transfer])

    def drain_now(self) -> None:
        """Drain: a session waiting for a command is told ``421`` and closed, once its running
        transfer (if any) has answered; one running a command hears it at the next."""
        if not self.reading or self.writer.is_closing():
            return
        if self.transfer is not None and not self.transfer.done():
            self.transfer.add_done_callback(lambda _task: self.drain_now())
            return
        self.reply("421", "Service closing control connection (server shutting down).")
        self.writer.close()

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
