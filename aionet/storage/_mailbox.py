"""``MailboxIndex``: one Maildir (INBOX or a folder) as IMAP sees it. Every method blocks.

Durability follows ``maildir.py``: a message file is fsynced before it is renamed into ``cur/``
and ``cur/`` is fsynced before the index records the message; flag renames are fsynced, then
recorded; an expunge writes its journal before the first unlink. The index files are written
under the uidlist ``flock`` (see ``_core.py``); two mailboxes' locks are never held together,
so COPY and MOVE in opposite directions cannot deadlock.

A flag rename goes from the file name the index last saw: when that name no longer exists
someone else changed the message (another process, a Maildir tool), and the directory is
listed again — recording that change with its own modseq — before the STORE is applied to
the message's current flags. So a STORE never overwrites a change it has not seen.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ._core import Snapshot, Stamp, StoreResult, core_for
from ._flags import apply_mode, parse_flags, sorted_letters
from ._records import Entry
from .durable import fsync_dir, replace_synced, write_synced
from .maildir import unique_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._core import Core
    from ._flags import Mode
    from .maildir import Maildir

__all__ = ["MailboxIndex"]

#: ``os.link`` failures after which COPY falls back to copying the bytes.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


@dataclass(frozen=True, slots=True)
class _Source:
    """A message on its way out of COPY/MOVE: where it is and what it carries."""

    uid: int
    unique: str
    path: str
    root: str
    size: int
    internal_date: float
    system_letters: str  # capital letters (system flags and others such as P), kept as they are
    keywords: tuple[str, ...]


class MailboxIndex:
    """One Maildir (INBOX or a folder) as IMAP sees it. Every method blocks.

    Thread-safe; every ``MailboxIndex`` of one path in a process shares one cached state.

    Raises (any method):
        NoSuchMailbox: the Maildir is gone (deleted or renamed by another session).
        OSError: the disk failed; nothing half-done is left visible.
    """

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir
        self._core: Core = core_for(maildir)

    def __repr__(self) -> str:
        return f"MailboxIndex({str(self.maildir.path)!r})"

    # -- reading -------------------------------------------------------------------------------

    def sync(self, *, claim_recent: bool = False) -> Snapshot:
        """The mailbox now: new messages get UIDs, vanished ones go, renamed ones (flags
        changed by anyone) get a new modseq; the index is written only when something changed.

        ``claim_recent`` (a read-write SELECT): messages still in ``new/`` move to ``cur/`` and
        come back in ``recent``; nobody else will see them as recent. Without it ``recent``
        lists the messages still in ``new/`` (what EXAMINE and STATUS RECENT report).
        Also finishes an expunge that a crash interrupted.
        """
        core = self._core
        with core.mutex:
            with contextlib.suppress(FileNotFoundError):  # gone: the locked path says so
                cached = core.cached_snapshot(claim_recent)
                if cached is not None:
                    return cached
            with core.locked():
                core.ensure_listing()
                claimed = core.claim_new() if claim_recent else None
                core.commit()
                snapshot = core.make_snapshot(core.stamp())
        if claimed is not None:
            return replace(snapshot, recent=frozenset(claimed))
        return snapshot

    def status(self) -> Snapshot:
        """STATUS: a sync that claims nothing."""
        return self.sync()

    def changed(self, stamp: object, probe: object = None) -> bool:
        """True when something may have changed since the snapshot with ``stamp``: five
        ``stat()`` calls, no listing, no lock. False only when nothing did. ``probe``: what
        ``probe()`` returned just before, to test many stamps of this mailbox with one."""
        if not isinstance(stamp, Stamp) or stamp.dirty:
            return True
        try:
            return (self._core.probe() if probe is None else probe) != stamp.keys
        except OSError:
            return True

    def probe(self) -> object:
        """What ``changed()`` compares a stamp with, taken now (the five ``stat()`` calls).

        Raises:
            OSError: the mailbox could not be looked at (``changed`` says True then).
        """
        return self._core.probe()

    def read(self, uid: int) -> bytes | None:
        """The message's bytes, following a rename by someone else; None once it is gone.

        Not in the contract: a convenience for FETCH (a snapshot's ``path`` may be stale)."""
        core = self._core
        for attempt in (0, 1):
            with core.mutex:
                if attempt:
                    with core.locked():
                        core.ensure_listing(force=True)
                entry = core.state.by_uid.get(uid) if core.state is not None else None
                path = core.path_of(entry.unique) if entry and entry.unique in core.files else None
            if path is not None:
                with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
                    return f.read()
        return None

    # -- flags ---------------------------------------------------------------------------------

    def store(
        self,
        uids: Iterable[int],
        mode: Mode,
        flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> StoreResult:
        """Set, add or remove flags; each message whose flags really change gets a new modseq.

        Unknown or vanished UIDs are skipped; with ``unchanged_since``, messages whose modseq
        is above it are left alone and listed in ``modified`` (RFC 7162). ``\\Recent`` is never
        stored. The index is written once per call.

        Raises:
            KeywordLimit: a new keyword beyond the mailbox's 26 (nothing was changed).
            ValueError: ``mode`` or a flag is not valid.
        """
        if mode not in ("set", "add", "remove"):
            raise ValueError(f"bad store mode {mode!r}")
        system, keywords = parse_flags(flags)
        wanted_uids = sorted(set(uids))
        core = self._core
        changed: list[Entry] = []
        modified: list[int] = []
        with core.mutex, core.locked():
            if core.listed is None:
                core.ensure_listing()
            allocate = mode != "remove"
            wanted = sorted_letters(system + core.keywords.letters(keywords, allocate=allocate))
            known = core.keywords.known()
            moved: set[str] = set()
            relisted = False
            for uid in wanted_uids:
                for _ in (0, 1):
                    assert core.state is not None
                    entry = core.state.by_uid.get(uid)
                    if entry is None:
                        break
                    if unchanged_since is not None and entry.modseq > unchanged_since:
                        modified.append(uid)
                        break
                    letters = apply_mode(entry.letters or "", mode, wanted, known)
                    if letters == entry.letters:
                        break
                    source_dir = self._rename(entry, letters)
                    if source_dir is not None:
                        moved.add(source_dir)
                        changed.append(entry)
                        break
                    if relisted:  # gone since the listing this call already made
                        break
                    core.ensure_listing(force=True)  # renamed or removed by someone else
                    relisted = True
            if moved:
                for directory in sorted(moved | {core.cur_dir}):
                    fsync_dir(directory)
            core.commit()
            messages = tuple(m for m in map(core.message, changed) if m is not None)
        return StoreResult(messages, tuple(modified))

    def _rename(self, entry: Entry, letters: str) -> str | None:
        """Rename the message to carry ``letters``; the directory it left, None if it was not
        where the index saw it."""
        core = self._core
        unique = entry.unique
        if unique not in core.files:
            return None
        source = core.path_of(unique)
        target = f"{unique}:2,{letters}"
        try:
            os.rename(source, os.path.join(core.cur_dir, target))
        except FileNotFoundError:
            return None
        core.files[unique] = target
        core.in_new.discard(unique)
        core.set_letters(entry, letters)
        return os.path.dirname(source)

    # -- adding --------------------------------------------------------------------------------

    def append(
        self, data: bytes, flags: Iterable[str] = (), internal_date: float | None = None
    ) -> int:
        """Store a message durably in ``cur/`` with ``flags``; its UID (APPENDUID).

        The file is written in ``tmp/`` with its mtime set to ``internal_date`` (now when
        None), fsynced, renamed into ``cur/``, ``cur/`` fsynced, then indexed.

        Raises:
            KeywordLimit: a new keyword beyond the mailbox's 26 (nothing was stored).
            ValueError: a flag is not valid.
        """
        system, keywords = parse_flags(flags)
        core = self._core
        mtime = time.time() if internal_date is None else float(internal_date)
        unique = unique_name()
        with core.mutex:
            core.ensure_dirs()
        tmp = os.path.join(core.root, "tmp", unique)
        write_synced(tmp, data, mtime=mtime)
        final: str | None = None
        try:
            with core.mutex, core.locked():
                letters = sorted_letters(system + core.keywords.letters(keywords, allocate=True))
                name = f"{unique}:2,{letters}"
                final = os.path.join(core.cur_dir, name)
                os.rename(tmp, final)
                fsync_dir(core.cur_dir)
                core.files[unique] = name
                entry = Entry(0, unique, 0, len(data), mtime, letters)
                core.add_entry(entry)
                core.commit()
                return entry.uid
        except BaseException:
            for path in (tmp, final):
                if path is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            raise

    def copy_to(self, uids: Iterable[int], target: MailboxIndex) -> list[tuple[int, int]]:
        """Copy messages into ``target`` with their flags and internal dates (hard links when
        the filesystem allows, else copies, fsynced); durable before it returns.

        Returns ``(source uid, new uid)`` pairs in source-UID order (COPYUID); messages that
        vanished meanwhile are left out.

        Raises:
            KeywordLimit: ``target`` cannot take one of the keywords (nothing was copied).
        """
        core = self._core
        sources: list[_Source] = []
        with core.mutex, core.locked() as state:
            if core.listed is None:
                core.ensure_listing()
            for uid in sorted(set(uids)):
                entry = state.by_uid.get(uid)
                if entry is None or entry.unique not in core.files:
                    continue
                letters = entry.letters or ""
                flags = core.keywords.flags(letters)
                sources.append(
                    _Source(
                        uid,
                        entry.unique,
                        core.path_of(entry.unique),
                        core.root,
                        entry.size,
                        entry.idate,
                        "".join(c for c in letters if c.isupper()),
                        tuple(sorted(f for f in flags if not f.startswith("\\"))),
                    )
                )
        # The source's lock is released before the target's is taken (no lock-order deadlock).
        return target._receive(sources) if sources else []

    def _receive(self, sources: list[_Source]) -> list[tuple[int, int]]:
        core = self._core
        with core.mutex:
            core.ensure_dirs()
        made: list[tuple[_Source, str, str, str]] = []  # source, unique, letters, path
        pairs: list[tuple[int, int]] = []
        try:
            with core.mutex, core.locked():
                keywords = core.keywords
                plans = [
                    (
                        s,
                        sorted_letters(
                            s.system_letters + keywords.letters(s.keywords, allocate=True)
                        ),
                    )
                    for s in sources
                ]
                for source, letters in plans:
                    unique = unique_name()
                    name = f"{unique}:2,{letters}"
                    path = os.path.join(core.cur_dir, name)
                    if _materialize(source, path, core.root):
                        made.append((source, unique, letters, path))
                if made:
                    fsync_dir(core.cur_dir)
                for source, unique, letters, path in made:
                    core.files[unique] = os.path.basename(path)
                    entry = Entry(0, unique, 0, source.size, source.internal_date, letters)
                    core.add_entry(entry)
                    pairs.append((source.uid, entry.uid))
                core.commit()
        except BaseException:
            for *_, path in made:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        return pairs

    # -- removing ------------------------------------------------------------------------------

    def move_to(self, uids: Iterable[int], target: MailboxIndex) -> list[tuple[int, int]]:
        """``copy_to``, then expunge the sources that were copied. A crash between the two
        leaves a message in both mailboxes, never in neither."""
        pairs = self.copy_to(uids, target)
        if pairs:
            self.expunge([source for source, _ in pairs])
        return pairs

    def expunge(self, uids: Iterable[int]) -> list[int]:
        """Remove these messages, all or none (the journal is written before the first
        unlink and replayed by the next sync after a crash); the UIDs removed, ascending.

        One message needs no journal: its one unlink is atomic already.
        """
        core = self._core
        wanted = sorted(set(uids))
        with core.mutex, core.locked() as state:
            if core.listed is None:
                core.ensure_listing()
            entries = [state.by_uid[uid] for uid in wanted if uid in state.by_uid]
            if not entries:
                return []
            journal = Path(core.journal_path)
            if len(entries) > 1:
                replace_synced(journal, "".join(f"{e.unique}\n" for e in entries).encode())
            touched: set[str] = set()
            for entry in entries:
                path = core.path_of(entry.unique) if entry.unique in core.files else None
                try:
                    if path is None:
                        raise FileNotFoundError(entry.unique)
                    os.unlink(path)
                except FileNotFoundError:  # renamed meanwhile by someone else
                    path = _find(core.root, entry.unique)
                    if path is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)
                if path is not None:
                    touched.add(os.path.dirname(path))
                core.drop_entry(entry)
            for directory in sorted(touched):
                fsync_dir(directory)
            core.commit()
            if len(entries) > 1:
                # Not fsynced: should the journal come back after a crash, replaying it
                # finds nothing left to remove.
                journal.unlink()
        return [entry.uid for entry in entries]


def _find(root: str, unique: str) -> str | None:
    """Where the message ``unique`` is now (an unlocked look; None when it is gone)."""
    for sub in ("new", "cur"):
        folder = os.path.join(root, sub)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(folder):
                if name.partition(":")[0] == unique:
                    return os.path.join(folder, name)
    return None


def _materialize(source: _Source, path: str, root: str) -> bool:
    """Put a copy of ``source`` at ``path``: a hard link, or a fsynced copy with the same
    mtime. False when the source is gone."""
    current: str | None = source.path
    for _ in (0, 1):
        if current is None:
            return False
        try:
            os.link(current, path)
            return True
        except FileNotFoundError:
            current = _find(source.root, source.unique)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            try:
                with open(current, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                current = _find(source.root, source.unique)
                continue
            tmp = os.path.join(root, "tmp", unique_name())
            write_synced(tmp, data, mtime=source.internal_date)
            try:
                os.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return True
    return False
