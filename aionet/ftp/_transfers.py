"""FTP data connections (PASV EPSV PORT EPRT, REST, ABOR) and downloads (RETR)."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

from ..core.passive import PassiveExhausted, PassiveSocket, same_ip
from .data import send_file
from .jail import Refused

if TYPE_CHECKING:
    from .session import FtpSession

# -- data connections -----------------------------------------------------------------------


def _open_passive(s: FtpSession) -> PassiveSocket:
    user = s.logged_in()
    s.drop_data()
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
    s.drop_data()
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
    if not arg.strip().isdigit():
        raise Refused("501", "REST needs a byte offset.")
    s.restart = int(arg.strip())
    s.reply("350", f"Restart position accepted ({s.restart}).")


async def cmd_abor(s: FtpSession, arg: str) -> None:
    task = s.transfer
    s.drop_data()
    if task is None or task.done():
        s.reply("225", "No transfer to ABOR.")
        return
    task.cancel()
    await asyncio.wait([task])
    s.reply("226", "ABOR successful.")


# -- transfers ------------------------------------------------------------------------------


async def cmd_retr(s: FtpSession, arg: str) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, read=True)
    if not real.is_file():
        raise Refused("550", "Failed to open file.")
    s.needs_private_data()
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

    s.start_transfer(work, lambda: os.close(fd))
