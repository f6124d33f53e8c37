"""FTP directory and file commands: PWD CWD CDUP MKD RMD DELE RNFR RNTO, SIZE MDTM MLST, and
the listings LIST NLST MLSD."""

from __future__ import annotations

import os
import stat as stat_mod
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .accounts import permission_of
from .jail import Refused
from .listing import list_arg, listing, stat_in_jail
from .quota import TEMP_PREFIX

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from .session import FtpSession


def _quote(path: PurePosixPath) -> str:
    return '"' + str(path).replace('"', '""') + '"'


def _mtime(ts: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(ts))


# -- directories ----------------------------------------------------------------------------


async def cmd_pwd(s: FtpSession, arg: str) -> None:
    s.reply("257", f"{_quote(s.cwd)} is the current directory")


async def cmd_cwd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg, default="/")
    if not real.is_dir():
        raise Refused("550", "Failed to change directory.")
    s.check(virtual, read=True)
    s.cwd = virtual
    s.reply("250", "Directory successfully changed.")


async def cmd_cdup(s: FtpSession, arg: str) -> None:
    if s.cwd == PurePosixPath("/"):
        s.reply("250", "Directory successfully changed.")
        return
    await cmd_cwd(s, "..")


async def cmd_mkd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if real.exists() or real.is_symlink():
        raise Refused("550", "Create directory operation failed: file exists.")
    real.mkdir()
    s.reply("257", f"{_quote(virtual)} created")


async def cmd_rmd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    if virtual == PurePosixPath("/"):
        raise Refused("550", "Remove directory operation failed.")
    s.check(virtual, write=True)
    if real.is_symlink() or not real.is_dir():
        raise Refused("550", "Remove directory operation failed: not a directory.")
    real.rmdir()
    s.reply("250", "Remove directory operation successful.")


async def cmd_dele(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if real.is_dir() and not real.is_symlink():
        raise Refused("550", "Delete operation failed: is a directory.")
    real.unlink()
    s.reply("250", "Delete operation successful.")


async def cmd_rnfr(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if virtual == PurePosixPath("/") or not (real.exists() or real.is_symlink()):
        raise Refused("550", "RNFR command failed.")
    s.rename_from = (real, virtual)
    s.reply("350", "Ready for RNTO.")


async def cmd_rnto(s: FtpSession, arg: str) -> None:
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


async def cmd_size(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.is_file():
        raise Refused("550", "Could not get file size.")
    s.reply("213", str(real.stat().st_size))


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
    real, virtual = s.resolve(list_arg(arg))
    s.check(virtual, read=True)
    if not real.exists():
        raise Refused("550", "No such file or directory.")
    s.needs_private_data()
    lines = make(real)

    async def work(sock: socket.socket) -> None:
        await _send_lines(s, lines, sock)

    s.start_transfer(work)


async def cmd_list(s: FtpSession, arg: str) -> None:
    await _listing_command(s, arg, lambda real: listing(real, s.jail(), long=True))


async def cmd_nlst(s: FtpSession, arg: str) -> None:
    await _listing_command(s, arg, lambda real: listing(real, s.jail(), long=False))


async def cmd_mlsd(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.is_dir():
        raise Refused("501", "MLSD needs a directory.")

    def make(real: Path) -> list[str]:
        lines = []
        for path in sorted(real.iterdir(), key=lambda p: p.name):
            if path.name.startswith(TEMP_PREFIX):
                continue
            try:
                st = stat_in_jail(path, s.jail())
            except OSError:
                continue
            lines.append(f"{_facts(s, path, virtual / path.name, st)} {path.name}")
        return lines

    await _listing_command(s, arg, make)
