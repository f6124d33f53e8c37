"""FTP uploads (STOR, APPE): written to a temporary file, acknowledged (``226``) only once
renamed into place (fsynced first with ``fsync: true``), within the user's quota."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat as stat_mod
from typing import TYPE_CHECKING

from ..storage.durable import fsync_dir
from .jail import Refused
from .quota import TEMP_PREFIX

if TYPE_CHECKING:
    import socket
    from pathlib import Path

    from .quota import Reservation
    from .session import FtpSession


async def cmd_stor(s: FtpSession, arg: str) -> None:
    await _store(s, arg, append=False)


async def cmd_appe(s: FtpSession, arg: str) -> None:
    await _store(s, arg, append=True)


async def _store(s: FtpSession, arg: str, *, append: bool) -> None:
    real, virtual = s.resolve(arg)
    s.check(virtual, write=True)
    if not real.parent.is_dir():
        raise Refused("553", "Could not create file: no such directory.")
    if real.is_dir():
        raise Refused("553", "Could not create file: is a directory.")
    s.needs_private_data()
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

    s.start_transfer(work, upload.discard)


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
        name = f"{TEMP_PREFIX}{secrets.token_hex(6)}-{self.target.name}"[:255]
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
