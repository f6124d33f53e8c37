"""``Account``: one user's mailboxes — INBOX is the user's Maildir, folders are Maildir++.

Files in the user's Maildir besides the Maildir++ folders (``_names.py`` maps the names):

* ``aionet-subscriptions`` — one subscribed name per line (UTF-8), replaced with
  ``replace_synced``. Subscribing to a name that does not exist is allowed (RFC 3501).
* ``aionet-special-use`` — ``<attribute> <name>`` per line: the uses given at CREATE
  (``USE (\\Archive)``) to folders other than the fixed ``Sent Drafts Trash Junk``.
* ``aionet-uidvalidity`` — the last UIDVALIDITY given to a new folder, so a folder deleted and
  created again within one second still gets a new one.
* ``aionet-account.lock`` — the ``flock`` that serialises CREATE, DELETE, RENAME and the two
  files above between sessions and worker processes. Taken before any mailbox's index lock,
  never after one.

A deleted folder is first renamed to ``aionet-deleted.<token>`` (atomic: it is gone at once,
whole), then removed; a crash in between leaves that directory, swept at the next listing.
A new folder is built as ``aionet-creating.<pid>.<token>`` and renamed into place whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import (
    MailboxExists,
    MailboxHasChildren,
    MailboxNameError,
    NoSuchMailbox,
    UnsupportedSpecialUse,
)
from ._mailbox import MailboxIndex
from ._names import DELIMITER, INBOX, canonical, folder_dir, name_of_dir
from ._records import UIDLIST
from .durable import fsync_dir, replace_synced, write_synced
from .maildir import Maildir, _alive

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

if os.name == "posix":
    import fcntl

__all__ = ["Account", "MailboxEntry"]

SUBSCRIPTIONS = "aionet-subscriptions"
SPECIAL_USE_FILE = "aionet-special-use"
UIDVALIDITY_FILE = "aionet-uidvalidity"
ACCOUNT_LOCK = "aionet-account.lock"
_DELETED = "aionet-deleted."
_CREATING = "aionet-creating."
#: Uses a folder may be given at CREATE; ``\\All`` and ``\\Flagged`` are virtual, not offered.
_USES = {u.lower(): u for u in ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")}


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    """One LIST line: the name, its attributes, and whether it is subscribed."""

    name: str  # "INBOX", "Sent", "Archive/2024" (delimiter "/")
    attributes: frozenset[str]  # \HasChildren|\HasNoChildren, \Noselect, \Sent \Drafts ...
    subscribed: bool


def _is_folder(path: Path) -> bool:
    """A real directory (not a symlink) holding a Maildir."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and os.path.isdir(path / "cur")


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.decode("utf-8", "replace").split("\n") if line]


class Account:
    """One user's mailboxes: INBOX is the user's Maildir, folders are Maildir++ sub-folders.

    Every method blocks. Names are validated (``MailboxNameError``) before any file is touched.
    """

    DELIMITER = DELIMITER
    SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk"}

    def __init__(self, inbox: Maildir) -> None:
        self.inbox = inbox
        self.root = inbox.path

    # -- lookup --------------------------------------------------------------------------------

    def _path(self, name: str) -> Path | None:
        dirname = folder_dir(name)
        return None if dirname is None else self.root / dirname

    def index(self, name: str) -> MailboxIndex:
        """The mailbox ``name`` (INBOX is created on first use).

        Raises:
            MailboxNameError: the name is not acceptable.
            NoSuchMailbox: no such folder (a ``\\Noselect`` parent included).
        """
        path = self._path(name)
        if path is None:
            self.inbox.create()
            return MailboxIndex(self.inbox)
        if not _is_folder(path):
            raise NoSuchMailbox(f"no mailbox {canonical(name)!r}")
        return MailboxIndex(Maildir(path))

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a selectable mailbox (INBOX always is).

        Raises:
            MailboxNameError: the name is not acceptable.
        """
        path = self._path(name)
        return path is None or _is_folder(path)

    def _folders(self) -> set[str]:
        """The names of the folders on disk; sweeps what a crash left of DELETE and CREATE."""
        names: set[str] = set()
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return names
        for entry in entries:
            if entry.name.startswith((_DELETED, _CREATING)):
                self._sweep(entry.name)
                continue
            name = name_of_dir(entry.name)
            if (
                name is not None
                and entry.is_dir(follow_symlinks=False)
                and os.path.isdir(os.path.join(entry.path, "cur"))
            ):
                names.add(name)
        return names

    def _sweep(self, dirname: str) -> None:
        if dirname.startswith(_CREATING):
            pid = dirname[len(_CREATING) :].split(".", 1)[0]
            if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
                return  # being built right now
        shutil.rmtree(self.root / dirname, ignore_errors=True)

    def mailboxes(self) -> list[MailboxEntry]:
        """Every mailbox, INBOX first, then by name; parents that exist only as a prefix of
        other names are listed ``\\Noselect``."""
        folders = self._folders()
        parents: set[str] = set()
        for name in folders:
            levels = name.split(DELIMITER)
            parents.update(DELIMITER.join(levels[:i]) for i in range(1, len(levels)))
        uses = self._special_uses()
        subscribed = set(self.subscriptions())
        out = [MailboxEntry(INBOX, frozenset({"\\HasNoChildren"}), INBOX in subscribed)]
        for name in sorted(folders | parents):
            attributes = {"\\HasChildren" if name in parents else "\\HasNoChildren"}
            if name in folders:
                attributes |= uses.get(name, set())
            else:
                attributes.add("\\Noselect")
            out.append(MailboxEntry(name, frozenset(attributes), name in subscribed))
        return out

    def subscriptions(self) -> list[str]:
        """The subscribed names, existing or not (LSUB; not in the contract)."""
        return sorted(set(_read_lines(self.root / SUBSCRIPTIONS)))

    def _special_uses(self) -> dict[str, set[str]]:
        uses: dict[str, set[str]] = {name: {use} for name, use in self.SPECIAL_USE.items()}
        for line in _read_lines(self.root / SPECIAL_USE_FILE):
            use, _, name = line.partition(" ")
            if use.lower() in _USES and name:
                uses.setdefault(name, set()).add(_USES[use.lower()])
        return uses

    # -- changes -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.inbox.create()
        fd = os.open(self.root / ACCOUNT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, name: str, special_use: Iterable[str] = ()) -> None:
        """Create a folder (its parents stay implicit, ``\\Noselect`` until created).

        Raises:
            MailboxNameError: the name is not acceptable.
            UnsupportedSpecialUse: a use other than ``\\Archive \\Drafts \\Junk \\Sent \\Trash``.
            MailboxExists: it exists (INBOX always does).
        """
        canon = canonical(name)
        uses = []
        for use in special_use:
            if use.lower() not in _USES:
                raise UnsupportedSpecialUse(f"special use {use!r} is not supported")
            uses.append(_USES[use.lower()])
        if canon == INBOX:
            raise MailboxExists("INBOX always exists")
        with self._locked():
            self._create_locked(canon)
            extra = [u for u in uses if self.SPECIAL_USE.get(canon) != u]
            if extra:
                lines = _read_lines(self.root / SPECIAL_USE_FILE)
                lines += [f"{u} {canon}" for u in sorted(set(extra))]
                self._write_lines(SPECIAL_USE_FILE, lines)

    def _create_locked(self, canon: str) -> None:
        path = self._path(canon)
        assert path is not None
        if _is_folder(path):
            raise MailboxExists(f"mailbox {canon!r} exists")
        validity = self._next_uidvalidity()
        staging = self.root / f"{_CREATING}{os.getpid()}.{secrets.token_hex(6)}"
        try:
            staging.mkdir()
            for sub in ("tmp", "new", "cur"):
                (staging / sub).mkdir()
            write_synced(staging / "maildirfolder", b"")
            write_synced(staging / UIDLIST, f"V{validity} N1 M1\n".encode())
            fsync_dir(staging)
            os.rename(staging, path)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise MailboxExists(f"{canon!r}: something is in the way on disk") from exc
            raise
        fsync_dir(self.root)

    def _next_uidvalidity(self) -> int:
        path = self.root / UIDVALIDITY_FILE
        lines = _read_lines(path)
        last = int(lines[0]) if lines and lines[0].isdigit() else 0
        validity = max(int(time.time()), last + 1)
        replace_synced(path, f"{validity}\n".encode())
        return validity

    def _write_lines(self, filename: str, lines: Iterable[str]) -> None:
        data = "".join(f"{line}\n" for line in lines).encode("utf-8")
        replace_synced(self.root / filename, data)

    def delete(self, name: str) -> None:
        """Delete a folder and its messages; its children survive (the name becomes a
        ``\\Noselect`` parent, RFC 3501 6.3.4). Subscriptions are kept (RFC 3501 6.3.9).

        Raises:
            MailboxNameError: the name is not acceptable, or is INBOX.
            MailboxHasChildren: the name is only a ``\\Noselect`` parent.
            NoSuchMailbox: no such mailbox.
        """
        canon = canonical(name)
        if canon == INBOX:
            raise MailboxNameError("INBOX cannot be deleted")
        with self._locked():
            path = self._path(canon)
            assert path is not None
            if not _is_folder(path):
                if any(n.startswith(canon + DELIMITER) for n in self._folders()):
                    raise MailboxHasChildren(f"{canon!r} exists only as a parent")
                raise NoSuchMailbox(f"no mailbox {canon!r}")
            trash = self.root / f"{_DELETED}{secrets.token_hex(6)}"
            with Maildir(path).index_lock():  # not in the middle of someone's index write
                os.rename(path, trash)
            fsync_dir(self.root)
            self._rename_records(canon, None)
        shutil.rmtree(trash, ignore_errors=True)

    def rename(self, old: str, new: str) -> None:
        """Rename a folder and everything under it. Renaming INBOX moves its messages to a
        new folder ``new`` and leaves INBOX empty (RFC 3501 6.3.5). Subscriptions and special
        uses follow the names.

        Raises:
            MailboxNameError: a name is not acceptable, or ``new`` is under ``old``.
            MailboxExists: ``new`` (or a name a child would take) exists.
            NoSuchMailbox: ``old`` has neither a mailbox nor children.
        """
        old_c, new_c = canonical(old), canonical(new)
        if new_c in (INBOX, old_c):
            raise MailboxExists(f"mailbox {new_c!r} exists")
        if new_c.startswith(old_c + DELIMITER):
            raise MailboxNameError(f"cannot move {old_c!r} under itself")
        with self._locked():
            if old_c == INBOX:
                self._create_locked(new_c)
                source = MailboxIndex(self.inbox)
                target = self.index(new_c)
                uids = [m.uid for m in source.sync().messages]
                source.move_to(uids, target)
                return
            moving = [n for n in self._folders() if n == old_c or n.startswith(old_c + DELIMITER)]
            if not moving:
                raise NoSuchMailbox(f"no mailbox {old_c!r}")
            plan = []
            for name in sorted(moving):
                target_name = new_c + name[len(old_c) :]
                target_path = self._path(target_name)
                assert target_path is not None
                if os.path.lexists(target_path):
                    raise MailboxExists(f"mailbox {target_name!r} exists")
                source_path = self._path(name)
                assert source_path is not None
                plan.append((source_path, target_path))
            for source_path, target_path in plan:
                with Maildir(source_path).index_lock():
                    os.rename(source_path, target_path)
            fsync_dir(self.root)
            self._rename_records(old_c, new_c)

    def _rename_records(self, old: str, new: str | None) -> None:
        """Subscriptions and special uses follow a RENAME (``new``); a DELETE (``new`` None)
        drops the deleted folder's special use and keeps its subscription."""

        def moved(name: str) -> str:
            if new is not None and (name == old or name.startswith(old + DELIMITER)):
                return new + name[len(old) :]
            return name

        if new is not None:
            subs = _read_lines(self.root / SUBSCRIPTIONS)
            renamed = sorted({moved(n) for n in subs})
            if renamed != sorted(set(subs)):
                self._write_lines(SUBSCRIPTIONS, renamed)
        uses = _read_lines(self.root / SPECIAL_USE_FILE)
        kept = []
        for line in uses:
            use, _, name = line.partition(" ")
            if new is None and name == old:
                continue
            kept.append(f"{use} {moved(name)}")
        if kept != uses:
            self._write_lines(SPECIAL_USE_FILE, kept)

    def subscribe(self, name: str) -> None:
        """Add ``name`` to the subscriptions (it need not exist).

        Raises:
            MailboxNameError: the name is not acceptable.
        """
        canon = canonical(name)
        with self._locked():
            subs = set(_read_lines(self.root / SUBSCRIPTIONS))
            if canon not in subs:
                self._write_lines(SUBSCRIPTIONS, sorted(subs | {canon}))

    def unsubscribe(self, name: str) -> None:
        """Remove ``name`` from the subscriptions (no error when it was not there).

        Raises:
            MailboxNameError: the name is not acceptable.
        """
        canon = canonical(name)
        with self._locked():
            subs = set(_read_lines(self.root / SUBSCRIPTIONS))
            if canon in subs:
                self._write_lines(SUBSCRIPTIONS, sorted(subs - {canon}))

    def ensure_special_use(self) -> None:
        """First login: create and subscribe ``Sent Drafts Trash Junk`` where missing.
        Idempotent; four ``stat()`` calls when they all exist."""
        missing = [n for n in self.SPECIAL_USE if not self.exists(n)]
        if not missing:
            return
        with self._locked():
            created = []
            for name in missing:
                if not self.exists(name):
                    self._create_locked(name)
                    created.append(name)
            if created:
                subs = set(_read_lines(self.root / SUBSCRIPTIONS))
                self._write_lines(SUBSCRIPTIONS, sorted(subs | set(created)))
