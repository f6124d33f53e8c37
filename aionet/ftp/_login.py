"""FTP login and session commands: USER PASS QUIT NOOP SYST FEAT OPTS, AUTH TLS, PBSZ PROT,
TYPE MODE STRU, STAT."""

from __future__ import annotations

import ssl
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ..core.starttls import clear_text_login_allowed
from .accounts import ANONYMOUS_NAMES
from .jail import Refused
from .listing import listing

if TYPE_CHECKING:
    from .session import FtpSession

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
        await s.conn.start_tls(context, timeout=s.config.tls_handshake_timeout, buffers=(s.lines,))
    except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
        s.log.info("ftp_auth_tls_failed", error=repr(exc))
        return False
    s.writer = s.conn.writer
    s.tls_context = context
    s.user = s.pending = None  # RFC 4217: a fresh login on the secured connection
    return None


async def cmd_pbsz(s: FtpSession, arg: str) -> None:
    s.pbsz = True
    s.reply("200", "PBSZ=0")


async def cmd_prot(s: FtpSession, arg: str) -> None:
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
        lines = listing(real, s.jail(), long=True)
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
