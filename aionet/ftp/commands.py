"""The FTP command table: each verb, the coroutine that runs it, and its preconditions.

Preconditions are data, checked by ``preconditions`` before a command runs, in this order
(each refusal is a ``Refused`` the session loop answers; the command does not run):

* ``argument``: the argument is mandatory (it names the thing the ``501`` says is needed).
  Bare, a ``DELE``/``RMD``/``RNFR`` would act on the current directory (RFC 959 §4.2.1).
* ``login``: the session is logged in, else ``530``.
* ``secure``: the control connection is under TLS (AUTH TLS or implicit), else ``503``
  (RFC 4217 §9: PBSZ and PROT follow a security exchange).

What depends on the command's own work stays in the command: permissions on the path it
resolves, and ``PROT P`` for a data connection under ``require_tls`` (answered ``521`` after
the path is checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _files, _login, _transfers, _uploads
from .jail import Refused

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .session import FtpSession

__all__ = ["COMMANDS", "DURING_TRANSFER", "Command", "preconditions"]


@dataclass(frozen=True, slots=True)
class Command:
    """One verb's coroutine and preconditions (see the module docstring)."""

    run: Callable[[FtpSession, str], Awaitable[bool | None]]
    argument: str | None = None
    login: bool = False
    secure: bool = False


def preconditions(s: FtpSession, verb: str, command: Command, arg: str) -> None:
    """Refuse ``verb`` unless its preconditions hold.

    Raises:
        Refused: ``501`` (argument), ``530`` (login) or ``503`` (secure control connection).
    """
    if command.argument is not None and not arg.strip():
        raise Refused("501", f"Syntax error in parameters or arguments: {command.argument} needed.")
    if command.login:
        s.logged_in()
    if command.secure and s.tls_context is None:
        raise Refused("503", f"{verb} needs a secure control connection.")


_DIR = "a directory name"
_FILE = "a file name"
_PATH = "a path name"

#: Commands heard while a transfer runs; any other waits until it has finished.
DURING_TRANSFER = frozenset({"ABOR", "STAT", "NOOP", "QUIT"})

COMMANDS: dict[str, Command] = {
    # login and session
    "USER": Command(_login.cmd_user),
    "PASS": Command(_login.cmd_pass),
    "QUIT": Command(_login.cmd_quit),
    "NOOP": Command(_login.cmd_noop),
    "SYST": Command(_login.cmd_syst),
    "FEAT": Command(_login.cmd_feat),
    "OPTS": Command(_login.cmd_opts),
    "AUTH": Command(_login.cmd_auth),
    "PBSZ": Command(_login.cmd_pbsz, secure=True),
    "PROT": Command(_login.cmd_prot, secure=True),
    "TYPE": Command(_login.cmd_type, login=True),
    "MODE": Command(_login.cmd_mode),
    "STRU": Command(_login.cmd_stru),
    "STAT": Command(_login.cmd_stat, login=True),
    # directories and files
    "PWD": Command(_files.cmd_pwd, login=True),
    "XPWD": Command(_files.cmd_pwd, login=True),
    "CWD": Command(_files.cmd_cwd, login=True),
    "XCWD": Command(_files.cmd_cwd, login=True),
    "CDUP": Command(_files.cmd_cdup, login=True),
    "XCUP": Command(_files.cmd_cdup, login=True),
    "MKD": Command(_files.cmd_mkd, argument=_DIR, login=True),
    "XMKD": Command(_files.cmd_mkd, argument=_DIR, login=True),
    "RMD": Command(_files.cmd_rmd, argument=_DIR, login=True),
    "XRMD": Command(_files.cmd_rmd, argument=_DIR, login=True),
    "DELE": Command(_files.cmd_dele, argument=_FILE, login=True),
    "RNFR": Command(_files.cmd_rnfr, argument=_PATH, login=True),
    "RNTO": Command(_files.cmd_rnto, argument=_PATH, login=True),
    "SIZE": Command(_files.cmd_size, argument=_FILE, login=True),
    "MDTM": Command(_files.cmd_mdtm, argument=_FILE, login=True),
    "MLST": Command(_files.cmd_mlst, login=True),
    "MLSD": Command(_files.cmd_mlsd, login=True),
    "LIST": Command(_files.cmd_list, login=True),
    "NLST": Command(_files.cmd_nlst, login=True),
    # data connections and transfers
    "PASV": Command(_transfers.cmd_pasv, login=True),
    "EPSV": Command(_transfers.cmd_epsv, login=True),
    "PORT": Command(_transfers.cmd_port, login=True),
    "EPRT": Command(_transfers.cmd_eprt, login=True),
    "REST": Command(_transfers.cmd_rest, login=True),
    "ABOR": Command(_transfers.cmd_abor, login=True),
    "RETR": Command(_transfers.cmd_retr, argument=_FILE, login=True),
    "STOR": Command(_uploads.cmd_stor, argument=_FILE, login=True),
    "APPE": Command(_uploads.cmd_appe, argument=_FILE, login=True),
}
