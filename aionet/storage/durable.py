"""Durable writes, once for every store: the Maildir (SMTP, POP3), the users file, FTP uploads.

The one recipe: write a temporary file in the target's directory, fsync it, ``os.replace`` it
over the target, fsync the directory. A crash at any point leaves the old file or the new one,
never a part; after the directory fsync the new one survives a power cut too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["DirSync", "fsync_dir", "replace_synced", "write_synced"]


def fsync_dir(path: Path | str) -> None:
    """fsync a directory, so the entries created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirSync:
    """Group commit for directory fsyncs: threads that changed a directory (created or renamed
    an entry) and now need it durable share one ``fsync`` of it.

    ``sync(path)`` returns only once an fsync of ``path`` that *began after the call* has
    finished — so it covers the caller's change, made before the call. Callers that arrive while
    one fsync runs wait for it to end and then share the next; one fsync covers all of them.
    A failed fsync raises in every caller it was to cover (each must treat its change as not
    durable), and the next caller starts afresh.
    """

    def __init__(self, fsync: Callable[[Path | str], None] = fsync_dir) -> None:
        self._fsync = fsync
        self._lock = threading.Lock()
        self._dirs: dict[str, _DirState] = {}
        #: fsyncs done and callers served, for the tests and the benchmark.
        self.fsyncs = self.calls = 0

    def sync(self, path: Path | str) -> None:
        """Make the entries of ``path`` changed before this call durable.

        Raises:
            OSError: the fsync that was to cover this call failed.
        """
        with self._lock:
            state = self._dirs.setdefault(str(path), _DirState())
            self.calls += 1
        with state.cond:
            state.requested += 1
            ticket = state.requested
            while state.done < ticket:
                if state.running:
                    state.cond.wait()
                    continue
                error = state.errors.pop(ticket, None)
                if error is not None:
                    raise error
                state.running = True
                covers = state.requested  # everyone registered so far changed the directory first
                state.cond.release()
                try:
                    self._fsync(path)
                    failure: OSError | None = None
                except OSError as exc:
                    failure = exc
                finally:
                    state.cond.acquire()
                    state.running = False
                    with self._lock:
                        self.fsyncs += 1
                if failure is not None:
                    for waiting in range(state.done + 1, covers + 1):
                        if waiting != ticket:
                            state.errors[waiting] = failure
                    state.done = covers
                    state.cond.notify_all()
                    raise failure
                state.done = covers
                state.cond.notify_all()
            error = state.errors.pop(ticket, None)
            if error is not None:
                raise error


class _DirState:
    __slots__ = ("cond", "done", "errors", "requested", "running")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.requested = 0  # tickets handed out
        self.done = 0  # tickets covered by a finished fsync
        self.running = False
        self.errors: dict[int, OSError] = {}  # tickets whose covering fsync failed


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
