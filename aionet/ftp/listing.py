"""Directory listings for LIST/NLST/STAT: ``ls -l``-style lines, locale-free dates."""

from __future__ import annotations

import os
import stat as stat_mod
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .quota import TEMP_PREFIX

if TYPE_CHECKING:
    from .jail import Jail

__all__ = ["list_arg", "list_mtime", "listing", "stat_in_jail"]

#: ``ls -l`` shows the time of day for files changed within the last half year, else the year.
HALF_A_YEAR = 15_778_476  # seconds: 365.2425 days / 2
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def list_mtime(st_mtime: float, now: float) -> str:
    """``Mon dd HH:MM`` (recent) or ``Mon dd  YYYY``, in local time, English month names
    whatever the process locale (``%b`` would follow ``LC_TIME``)."""
    tm = time.localtime(st_mtime)
    month = _MONTHS[tm.tm_mon - 1]
    if now - HALF_A_YEAR < st_mtime <= now:
        return f"{month} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}"
    return f"{month} {tm.tm_mday:2d}  {tm.tm_year}"


def stat_in_jail(path: Path, jail: Jail) -> os.stat_result:
    """``stat`` following a symlink only when it stays inside the jail (else ``lstat``: the
    size and times of what lies outside are none of the client's business)."""
    if path.is_symlink() and not jail.contains(Path(os.path.realpath(path))):
        return path.lstat()
    return path.stat()


def listing(real: Path, jail: Jail, *, long: bool) -> list[str]:
    """``ls -l``-style lines (or bare names) for a directory, or for one file."""
    entries = sorted(real.iterdir(), key=lambda p: p.name) if real.is_dir() else [real]
    now = time.time()
    lines = []
    for path in entries:
        if path.name.startswith(TEMP_PREFIX):
            continue  # an upload in progress is not there yet
        try:
            st = stat_in_jail(path, jail)
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


def list_arg(arg: str) -> str:
    """Drop ``ls`` options clients send (``LIST -la``), keep the path."""
    words = arg.split(" ")
    while words and words[0].startswith("-"):
        words.pop(0)
    return " ".join(words)
