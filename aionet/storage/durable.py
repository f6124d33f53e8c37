"""Durable writes, once for every store: the Maildir (SMTP, POP3), the users file, FTP uploads.

The one recipe: write a temporary file in the target's directory, fsync it, ``os.replace`` it
over the target, fsync the directory. A crash at any point leaves the old file or the new one,
never a part; after the directory fsync the new one survives a power cut too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["fsync_dir", "replace_synced", "write_synced"]


def fsync_dir(path: Path | str) -> None:
    """fsync a directory, so the entries created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(
    path: Path | str, data: bytes, mode: int = 0o600, *, mtime: float | None = None
) -> None:
    """Create ``path`` (it must not exist) with ``data`` and fsync it; on any failure the
    partial file is removed. ``mtime`` sets its modification time first (an IMAP APPEND's
    internal date), so the fsync covers it.

    Raises:
        OSError: ``path`` exists or could not be written (nothing is left behind).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def replace_synced(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a same-directory temporary file,
    fsync, ``os.replace``, fsync of the directory.

    Raises:
        OSError: the file could not be written; ``path`` is left as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    write_synced(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
