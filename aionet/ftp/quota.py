"""FTP quotas that hold across a user's concurrent sessions and uploads.

A quota bounds the bytes under one home. Usage is **on disk + reserved**:

* *on disk*: the files under the home (one walk, off the loop), cached while any upload into
  that home is in flight and kept exact by the uploads themselves (each commit adds what it
  grew the home by); the cache is dropped when the home has no upload left, so the next upload
  walks again and sees whatever changed meanwhile (DELE, files put there by other means). While
  it is cached, a DELE is not subtracted: usage can only be over-estimated, never under;
* *reserved*: what the uploads in flight have written beyond the file they replace. An upload
  reserves as its data arrives (``Reservation.grow``: a few integer operations per chunk, no
  lock: everything runs on the loop); the write that would take usage over the quota fails the
  upload (``552``), and its reservation is released **at once**, so concurrent uploads of the
  same user see the room it frees in the same loop iteration.

Replacing a file counts only the difference: an upload is *credited* the size of the file it
replaces (REST + STOR and APPE keep a prefix of it, so their credit is also the whole old file).
At the commit, the credit is checked against the file actually replaced (another session may
have deleted or replaced it meanwhile), and the upload fails with ``552`` if the real growth
does not fit.

The ledger is keyed by the home's real path (two names with one home share it, as do the
anonymous names). One ledger serves a whole process (every FTP listener, and the old and new
handlers during a reload); separate worker processes (``--workers N``) do not see each other's
reservations.

Resource handling: every ``Reservation`` must be released (``release()``, idempotent) however
its upload ends; ``commit()`` releases it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

from .jail import Refused

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["QUOTAS", "TEMP_PREFIX", "QuotaExceeded", "QuotaLedger", "Reservation", "usage"]

#: Uploads are written to a temporary file beside the target, renamed into place when complete.
TEMP_PREFIX = ".aionet-upload-"


class QuotaExceeded(Refused):
    """``552``: the upload does not fit in the user's quota."""

    def __init__(self) -> None:
        super().__init__("552", "Quota exceeded: transfer aborted.")


class _Home:
    """One home with uploads in flight: its bytes on disk and those reserved."""

    __slots__ = ("disk", "reserved", "uploads", "walk")

    def __init__(self) -> None:
        self.disk: int | None = None  # None until the first walk has finished
        self.reserved = 0
        self.uploads = 0  # reservations not yet released (including those still starting)
        self.walk: asyncio.Future[int] | None = None


class QuotaLedger:
    """Usage per home, shared by every session that can write into it.

    Args:
        usage: the bytes on disk under a home (runs in a thread); it must not count the
            temporary files of uploads in flight (they are counted as reserved).
    """

    def __init__(self, usage: Callable[[Path], int]) -> None:
        self._usage = usage
        self._homes: dict[Path, _Home] = {}

    def usage(self, root: Path) -> tuple[int | None, int]:
        """``(on disk or None when not cached, reserved)`` for ``root`` (for tests, STAT)."""
        home = self._homes.get(root)
        return (None, 0) if home is None else (home.disk, home.reserved)

    async def reserve(self, root: Path, quota: int, *, credit: int, start: int) -> Reservation:
        """Start an upload into ``root`` replacing a file of ``credit`` bytes, whose temporary
        file starts with ``start`` bytes (the prefix REST/APPE keep).

        Raises:
            QuotaExceeded: the home is already over the quota even counting the credit.
            OSError: the walk failed.
        """
        home = self._homes.get(root)
        if home is None:
            home = self._homes[root] = _Home()
        reservation = Reservation(self, root, home, quota, credit)
        try:
            if home.disk is None:
                if home.walk is None:
                    home.walk = asyncio.ensure_future(asyncio.to_thread(self._usage, root))
                    home.walk.add_done_callback(_retrieve)
                walk = home.walk
                try:
                    disk = await asyncio.shield(walk)
                except BaseException:
                    if walk.done() and home.walk is walk:
                        home.walk = None  # it failed: the next upload walks again
                    raise
                if home.disk is None:  # the first one back: later commits adjust it
                    home.disk = disk
                    home.walk = None
            if home.disk + home.reserved + start - credit > quota:
                raise QuotaExceeded
        except BaseException:
            reservation.release()
            raise
        return reservation

    def _forget(self, root: Path, home: _Home) -> None:
        if home.uploads == 0 and self._homes.get(root) is home:
            del self._homes[root]


def _retrieve(walk: asyncio.Future[int]) -> None:
    """Mark a walk's failure as seen: every upload waiting for it may have gone."""
    if not walk.cancelled():
        walk.exception()


class Reservation:
    """One upload's claim on its home's quota; see the module docstring."""

    __slots__ = ("_home", "_ledger", "_root", "covered", "credit", "quota")

    def __init__(self, ledger: QuotaLedger, root: Path, home: _Home, quota: int, credit: int):
        self._ledger = ledger
        self._root = root
        self._home: _Home | None = home
        self.quota = quota
        self.credit = credit
        self.covered = credit  # the file may grow to this size without asking the ledger
        home.uploads += 1

    @property
    def reserved(self) -> int:
        return self.covered - self.credit

    def grow(self, size: int) -> None:
        """The temporary file now holds ``size`` bytes (called for every chunk received).

        Raises:
            QuotaExceeded: it does not fit; the reservation is released.
        """
        extra = size - self.covered
        if extra > 0:
            home = self._home
            if (
                home is None
                or home.disk is None
                or (home.disk + home.reserved + extra > self.quota)
            ):
                self.release()
                raise QuotaExceeded
            home.reserved += extra
            self.covered = size

    def commit(self, final: int, replaced: int) -> None:
        """The upload of ``final`` bytes is about to replace a file of ``replaced`` bytes (0:
        none): account for it on disk and release the reservation.

        Raises:
            QuotaExceeded: the file replaced is smaller than the credit and the real growth
                does not fit (the reservation is released).
        """
        home = self._home
        if home is None or home.disk is None:
            raise QuotaExceeded
        growth = final - replaced
        reserved = self.reserved
        if growth > reserved and home.disk + home.reserved - reserved + growth > self.quota:
            self.release()
            raise QuotaExceeded
        home.disk += growth
        home.reserved -= reserved
        self.covered = self.credit
        self.release()

    def release(self) -> None:
        """Give back what is reserved (idempotent)."""
        home, self._home = self._home, None
        if home is None:
            return
        home.reserved -= self.covered - self.credit
        self.covered = self.credit
        home.uploads -= 1
        self._ledger._forget(self._root, home)


def usage(root: Path) -> int:
    """Bytes on disk under ``root``, but for the temporary files of uploads in flight (the
    quota ledger counts those as reserved)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(TEMP_PREFIX):
                continue
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


#: One ledger for the process: every FTP listener (and, during a reload, the old and the new
#: handler) may write into the same homes.
QUOTAS = QuotaLedger(usage)
