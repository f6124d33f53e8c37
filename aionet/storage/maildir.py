"""The durable Maildir store shared by ``smtp`` (delivery) and ``pop3`` (reading, expunging).

Layout: one Maildir per local mailbox under ``data_dir/mail/<domain>/<user>/`` with ``tmp/``,
``new/`` and ``cur/``; Maildir++ folders are ``.<Name>/`` subdirectories of it, each a Maildir
of its own. Messages relayed for authenticated ``relay`` users wait in ``data_dir/mail/.outbound``.

Durability rules (a message acknowledged with ``250`` survives ``kill -9`` and power loss):

* delivery writes ``tmp/<unique>``, fsyncs the file, renames it into ``new/`` and fsyncs
  ``new/`` — only then does ``deliver()`` return;
* a multi-recipient delivery is all or nothing: every tmp file is written and fsynced first,
  then all are renamed; if any step fails, the renamed ones are unlinked again and the error is
  raised, so no recipient sees a message the sender was told failed;
* expunge (POP3's UPDATE state) is atomic through a small journal: the names to delete are
  written to ``aionet-expunge`` (tmp, fsync, rename) before any unlink, and a journal left by a
  crash is replayed when the mailbox is next opened;
* ``cleanup_tmp()`` (run at start) removes ``tmp/`` files whose writer process is gone, and any
  older than 36 hours — the leftovers of deliveries that were never acknowledged.

Names follow the Maildir spec: ``<secs>.M<usecs>P<pid>Q<counter>R<random>.<host>``; flags live
in ``cur/`` names after ``:2,`` (``S`` seen, ``R`` replied, ``F`` flagged, ``T`` trashed,
``D`` draft). Per mailbox, ``aionet-uidlist`` records UIDVALIDITY, the next UID and each unique
name's UID (like Dovecot's ``dovecot-uidlist``): UIDs are assigned in delivery order when a
reader syncs the mailbox, never reused, and written atomically under an ``flock``. IMAP's fields
(modseqs, sizes, internal dates, last-seen flags, keywords) live in the same files; their one
implementation is ``aionet.storage.index``, which ``Maildir.sync()`` (POP3) also goes through,
so POP3 and IMAP never disagree about a UID or drop each other's fields.

Everything here blocks (file I/O, fsync): async callers use ``MailStore``'s coroutine methods,
which run the work on a thread pool so a slow fsync never stalls other sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import secrets
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .durable import DirSync, fsync_dir, replace_synced, write_synced

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

__all__ = [
    "OUTBOUND",
    "DeliveryError",
    "MailStore",
    "MailboxBusy",
    "Maildir",
    "MaildirMessage",
    "UidList",
    "unique_name",
]

T = TypeVar("T")
OUTBOUND = ".outbound"
UIDLIST = "aionet-uidlist"
EXPUNGE_JOURNAL = "aionet-expunge"
LOCK_FILE = "aionet-lock"
_SUBDIRS = ("tmp", "new", "cur")
_counter = itertools.count(1)
#: tmp/ files older than this are removed whoever wrote them (the Maildir spec's 36 hours).
STALE_TMP_AFTER = 36 * 3600.0
_host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


class DeliveryError(OSError):
    """A delivery failed and left nothing visible; ``storage_full`` picks 452 over 451."""

    def __init__(self, reason: str, *, storage_full: bool) -> None:
        super().__init__(reason)
        self.storage_full = storage_full


class MailboxBusy(Exception):
    """Another session holds the mailbox lock (POP3 answers ``-ERR [IN-USE]``)."""


_random = random.Random(secrets.token_bytes(16))


def unique_name() -> str:
    """A Maildir unique name: time, microseconds, pid, a process counter, randomness, host."""
    now = time.time()
    secs = int(now)
    usecs = int((now - secs) * 1_000_000)
    # Uniqueness comes from time, pid and the counter; R only guards against a pid reused
    # within the same microsecond after a crash, so a seeded PRNG does (os.urandom per
    # delivery was a tenth of the SMTP path's CPU on this VM).
    rand = _random.getrandbits(32)
    return f"{secs}.M{usecs}P{os.getpid()}Q{next(_counter)}R{rand:08x}.{_host}"


def base_name(filename: str) -> str:
    """The unique part of a Maildir file name (before ``:2,`` flags)."""
    return filename.split(":", 1)[0]


def flags_of(filename: str) -> str:
    _, sep, info = filename.partition(":2,")
    return info if sep else ""


@dataclass(frozen=True, slots=True)
class MaildirMessage:
    """One message as a reader sees it."""

    uid: int
    unique: str  # the unique name (stable: POP3's UIDL)
    path: Path
    size: int
    flags: str


@dataclass
class UidList:
    """A read-only view of ``aionet-uidlist``: UIDVALIDITY, next UID and each unique's UID.

    Parses both the POP3-era format (``<uid> <unique>`` lines) and the IMAP index format
    (``aionet.storage._records``). ``render()`` writes the POP3-era format, which drops the IMAP
    fields: nothing in aionet writes the uidlist through it any more.
    """

    uidvalidity: int
    next_uid: int
    uids: dict[str, int]

    @classmethod
    def parse(cls, text: str) -> UidList:
        lines = text.splitlines()
        head = {part[0]: part[1:] for part in lines[0].split()} if lines else {}
        uids: dict[str, int] = {}
        indexed = "M" in head  # the IMAP format: "<uid> <modseq> <size> <date> <flags> <unique>"
        for line in lines[1:]:
            if indexed:
                fields = line.split(" ", 5)
                uid, name = fields[0], fields[5] if len(fields) == 6 else ""
            else:
                uid, _, name = line.partition(" ")
            if name:
                uids[name] = int(uid)
        next_uid = int(head.get("N", "1"))
        next_uid = max(next_uid, max(uids.values(), default=0) + 1)
        return cls(int(head.get("V", str(int(time.time())))), next_uid, uids)

    def render(self) -> str:
        body = "".join(f"{uid} {name}\n" for name, uid in self.uids.items())
        return f"V{self.uidvalidity} N{self.next_uid}\n{body}"


class Maildir:
    """One Maildir directory (a mailbox or a Maildir++ folder). All methods block."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self) -> None:
        for sub in _SUBDIRS:
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def folder(self, name: str) -> Maildir:
        """The Maildir++ folder ``name`` (``Sent``, ``Archive.2024``), a ``.name`` subdir."""
        if not name or "/" in name or name.startswith(".") or name in {"tmp", "new", "cur"}:
            raise ValueError(f"bad folder name {name!r}")
        return Maildir(self.path / f".{name}")

    def folders(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(
            p.name[1:]
            for p in self.path.iterdir()
            if p.name.startswith(".") and p.name != OUTBOUND and (p / "cur").is_dir()
        )

    # -- tmp housekeeping ----------------------------------------------------------------------

    def cleanup_tmp(self, stale_after: float = STALE_TMP_AFTER) -> int:
        """Remove ``tmp/`` leftovers; returns how many.

        A tmp file is a leftover when the process named in its unique name (``P<pid>``) is no
        longer alive (a crashed or killed writer: its delivery was never acknowledged), or when
        it is older than ``stale_after`` seconds (36 hours in the Maildir spec). Files of live
        writers — another worker delivering right now — are left alone.
        """
        tmp = self.path / "tmp"
        if not tmp.is_dir():
            return 0
        horizon = time.time() - stale_after
        removed = 0
        for entry in os.scandir(tmp):
            with contextlib.suppress(FileNotFoundError):
                pid = _writer_pid(entry.name)
                dead = pid is not None and pid != os.getpid() and not _alive(pid)
                if dead or entry.stat().st_mtime <= horizon:
                    os.unlink(entry.path)
                    removed += 1
        if removed:
            fsync_dir(tmp)
        return removed

    # -- reading -------------------------------------------------------------------------------

    def _scan(self) -> Iterator[tuple[str, Path, str]]:
        for sub in ("new", "cur"):
            folder = self.path / sub
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if entry.name.startswith("."):
                    continue
                yield base_name(entry.name), Path(entry.path), flags_of(entry.name)

    @contextlib.contextmanager
    def _locked(self, name: str, *, blocking: bool = True) -> Iterator[int]:
        fd = os.open(self.path / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            fcntl.flock(fd, flags)
            yield fd
        finally:
            os.close(fd)

    def index_lock(self) -> contextlib.AbstractContextManager[int]:
        """The ``flock`` every writer of the uidlist, its log and the keywords holds (blocking).

        Not re-entrant: a thread holding it must not take it again through another object.
        """
        return self._locked(UIDLIST + ".lock")

    def sync(self) -> list[MaildirMessage]:
        """Every message, oldest first, with UIDs (new ones assigned and recorded durably).

        Also finishes an expunge a crash interrupted. A thin use of the IMAP index
        (``aionet.storage.index.MailboxIndex``): IMAP's modseqs and flags survive it.
        """
        from ._mailbox import MailboxIndex  # the index builds on this module

        self.create()
        snapshot = MailboxIndex(self).sync()
        return [
            MaildirMessage(m.uid, m.unique, m.path, m.size, flags_of(m.path.name))
            for m in snapshot.messages
        ]

    def uidvalidity(self) -> int:
        from ._mailbox import MailboxIndex

        self.create()
        return MailboxIndex(self).sync().uidvalidity

    def set_flags(self, message: MaildirMessage, flags: str) -> Path:
        """Move ``message`` into ``cur/`` with ``flags`` (sorted, as the spec asks)."""
        target = self.path / "cur" / f"{message.unique}:2,{''.join(sorted(set(flags)))}"
        os.rename(message.path, target)
        fsync_dir(self.path / "cur")
        if message.path.parent != target.parent:
            fsync_dir(message.path.parent)
        return target

    # -- expunge -------------------------------------------------------------------------------

    def expunge(self, uniques: Iterable[str]) -> int:
        """Delete these messages all together (journal first, so a crash cannot split them).

        Holds the index lock, so an IMAP sync never replays a journal this is still writing.
        """
        names = sorted(set(uniques))
        if not names:
            return 0
        with self.index_lock():
            journal = "".join(f"{n}\n" for n in names).encode()
            replace_synced(self.path / EXPUNGE_JOURNAL, journal)
            return self._replay_expunge()

    def _replay_expunge(self) -> int:
        """Finish the journal's expunge (caller holds the index lock); how many files went."""
        journal = self.path / EXPUNGE_JOURNAL
        try:
            wanted = set(journal.read_text().split())
        except FileNotFoundError:
            return 0
        removed = 0
        for name, path, _ in list(self._scan()):
            if name in wanted:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        for sub in ("new", "cur"):
            fsync_dir(self.path / sub)
        with contextlib.suppress(FileNotFoundError):
            journal.unlink()
        fsync_dir(self.path)
        return removed

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """The mailbox's session lock (POP3): raises ``MailboxBusy`` if another holds it.

        ``flock`` locks belong to the open file, so this excludes other sessions of this
        process as well as other workers.
        """
        self.create()
        try:
            with self._locked(LOCK_FILE, blocking=False):
                yield
        except BlockingIOError:
            raise MailboxBusy(str(self.path)) from None


def _writer_pid(name: str) -> int | None:
    """The pid in a unique name ``secs.M<usecs>P<pid>Q...`` (None when it has none)."""
    _, sep, rest = name.partition("P")
    digits = rest.split("Q", 1)[0] if sep else ""
    return int(digits) if digits.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delivery_key(name: str) -> tuple[int, int, str]:
    """Order by the delivery time encoded in the unique name (``secs.M<usecs>...``)."""
    secs, _, rest = name.partition(".")
    usecs = 0
    if rest.startswith("M"):
        digits = rest[1:].split("P", 1)[0]
        usecs = int(digits) if digits.isdigit() else 0
    return (int(secs) if secs.isdigit() else 0, usecs, name)


#: The ``new/`` directories' fsyncs, shared by deliveries that reach them at the same time
#: (each still returns only after an fsync that began after its rename: its 250 waits for it).
NEW_DIRS = DirSync()


def deliver_many(targets: Sequence[Maildir], data: bytes) -> list[str]:
    """Deliver ``data`` to every Maildir in ``targets``, all or nothing; the unique names.

    Raises:
        DeliveryError: nothing was delivered (``storage_full`` for ENOSPC/EDQUOT).
    """
    written: list[tuple[Maildir, Path, str]] = []
    renamed: list[Path] = []
    try:
        for target in targets:
            name = unique_name()
            tmp = target.path / "tmp" / name
            try:
                write_synced(tmp, data)
            except FileNotFoundError:  # a new mailbox: create it (kept off the common path)
                target.create()
                write_synced(tmp, data)
            written.append((target, tmp, name))
        for target, tmp, name in written:
            final = target.path / "new" / name
            os.rename(tmp, final)
            renamed.append(final)
        for directory in {t.path for t, _, _ in written}:
            NEW_DIRS.sync(directory / "new")  # group commit with concurrent deliveries
    except OSError as exc:
        for path in renamed:
            with contextlib.suppress(OSError):
                path.unlink()
        for _, tmp, _ in written:
            with contextlib.suppress(OSError):
                tmp.unlink()
        full = exc.errno in {28, 122}  # ENOSPC, EDQUOT
        raise DeliveryError(f"{exc.strerror or exc}", storage_full=full) from exc
    return [name for _, _, name in written]


class MailStore:
    """All mailboxes under ``data_dir/mail``, with async wrappers that run on a thread pool.

    Resource handling: owns a small thread pool; call ``close()`` when done.
    """

    def __init__(self, root: Path, *, max_workers: int = 8) -> None:
        self.root = root
        self._pool: ThreadPoolExecutor | None = None
        self._max_workers = max_workers

    def mailbox(self, domain: str, user: str) -> Maildir:
        for part in (domain, user):
            if not part or "/" in part or part.startswith(".") or "\x00" in part:
                raise ValueError(f"bad mailbox name {domain!r}/{user!r}")
        return Maildir(self.root / domain.lower() / user)

    def outbound(self) -> Maildir:
        return Maildir(self.root / OUTBOUND)

    def all_maildirs(self) -> Iterator[Maildir]:
        if not self.root.is_dir():
            return
        yield self.outbound()
        for domain in self.root.iterdir():
            if domain.name.startswith(".") or not domain.is_dir():
                continue
            for user in domain.iterdir():
                if user.is_dir():
                    box = Maildir(user)
                    yield box
                    yield from (box.folder(f) for f in box.folders())

    def cleanup_tmp(self, stale_after: float = STALE_TMP_AFTER) -> int:
        """``Maildir.cleanup_tmp`` on every Maildir of the store (run at start)."""
        return sum(box.cleanup_tmp(stale_after) for box in self.all_maildirs())

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on the store's thread pool (blocking file work off the loop)."""
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="aionet-mail")
        return await loop.run_in_executor(self._pool, func, *args)

    async def deliver(self, targets: Sequence[Maildir], data: bytes) -> list[str]:
        """``deliver_many`` off the event loop."""
        return await self.run(deliver_many, targets, data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
