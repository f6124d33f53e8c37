"""One FTP control session: the command table and the transfers it starts.

Commands are read and answered **in order**, one at a time (so RNFR/RNTO, REST/RETR and
AUTH TLS cannot race). A transfer (RETR STOR APPE LIST NLST MLSD) runs as a background task,
so ABOR, STAT, NOOP and QUIT are heard while it runs; any other command waits until the
transfer has finished, as with vsftpd. Replies are written whole, by one ``write()`` each, so
a transfer's ``226`` and a command's reply never interleave.

Each command is ``async def cmd_xxx(self, arg) -> None`` in ``COMMANDS``; refusals raise
``Refused(code, message)``, which the loop turns into the reply (the session goes on). A command
whose argument is mandatory carries the ``@needs_argument`` guard: bare, it is answered ``501``
and does nothing (RFC 959 §4.2.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import secrets
import socket
import ssl
import stat as stat_mod
import time
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.passive import PassiveExhausted, PassivePorts, PassiveSocket, same_ip
from ..core.starttls import ClearTextLogin, clear_text_login_allowed
from ..storage.durable import fsync_dir
from .accounts import ANONYMOUS_NAMES, FtpUser, PortalUserManager, permission_of
from .data import DataChannel, open_channel, send_file
from .jail import Jail, Refused
from .listing import list_mtime
from .quota import QuotaLedger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..core.handler import Connection
    from .quota import Reservation

__all__ = ["COMMANDS", "QUOTAS", "FtpSession", "SessionConfig", "needs_argument", "usage"]

MAX_LINE = 4096
_IAC = re.compile(rb"\xff[\xf0-\xfe]?")
_TEMP_PREFIX = ".aionet-upload-"


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
        handler = COMMANDS.get(verb)
        if handler is None:
            self.reply("502", f"Command {verb[:16]!s} not implemented.")
            return True
        if verb not in _DURING_TRANSFER:
            await self._finish_transfer()
        try:
            result = await handler(self, arg)
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
        self._drop_data()

    def _drop_data(self) -> None:
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

    def _needs_private_data(self) -> None:
        if self.config.require_tls and not self.prot_private:
            raise Refused("521", "Data connections must be encrypted (PROT P).")

    def _start(
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


_R = TypeVar("_R")


def needs_argument(
    what: str,
) -> Callable[
    [Callable[[FtpSession, str], Awaitable[_R]]], Callable[[FtpSession, str], Awaitable[_R]]
]:
    """Guard for a command whose argument is mandatory: bare (nothing, or only spaces) it is
    answered ``501`` and the command does not run. Without it a bare ``DELE``/``RMD``/``RNFR``
    would act on the current directory."""

    def guard(
        command: Callable[[FtpSession, str], Awaitable[_R]],
    ) -> Callable[[FtpSession, str], Awaitable[_R]]:
        @wraps(command)
        async def guarded(s: FtpSession, arg: str) -> _R:
            if not arg.strip():
                raise Refused("501", f"Syntax error in parameters or arguments: {what} needed.")
            return await command(s, arg)

        return guarded

    return guard


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


def usage(root: Path) -> int:
    """Bytes on disk under ``root``, but for the temporary files of uploads in flight (the
    quota ledger counts those as reserved)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(_TEMP_PREFIX):
                continue
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


#: One ledger for the process: every FTP listener (and, during a reload, the old and the new
#: handler) may write into the same homes.
QUOTAS = QuotaLedger(usage)


def _quote(path: PurePosixPath) -> str:
    return '"' + str(path).replace('"', '""') + '"'


def _mtime(ts: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(ts))


# -- login and session ----------------------------------------------------------------------


def _clear_login_refused(s: FtpSession, name: str) -> bool:
    """Whether a login as ``name`` must wait for AUTH TLS: always with ``require_tls``; else
    unless ``auth_without_tls`` allows this client (anonymous sends no secret: exempt)."""
    if s.tls_context is not None:
        return False
    if s.config.require_tls:
        return True
    if s.config.users.anonymous and name.lower() in ANONYMOUS_NAMES:
        return False
    return not clear_text_login_allowed(s.config.auth_without_tls, s.conn.peer)


async def cmd_user(s: FtpSession, arg: str) -> None:
    if s.user is not None:
        raise Refused("530", "Can't change to another user.")
    name = arg.strip()
    if not name:
        raise Refused("501", "USER needs a name.")
    if _clear_login_refused(s, name):
        raise Refused("534", "Policy requires TLS: use AUTH TLS first.")
    s.pending = s.config.users.user_for(name, s.peer_ip)
    s.reply("331", s.config.users.password_prompt(name))


async def cmd_pass(s: FtpSession, arg: str) -> None:
    if s.user is not None:
        raise Refused("230", "Already logged in.")
    pending, s.pending = s.pending, None
    if _clear_login_refused(s, pending.login if pending is not None else ""):
        raise Refused("530", "Policy requires TLS: use AUTH TLS first.")
    if pending is None:
        raise Refused("503", "Login with USER first.")
    if not await s.config.users.authenticate(pending, arg):
        s.log.info("ftp_login_failed", user=pending.login)
        raise Refused("530", "Login incorrect.")
    s.user = pending
    s.cwd = PurePosixPath("/")
    s.conn.user = pending.account.name if pending.account is not None else "anonymous"
    s.log.info("ftp_login", user=s.conn.user)
    s.reply("230", "Login successful.")


async def cmd_quit(s: FtpSession, arg: str) -> bool:
    s.reply("221", "Goodbye.")
    return False


async def cmd_noop(s: FtpSession, arg: str) -> None:
    s.reply("200", "NOOP ok.")


async def cmd_syst(s: FtpSession, arg: str) -> None:
    s.reply("215", "UNIX Type: L8")


FEATURES = (
    "EPSV",
    "MDTM",
    "MLST type*;size*;modify*;perm*;unique*;",
    "PASV",
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
)


async def cmd_feat(s: FtpSession, arg: str) -> None:
    tls = ("AUTH TLS", "PBSZ", "PROT") if s.config.starttls or s.tls_context else ()
    s.reply("211", "Features:", *sorted((*FEATURES, *tls)), "End")


async def cmd_opts(s: FtpSession, arg: str) -> None:
    option, _, value = arg.strip().partition(" ")
    option = option.upper()
    if option == "UTF8" and value.strip().upper() in ("ON", ""):
        s.reply("200", "Always in UTF8 mode.")
    elif option == "MLST":
        s.reply("200", "MLST OPTS type;size;modify;perm;unique;")
    else:
        raise Refused("501", "Option not understood.")


async def cmd_auth(s: FtpSession, arg: str) -> bool | None:
    if s.tls_context is not None:
        raise Refused("503", "Already using TLS.")
    context = s.config.starttls
    if context is None:
        raise Refused("502", "AUTH not supported (no certificate configured).")
    if arg.strip().upper() not in ("TLS", "TLS-C", "SSL"):
        raise Refused("504", "Unsupported AUTH type.")
    s.reply("234", "Proceed with negotiation.")
    await s.writer.drain()
    try:
        await s.conn.start_tls(context, timeout=s.config.tls_handshake_timeout)
    except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
        s.log.info("ftp_auth_tls_failed", error=repr(exc))
        return False
    s.writer = s.conn.writer
    s.tls_context = context
    s.user = s.pending = None  # RFC 4217: a fresh login on the secured connection
    return None


async def cmd_pbsz(s: FtpSession, arg: str) -> None:
    if s.tls_context is None:
        raise Refused("503", "PBSZ needs a secure control connection.")
    s.pbsz = True
    s.reply("200", "PBSZ=0")


async def cmd_prot(s: FtpSession, arg: str) -> None:
    if s.tls_context is None:
        raise Refused("503", "PROT needs a secure control connection.")
    level = arg.strip().upper()
    if level == "P":
        s.prot_private = True
        s.reply("200", "PROT now Private.")
    elif level == "C":
        if s.config.require_tls:
            raise Refused("534", "PROT C refused: policy requires encrypted data.")
        s.prot_private = False
        s.reply("200", "PROT now Clear.")
    else:
        raise Refused("504", "PROT level not supported (use P or C).")


async def cmd_type(s: FtpSession, arg: str) -> None:
    s.logged_in()
    kind = arg.strip().upper().split()
    if kind[:1] == ["I"] or kind == ["L", "8"]:
        s.binary = True
        s.reply("200", "Switching to Binary mode.")
    elif kind[:1] == ["A"] and kind[1:] in ([], ["N"]):
        s.binary = False
        s.reply("200", "Switching to ASCII mode.")
    else:
        raise Refused("504", "Bad TYPE command.")


async def cmd_mode(s: FtpSession, arg: str) -> None:
    if arg.strip().upper() != "S":
        raise Refused("504", "Bad MODE command.")
    s.reply("200", "Mode set to S.")


async def cmd_stru(s: FtpSession, arg: str) -> None:
    if arg.strip().upper() != "F":
        raise Refused("504", "Bad STRU command.")
    s.reply("200", "Structure set to F.")


async def cmd_stat(s: FtpSession, arg: str) -> None:
    user = s.logged_in()
    if arg.strip():
        real, virtual = s.resolve(arg)
        s.check(virtual, read=True)
        lines = _listing(real, s.jail(), long=True)
        s.reply("213", "Status follows:", *lines, "End of status")
        return
    busy = s.transfer is not None and not s.transfer.done()
    s.reply(
        "211",
        "FTP server status:",
        f"Connected to {s.peer_ip}",
        f"Logged in as {user.login}",
        f"TYPE: {'BINARY' if s.binary else 'ASCII'}",
        f"Control connection {'encrypted' if s.tls_context else 'plain'}",
        f"Data connections {'encrypted' if s.prot_private else 'plain'}",
        "Transfer in progress" if busy else "No transfer in progress",
        "End of status",
    )


# -- directories ----------------------------------------------------------------------------


async def cmd_pwd(s: FtpSession, arg: str) -> None:
    s.logged_in()
    s.reply("257", f"{_quote(s.cwd)} is the current directory")


async def cmd_cwd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg, default="/")
    if not real.is_dir():
        raise Refused("550", "Failed to change directory.")
    s.check(virtual, read=True)
    s.cwd = virtual
    s.reply("250", "Directory successfully changed.")


async def cmd_cdup(s: FtpSession, arg: str) -> None:
    s.logged_in()
    if s.cwd == PurePosixPath("/"):
        s.reply("250", "Directory successfully changed.")
        return
    await cmd_cwd(s, "..")


@needs_argument("a directory name")
async def cmd_mkd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if real.exists() or real.is_symlink():
        raise Refused("550", "Create directory operation failed: file exists.")
    real.mkdir()
    s.reply("257", f"{_quote(virtual)} created")


@needs_argument("a directory name")
async def cmd_rmd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    if virtual == PurePosixPath("/"):
        raise Refused("550", "Remove directory operation failed.")
    s.check(virtual, write=True)
    if real.is_symlink() or not real.is_dir():
        raise Refused("550", "Remove directory operation failed: not a directory.")
    real.rmdir()
    s.reply("250", "Remove directory operation successful.")


@needs_argument("a file name")
async def cmd_dele(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if real.is_dir() and not real.is_symlink():
        raise Refused("550", "Delete operation failed: is a directory.")
    real.unlink()
    s.reply("250", "Delete operation successful.")


@needs_argument("a path name")
async def cmd_rnfr(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if virtual == PurePosixPath("/") or not (real.exists() or real.is_symlink()):
        raise Refused("550", "RNFR command failed.")
    s.rename_from = (real, virtual)
    s.reply("350", "Ready for RNTO.")


@needs_argument("a path name")
async def cmd_rnto(s: FtpSession, arg: str) -> None:
    s.logged_in()
    source, s.rename_from = s.rename_from, None
    if source is None:
        raise Refused("503", "RNFR required first.")
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if virtual == PurePosixPath("/"):
        raise Refused("550", "Rename failed.")
    os.rename(source[0], real)
    s.reply("250", "Rename successful.")


# -- file facts -----------------------------------------------------------------------------


@needs_argument("a file name")
async def cmd_size(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.is_file():
        raise Refused("550", "Could not get file size.")
    s.reply("213", str(real.stat().st_size))


@needs_argument("a file name")
async def cmd_mdtm(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.is_file():
        raise Refused("550", "Could not get file modification time.")
    s.reply("213", _mtime(real.stat().st_mtime))


def _facts(s: FtpSession, real: Path, virtual: PurePosixPath, st: os.stat_result) -> str:
    perm = permission_of(s.logged_in(), virtual)
    if stat_mod.S_ISDIR(st.st_mode):
        kind = "dir"
        perms = ("el" if perm.readable else "") + ("cmpfd" if perm.writable else "")
        size = ""
    else:
        kind = (
            "file"
            if stat_mod.S_ISREG(st.st_mode)
            else "OS.unix=slink"
            if stat_mod.S_ISLNK(st.st_mode)
            else "OS.unix=special"
        )
        perms = ("r" if perm.readable else "") + ("adfw" if perm.writable else "")
        size = f"size={st.st_size};"
    return (
        f"type={kind};{size}modify={_mtime(st.st_mtime)};perm={perms};"
        f"unique={st.st_dev:x}U{st.st_ino:x};"
    )


async def cmd_mlst(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.exists():
        raise Refused("550", "No such file or directory.")
    facts = _facts(s, real, virtual, real.stat())
    s.reply("250", f"Listing {virtual}", f"{facts} {virtual}", "End")


def _stat(path: Path, jail: Jail) -> os.stat_result:
    """``stat`` following a symlink only when it stays inside the jail (else ``lstat``: the
    size and times of what lies outside are none of the client's business)."""
    if path.is_symlink() and not jail.contains(Path(os.path.realpath(path))):
        return path.lstat()
    return path.stat()


def _listing(real: Path, jail: Jail, *, long: bool) -> list[str]:
    """``ls -l``-style lines (or bare names) for a directory, or for one file."""
    entries = sorted(real.iterdir(), key=lambda p: p.name) if real.is_dir() else [real]
    now = time.time()
    lines = []
    for path in entries:
        if path.name.startswith(_TEMP_PREFIX):
            continue  # an upload in progress is not there yet
        try:
            st = _stat(path, jail)
        except OSError:
            continue
        if not long:
            lines.append(path.name)
            continue
        mtime = list_mtime(st.st_mtime, now)
        lines.append(
            f"{stat_mod.filemode(st.st_mode)} {st.st_nlink:3d} ftp      ftp      "
            f"{st.st_size:>12d} {mtime} {path.name}"
        )
    return lines


def _list_arg(arg: str) -> str:
    """Drop ``ls`` options clients send (``LIST -la``), keep the path."""
    words = arg.split(" ")
    while words and words[0].startswith("-"):
        words.pop(0)
    return " ".join(words)


async def _send_lines(s: FtpSession, lines: list[str], sock: socket.socket) -> None:
    chan = await s.channel(sock, "Here comes the directory listing.")
    try:
        payload = "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")
        await chan.write(payload)
        await chan.close()
    except BaseException:
        chan.abort()
        raise
    s.touch(n_out=len(payload))
    s.reply("226", "Directory send OK.")


async def _listing_command(s: FtpSession, arg: str, make: Callable[[Path], list[str]]) -> None:
    real, virtual = s.resolve(_list_arg(arg))
    s.check(virtual, read=True)
    if not real.exists():
        raise Refused("550", "No such file or directory.")
    s._needs_private_data()
    lines = make(real)

    async def work(sock: socket.socket) -> None:
        await _send_lines(s, lines, sock)

    s._start(work)


async def cmd_list(s: FtpSession, arg: str) -> None:
    await _listing_command(s, arg, lambda real: _listing(real, s.jail(), long=True))


async def cmd_nlst(s: FtpSession, arg: str) -> None:
    await _listing_command(s, arg, lambda real: _listing(real, s.jail(), long=False))


async def cmd_mlsd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.is_dir():
        raise Refused("501", "MLSD needs a directory.")

    def make(real: Path) -> list[str]:
        lines = []
        for path in sorted(real.iterdir(), key=lambda p: p.name):
            if path.name.startswith(_TEMP_PREFIX):
                continue
            try:
                st = _stat(path, s.jail())
            except OSError:
                continue
            lines.append(f"{_facts(s, path, virtual / path.name, st)} {path.name}")
        return lines

    await _listing_command(s, arg, make)


# -- data connections -----------------------------------------------------------------------


def _open_passive(s: FtpSession) -> PassiveSocket:
    user = s.logged_in()
    s._drop_data()
    owner = user.account.name if user.account is not None else None  # anonymous: per address
    pool = s.config.passive
    try:
        passive = pool.open(s.local_ip, s.peer_ip, timeout=s.config.data_timeout, user=owner)
    except PassiveExhausted as exc:
        if exc.capped:  # this client's share is taken, not the pool
            s.log.warning(
                "ftp_passive_capped", user=owner, per_ip=pool.per_ip, per_user=pool.per_user
            )
            raise Refused("425", "Too many passive connections from you, try later.") from None
        s.log.warning("ftp_passive_exhausted", **s.config.passive.stats())
        raise Refused("425", "No passive port available, try again later.") from None
    s.passive = passive
    s.data = asyncio.create_task(passive.accept())
    return passive


async def cmd_pasv(s: FtpSession, arg: str) -> None:
    s.logged_in()
    if s.epsv_all:
        raise Refused("503", "EPSV ALL in effect: use EPSV.")
    announce = s.config.passive_address or s.local_ip
    if announce.startswith("::ffff:"):
        announce = announce[7:]
    if ":" in announce:
        raise Refused("425", "PASV is IPv4 only: use EPSV.")
    port = _open_passive(s).port
    h = announce.replace(".", ",")
    s.reply("227", f"Entering Passive Mode ({h},{port >> 8},{port & 0xFF}).")


async def cmd_epsv(s: FtpSession, arg: str) -> None:
    s.logged_in()
    proto = arg.strip().upper()
    if proto == "ALL":
        s.epsv_all = True
        s.reply("200", "EPSV ALL ok.")
        return
    family = "2" if ":" in s.local_ip and not s.local_ip.startswith("::ffff:") else "1"
    if proto not in ("", family):
        raise Refused("522", f"Network protocol not supported, use ({family}).")
    port = _open_passive(s).port
    s.reply("229", f"Entering Extended Passive Mode (|||{port}|).")


def _active_target(s: FtpSession, host: str, port: int) -> None:
    if not s.config.active:
        raise Refused("502", "Active mode is disabled: use PASV or EPSV.")
    if not same_ip(host, s.peer_ip) or not 1024 <= port <= 65535:
        raise Refused("500", "Illegal PORT command (only to your own address).")
    s._drop_data()
    s.data = asyncio.create_task(_connect(s, host, port))


async def _connect(s: FtpSession, host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(s.config.data_timeout):
            await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def cmd_port(s: FtpSession, arg: str) -> None:
    s.logged_in()
    try:
        parts = [int(x) for x in arg.strip().split(",")]
        if len(parts) != 6 or not all(0 <= p <= 255 for p in parts):
            raise ValueError
    except ValueError:
        raise Refused("501", "Illegal PORT command.") from None
    host = ".".join(map(str, parts[:4]))
    _active_target(s, host, parts[4] * 256 + parts[5])
    s.reply("200", "PORT command successful. Consider using PASV.")


async def cmd_eprt(s: FtpSession, arg: str) -> None:
    s.logged_in()
    text = arg.strip()
    try:
        _, proto, host, port_text, _ = text.split(text[0])
        port = int(port_text)
        if proto not in ("1", "2"):
            raise ValueError
    except (ValueError, IndexError):
        raise Refused("501", "Illegal EPRT command.") from None
    _active_target(s, host, port)
    s.reply("200", "EPRT command successful. Consider using EPSV.")


async def cmd_rest(s: FtpSession, arg: str) -> None:
    s.logged_in()
    if not arg.strip().isdigit():
        raise Refused("501", "REST needs a byte offset.")
    s.restart = int(arg.strip())
    s.reply("350", f"Restart position accepted ({s.restart}).")


async def cmd_abor(s: FtpSession, arg: str) -> None:
    s.logged_in()
    task = s.transfer
    s._drop_data()
    if task is None or task.done():
        s.reply("225", "No transfer to ABOR.")
        return
    task.cancel()
    await asyncio.wait([task])
    s.reply("226", "ABOR successful.")


# -- transfers ------------------------------------------------------------------------------


@needs_argument("a file name")
async def cmd_retr(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.is_file():
        raise Refused("550", "Failed to open file.")
    s._needs_private_data()
    offset, s.restart = s.restart, 0
    fd = os.open(real, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if offset > size:
            raise Refused("554", "Restart offset beyond the end of the file.")
    except BaseException:
        os.close(fd)
        raise

    opening = (
        f"Opening {'BINARY' if s.binary else 'ASCII'} mode data connection for "
        f"{virtual.name} ({size} bytes)."
    )

    def touch(n: int) -> None:
        s.touch(n_out=n)
        s.config.bytes_sent += n

    async def work(sock: socket.socket) -> None:
        if s.prot_private:
            chan = await s.channel(sock, opening)
            try:
                await chan.send_path(fd, offset, touch)
                await chan.close()
            except BaseException:
                chan.abort()
                raise
        else:
            s.reply("150", opening)
            try:
                await send_file(sock, fd, offset, size - offset, touch)
            finally:
                sock.close()
        s.config.downloads += 1
        s.reply("226", "Transfer complete.")

    s._start(work, lambda: os.close(fd))


@needs_argument("a file name")
async def cmd_stor(s: FtpSession, arg: str) -> None:
    await _store(s, arg, append=False)


@needs_argument("a file name")
async def cmd_appe(s: FtpSession, arg: str) -> None:
    await _store(s, arg, append=True)


async def _store(s: FtpSession, arg: str, *, append: bool) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if not real.parent.is_dir():
        raise Refused("553", "Could not create file: no such directory.")
    if real.is_dir():
        raise Refused("553", "Could not create file: is a directory.")
    s._needs_private_data()
    offset, s.restart = s.restart, 0
    existing = real.stat().st_size if real.is_file() else 0
    keep = existing if append else offset
    if keep > existing:
        raise Refused("554", "Restart offset beyond the end of the file.")
    reservation = await s.reserve_quota(existing, keep)  # may walk the home, off the loop
    upload = _Upload(real, keep, reservation, s.config.fsync)
    try:
        upload.open()
    except BaseException:
        upload.discard()
        raise

    def sink(chunk: memoryview) -> None:
        upload.write(chunk)
        s.touch(n_in=len(chunk))  # a long upload is not an idle control connection
        s.config.bytes_received += len(chunk)

    async def work(sock: socket.socket) -> None:
        chan = await s.channel(sock, "Ok to send data.", sink)
        try:
            await chan.protocol.eof
        except BaseException:
            chan.abort()
            raise
        await chan.close()
        if upload.fsync:
            await asyncio.to_thread(os.fsync, upload.fd)
        if s.control_gone():  # the client vanished before our 226: a dropped upload
            raise ConnectionResetError("control connection closed during the upload")
        upload.commit()  # in the loop: no cancellation between the rename and the 226
        if upload.fsync:
            await asyncio.shield(asyncio.to_thread(fsync_dir, real.parent))
        s.config.uploads += 1
        s.reply("226", "Transfer complete.")

    s._start(work, upload.discard)



class _Upload:
    """A temporary file beside the target, renamed into place only when complete."""

    def __init__(
        self, target: Path, keep: int, reservation: Reservation | None, fsync: bool
    ) -> None:
        self.target = target
        self.keep = keep
        self.reservation = reservation  # None: no quota
        self.fsync = fsync
        self.temp: Path | None = None
        self.fd = -1
        self.size = 0

    def open(self) -> None:
        name = f"{_TEMP_PREFIX}{secrets.token_hex(6)}-{self.target.name}"[:255]
        self.temp = self.target.parent / name
        self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if self.keep:  # REST + STOR, or APPE: the kept prefix first (a copy, atomic as a whole)
            src = os.open(self.target, os.O_RDONLY)
            try:
                copied = 0
                while copied < self.keep:
                    n = os.sendfile(self.fd, src, copied, self.keep - copied)
                    if n == 0:
                        break
                    copied += n
            finally:
                os.close(src)
        self.size = self.keep

    def write(self, chunk: memoryview) -> None:
        self.size += len(chunk)
        if self.reservation is not None:
            self.reservation.grow(self.size)  # QuotaExceeded: nothing of this chunk is written
        while chunk:
            written = os.write(self.fd, chunk)
            chunk = chunk[written:]

    def commit(self) -> None:
        """Rename the complete temporary file over the target.

        Raises:
            QuotaExceeded: the file replaced shrank or vanished meanwhile, and the upload no
                longer fits (nothing is renamed).
        """
        assert self.temp is not None
        if self.reservation is not None:
            try:
                st = os.lstat(self.target)
                replaced = 0 if stat_mod.S_ISDIR(st.st_mode) else st.st_size
            except FileNotFoundError:
                replaced = 0
            self.reservation.commit(self.size, replaced)  # counted on disk from here on
        os.close(self.fd)
        self.fd = -1
        os.replace(self.temp, self.target)
        self.temp = None

    def discard(self) -> None:
        if self.reservation is not None:
            self.reservation.release()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.temp is not None:
            with contextlib.suppress(OSError):
                self.temp.unlink()
            self.temp = None


_DURING_TRANSFER = frozenset({"ABOR", "STAT", "NOOP", "QUIT"})

COMMANDS: dict[str, Callable[[FtpSession, str], Awaitable[bool | None]]] = {
    "USER": cmd_user,
    "PASS": cmd_pass,
    "QUIT": cmd_quit,
    "NOOP": cmd_noop,
    "SYST": cmd_syst,
    "FEAT": cmd_feat,
    "OPTS": cmd_opts,
    "AUTH": cmd_auth,
    "PBSZ": cmd_pbsz,
    "PROT": cmd_prot,
    "TYPE": cmd_type,
    "MODE": cmd_mode,
    "STRU": cmd_stru,
    "STAT": cmd_stat,
    "PWD": cmd_pwd,
    "XPWD": cmd_pwd,
    "CWD": cmd_cwd,
    "XCWD": cmd_cwd,
    "CDUP": cmd_cdup,
    "XCUP": cmd_cdup,
    "MKD": cmd_mkd,
    "XMKD": cmd_mkd,
    "RMD": cmd_rmd,
    "XRMD": cmd_rmd,
    "DELE": cmd_dele,
    "RNFR": cmd_rnfr,
    "RNTO": cmd_rnto,
    "SIZE": cmd_size,
    "MDTM": cmd_mdtm,
    "MLST": cmd_mlst,
    "MLSD": cmd_mlsd,
    "LIST": cmd_list,
    "NLST": cmd_nlst,
    "PASV": cmd_pasv,
    "EPSV": cmd_epsv,
    "PORT": cmd_port,
    "EPRT": cmd_eprt,
    "REST": cmd_rest,
    "ABOR": cmd_abor,
    "RETR": cmd_retr,
    "STOR": cmd_stor,
    "APPE": cmd_appe,
}
