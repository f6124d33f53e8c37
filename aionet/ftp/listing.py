"""Directory listings for LIST/NLST: ``ls -l``-style lines, locale-free."""

from __future__ import annotations

import time

__all__ = ["list_mtime"]

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
