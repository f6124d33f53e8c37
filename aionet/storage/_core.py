"""One Maildir's index as a process holds it, shared by every ``MailboxIndex`` on that path.

The files on disk are the truth: a message's flags are its ``:2,`` letters, its existence is its
file; the index files add what Maildir lacks (UIDs, modseqs, sizes, internal dates) and record
the letters last seen, so a rename by anyone shows up as a flag change with a new modseq.

This module keeps the parsed state between calls so that a sync with nothing changed costs a
few ``stat()`` calls, and a sync after a change costs one directory listing plus the log's new
records — never a re-parse of the whole index. Every read of the index files and every write
happens under the Maildir's uidlist ``flock``; the in-process ``mutex`` (one per mailbox per
process, through the registry) keeps threads from sharing one half-updated state.

Directory listings are trusted only when both directories' mtimes are older than
``DIRTY_WINDOW``: a change made within the same mtime tick as our listing would leave the mtime
unchanged, so a recently changed directory is listed again on the next call (Dovecot does the
same). A listing that misses a message the index knows is repeated once before the message is
taken as expunged, since ``readdir`` racing a rename may return neither name.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ._errors import NoSuchMailbox
from ._flags import Keywords, sorted_letters
from ._records import (
    CHANGES,
    UIDLIST,
    Entry,
    IndexState,
    LogTail,
    append_log,
    read_log,
    record_add,
    record_expunge,
    record_flags,
)
from .durable import fsync_dir, replace_synced
from .maildir import EXPUNGE_JOURNAL, _delivery_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .maildir import Maildir

__all__ = ["Core", "IndexedMessage", "Snapshot", "StoreResult", "core_for"]

#: A directory whose mtime is younger than this may have changed unseen within its mtime tick.
DIRTY_WINDOW = 2.0


@dataclass(frozen=True, slots=True)
class IndexedMessage:
    """One message as IMAP sees it (see ``MailboxIndex``)."""

    uid: int
    unique: str  # Maildir unique name (POP3's UIDL)
    path: Path  # the file now (new/ or cur/, with its :2, info)
    size: int  # bytes of the file = RFC822.SIZE
    flags: frozenset[str]  # IMAP spelling: system flags + keywords
    internal_date: float  # epoch seconds: the file's mtime when first indexed
    modseq: int  # CONDSTORE: >= 1, raised on every flag change and on arrival


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A mailbox at one moment; ``stamp`` goes back to ``MailboxIndex.changed``."""

    uidvalidity: int
    uidnext: int
    highest_modseq: int
    messages: tuple[IndexedMessage, ...]  # ascending UID
    recent: frozenset[int]  # claimed by this sync (claim_recent) or still in new/ (otherwise)
    stamp: object
    keywords: tuple[str, ...] = field(default=())  # the mailbox's keywords (FLAGS response)


class StoreResult(NamedTuple):
    """What a STORE did (RFC 7162's MODIFIED is ``modified``)."""

    changed: tuple[IndexedMessage, ...]  # messages whose flags changed (new modseq)
    modified: tuple[int, ...]  # UIDs refused by UNCHANGEDSINCE


@dataclass(frozen=True, slots=True)
class Stamp:
    keys: tuple[object, ...]
    dirty: bool


def _dir_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns)


def file_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)


def letters_of(name: str) -> str:
    _, sep, info = name.partition(":2,")
    return sorted_letters(info) if sep else ""


_CORES: weakref.WeakValueDictionary[str, Core] = weakref.WeakValueDictionary()
#: The most recently used states stay loaded after their last session logs out, so a client
#: that reconnects does not pay for a full load again (a 10,000-message mailbox: a few MB).
_RECENT: collections.OrderedDict[str, Core] = collections.OrderedDict()
RECENT_KEPT = 8
_CORES_LOCK = threading.Lock()


def core_for(maildir: Maildir) -> Core:
    """The process's one ``Core`` for this Maildir path (kept while any index uses it)."""
    key = os.path.abspath(maildir.path)
    with _CORES_LOCK:
        core = _CORES.get(key)
        if core is None:
            core = _CORES[key] = Core(maildir)
        _RECENT[key] = core
        _RECENT.move_to_end(key)
        while len(_RECENT) > RECENT_KEPT:
            _RECENT.popitem(last=False)
        return core


def forget_all() -> None:
    """Drop every cached state (tests: the next index reads the files as a new process would)."""
    with _CORES_LOCK:
        _CORES.clear()
        _RECENT.clear()


class Core:
    """The shared state; callers hold ``mutex`` and, for anything but ``fast_snapshot``, the
    flock (``locked()``)."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir
        root = self.root = os.path.abspath(maildir.path)
        self.new_dir = os.path.join(root, "new")
        self.cur_dir = os.path.join(root, "cur")
        self._new_path, self._cur_path = Path(self.new_dir), Path(self.cur_dir)
        self.base_path = os.path.join(root, UIDLIST)
        self.log_path = os.path.join(root, CHANGES)
        self.journal_path = os.path.join(root, EXPUNGE_JOURNAL)
        self.mutex = threading.RLock()
        self.keywords = Keywords(root)
        self._reset()

    def _reset(self) -> None:
        """Forget everything cached: the next locked call reads the files afresh."""
        self.state: IndexState | None = None
        self.base_key: tuple[int, int, int, int] | None = None
        self.tail = LogTail()
        self.checkpoint_due = False
        self.pending: list[str] = []
        self.files: dict[str, str] = {}  # unique -> file name (in new/ when in self.in_new)
        self.in_new: set[str] = set()
        self.listed: tuple[object, ...] | None = None  # dir keys the listing matches
        self.trusted = False  # the listing may be reused while those keys hold
        self.full_check = True  # entries may disagree with the listing: compare them all
        self.touched: set[int] = set()
        self.view: dict[int, IndexedMessage] = {}
        self.view_all = True
        self.view_keywords = -1
        self.snapshot: Snapshot | None = None

    # -- locking -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[IndexState]:
        """The flock plus fresh state; any failure inside drops the cache (disk is the truth)."""
        self.ensure_dirs()
        try:
            with self.maildir.index_lock():
                self.refresh()
                assert self.state is not None
                yield self.state
                self.commit()
        except FileNotFoundError as exc:
            self._reset()
            if not os.path.isdir(self.cur_dir):
                raise NoSuchMailbox(f"mailbox {self.root} no longer exists") from exc
            raise
        except BaseException:
            self._reset()
            raise

    def ensure_dirs(self) -> None:
        if os.path.isdir(self.cur_dir) and os.path.isdir(self.new_dir):
            return
        if not os.path.isdir(self.root):
            raise NoSuchMailbox(f"mailbox {self.root} does not exist")
        for sub in ("tmp", "new", "cur"):  # never the root itself: a deleted folder stays gone
            with contextlib.suppress(FileExistsError):
                os.mkdir(os.path.join(self.root, sub))

    # -- reading the index files ---------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the state up to date with the checkpoint, the log and the keywords."""
        key = file_key(self.base_path)
        if self.state is None or key != self.base_key:
            self._load_checkpoint(key)
        assert self.state is not None
        self.tail, touched = read_log(self.log_path, self.state, self.tail)
        self.touched |= touched
        if self.keywords.refresh():
            self.view_all = True
        if os.path.exists(self.journal_path):
            self.maildir._replay_expunge()  # a crash interrupted an expunge: finish it
            self.trusted = False

    def _load_checkpoint(self, key: tuple[int, int, int, int] | None) -> None:
        previous = self.state.uidvalidity if self.state is not None else 0
        state: IndexState
        if key is None:
            state, self.checkpoint_due = IndexState.fresh(previous), True
        else:
            with open(self.base_path, "rb") as f:
                data = f.read()
            try:
                state = IndexState.parse(data)
                self.checkpoint_due = state.upgraded
            except (ValueError, IndexError):  # damaged by hand: rebuild, with new UIDVALIDITY
                state, self.checkpoint_due = IndexState.fresh(max(previous, _validity(data))), True
        self.state, self.base_key = state, key
        self.tail = LogTail()
        self.full_check = self.view_all = True
        self.trusted = False

    # -- the directory listing -----------------------------------------------------------------

    def probe(self) -> tuple[object, ...]:
        """What ``changed()`` compares: a few stats, no listing."""
        return (
            _dir_key(self.new_dir),
            _dir_key(self.cur_dir),
            file_key(self.base_path),
            file_key(self.log_path),
            os.path.exists(self.journal_path),
        )

    def ensure_listing(self, *, force: bool = False) -> None:
        """List new/ and cur/ again unless the last listing still holds; reconcile."""
        keys = (_dir_key(self.new_dir), _dir_key(self.cur_dir))
        if (
            not force
            and self.trusted
            and keys == self.listed
            and all(self.state_has_files(uid) for uid in self.touched)
        ):
            return
        now = time.time()
        self.trusted = all(now - k[1] / 1e9 > DIRTY_WINDOW for k in keys)
        self.listed = keys
        self.reconcile(*self._list())

    def state_has_files(self, uid: int) -> bool:
        assert self.state is not None
        entry = self.state.by_uid.get(uid)
        return entry is None or entry.unique in self.files

    def _list(self) -> tuple[dict[str, str], set[str]]:
        # new/ before cur/: a message moving from new/ to cur/ meanwhile is seen in cur/.
        new_names = os.listdir(self.new_dir)
        files: dict[str, str] = {}
        for name in os.listdir(self.cur_dir):
            if name[0] != "." and "\n" not in name:
                files[name.partition(":")[0]] = name
        in_new: set[str] = set()
        for name in new_names:
            if name[0] != "." and "\n" not in name:
                unique = name.partition(":")[0]
                if unique not in files:
                    files[unique] = name
                    in_new.add(unique)
        return files, in_new

    def reconcile(self, files: dict[str, str], in_new: set[str]) -> None:
        """Make the state agree with a listing: vanished, arrived and renamed messages."""
        state = self.state
        assert state is not None
        missing = [e for u, e in state.by_unique.items() if u not in files]
        if missing:  # a second look before taking them as gone
            files, in_new = self._list()
            missing = [e for u, e in state.by_unique.items() if u not in files]
        for gone in missing:
            state.remove(gone)
            self.pending.append(record_expunge(gone.uid, state.bump()))
            self.touched.add(gone.uid)
        old, full = self.files, self.full_check
        arrivals: list[str] = []
        upgrades: list[Entry] = []
        for unique, name in files.items():
            if not full and old.get(unique) == name:
                continue
            entry = state.by_unique.get(unique)
            if entry is None:
                arrivals.append(unique)
                continue
            self.touched.add(entry.uid)
            if entry.letters is None or entry.size < 0:
                upgrades.append(entry)
                continue
            _, sep, info = name.partition(":2,")
            if info == entry.letters or (not sep and not entry.letters):
                continue  # the common case, without sorting anything
            letters = sorted_letters(info)
            if entry.letters != letters:
                entry.letters, entry.modseq = letters, state.bump()
                self.pending.append(record_flags(entry))
        self.files, self.in_new, self.full_check = files, in_new, False
        if upgrades:
            self._upgrade(upgrades)
        arrivals.sort(key=_delivery_key)
        for unique in arrivals:
            self._index_arrival(unique)

    def path_of(self, unique: str) -> str:
        folder = self.new_dir if unique in self.in_new else self.cur_dir
        return os.path.join(folder, self.files[unique])

    def _index_arrival(self, unique: str) -> None:
        state = self.state
        assert state is not None
        try:
            st = os.stat(self.path_of(unique))
        except FileNotFoundError:  # gone or renamed since the listing: the next sync sees it
            del self.files[unique]
            self.in_new.discard(unique)
            return
        letters = letters_of(self.files[unique])
        self.add_entry(Entry(state.next_uid, unique, 0, st.st_size, st.st_mtime, letters))

    def add_entry(self, entry: Entry) -> None:
        """Index a message whose file is in place: the next UID and a new modseq."""
        state = self.state
        assert state is not None
        entry.uid, entry.modseq = state.next_uid, state.bump()
        state.next_uid += 1
        state.add(entry)
        self.pending.append(record_add(entry))
        self.touched.add(entry.uid)

    def _upgrade(self, entries: list[Entry]) -> None:
        """Entries from a POP3-era uidlist: learn size, date and letters; one modseq for all."""
        state = self.state
        assert state is not None
        modseq = state.bump()
        for entry in entries:
            try:
                st = os.stat(self.path_of(entry.unique))
            except FileNotFoundError:
                st = None
            entry.size = st.st_size if st else 0
            entry.idate = st.st_mtime if st else 0.0
            entry.letters = letters_of(self.files[entry.unique])
            entry.modseq = modseq
        self.checkpoint_due = True

    # -- changes -------------------------------------------------------------------------------

    def set_letters(self, entry: Entry, letters: str) -> None:
        """Record that ``entry``'s file now carries ``letters`` (a new modseq)."""
        assert self.state is not None
        entry.letters, entry.modseq = letters, self.state.bump()
        self.pending.append(record_flags(entry))
        self.touched.add(entry.uid)

    def drop_entry(self, entry: Entry) -> None:
        assert self.state is not None
        self.state.remove(entry)
        self.files.pop(entry.unique, None)
        self.in_new.discard(entry.unique)
        self.pending.append(record_expunge(entry.uid, self.state.bump()))
        self.touched.add(entry.uid)

    def commit(self) -> None:
        """Persist the pending records: appended to the log, or folded into a checkpoint."""
        state = self.state
        assert state is not None
        if not self.pending and not self.checkpoint_due:
            return
        threshold = len(state.by_uid) // 8 + 64
        if self.checkpoint_due or self.tail.records + len(self.pending) > threshold:
            replace_synced(Path(self.base_path), state.render())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log_path)  # its records are all in the checkpoint now
            self.base_key = file_key(self.base_path)
            self.tail, self.checkpoint_due = LogTail(), False
        else:
            new_log = self.tail.token is None
            self.tail = append_log(self.log_path, self.tail, self.pending)
            if new_log:
                fsync_dir(self.root)
        self.pending = []

    # -- snapshots -----------------------------------------------------------------------------

    def claim_new(self) -> set[int]:
        """Move new/ messages to cur/ (a read-write SELECT); their UIDs. Not fsynced: after a
        crash a claimed message is back in new/, recent again, which is harmless."""
        state = self.state
        assert state is not None
        claimed: set[int] = set()
        for unique in sorted(self.in_new):
            entry = state.by_unique.get(unique)
            if entry is None:
                continue
            target = f"{unique}:2,{entry.letters or ''}"
            try:
                os.rename(
                    os.path.join(self.new_dir, self.files[unique]),
                    os.path.join(self.cur_dir, target),
                )
            except FileNotFoundError:
                continue
            self.files[unique] = target
            self.in_new.discard(unique)
            claimed.add(entry.uid)
            self.touched.add(entry.uid)
        return claimed

    def make_snapshot(self, stamp: Stamp) -> Snapshot:
        state = self.state
        assert state is not None
        if self.view_keywords != self.keywords.version:
            self.view_all, self.view_keywords = True, self.keywords.version
        if self.view_all or self.touched or self.snapshot is None:
            self._update_view()
            messages = tuple(self.view.values())
        else:
            messages = self.snapshot.messages
        by_unique = state.by_unique
        recent = frozenset(by_unique[u].uid for u in self.in_new if u in by_unique)
        keywords = tuple(name for name in self.keywords.names if name)
        self.snapshot = Snapshot(
            state.uidvalidity, state.next_uid, state.highest, messages, recent, stamp, keywords
        )
        return self.snapshot

    def _update_view(self) -> None:
        state = self.state
        assert state is not None
        if not self.view_all and self.view:
            last = next(reversed(self.view))
            # New UIDs are always above the old ones, so appending keeps the view in order;
            # should that ever not hold, rebuild rather than list out of order.
            self.view_all = any(u < last and u not in self.view for u in self.touched)
        if self.view_all:
            old, self.view = self.view, {}
            for uid, entry in state.by_uid.items():
                message = old.get(uid)
                if message is None or not self._same(message, entry):
                    message = self.message(entry)
                if message is not None:
                    self.view[uid] = message
        else:
            for uid in sorted(self.touched):
                found = state.by_uid.get(uid)
                message = self.message(found) if found is not None else None
                if message is None:
                    self.view.pop(uid, None)
                else:
                    self.view[uid] = message
        self.touched.clear()
        self.view_all = False

    def _same(self, message: IndexedMessage, entry: Entry) -> bool:
        return (
            message.modseq == entry.modseq
            and message.unique == entry.unique
            and message.path.name == self.files.get(entry.unique)
            and (message.path.parent.name == "new") == (entry.unique in self.in_new)
            and message.flags == self.keywords.flags(entry.letters or "")
        )

    def message(self, entry: Entry) -> IndexedMessage | None:
        name = self.files.get(entry.unique)
        if name is None:
            return None
        folder = self._new_path if entry.unique in self.in_new else self._cur_path
        return IndexedMessage(
            entry.uid,
            entry.unique,
            folder / name,
            entry.size,
            self.keywords.flags(entry.letters or ""),
            entry.idate,
            entry.modseq,
        )

    def stamp(self) -> Stamp:
        """The stamp of the state just committed (under the lock, so file keys are exact)."""
        keys = (*(self.listed or (None, None)), file_key(self.base_path))
        keys = (*keys, file_key(self.log_path), os.path.exists(self.journal_path))
        return Stamp(keys, dirty=not self.trusted)

    def cached_snapshot(self, claim: bool) -> Snapshot | None:
        """The last snapshot if nothing changed since (stats only, no lock), else None."""
        snapshot = self.snapshot
        if snapshot is None or (claim and self.in_new):
            return None
        stamp = snapshot.stamp
        assert isinstance(stamp, Stamp)
        if stamp.dirty or self.probe() != stamp.keys:
            return None
        return replace(snapshot, recent=frozenset()) if claim else snapshot


def _validity(data: bytes) -> int:
    head = data.split(b"\n", 1)[0].split()
    for part in head:
        if part[:1] == b"V" and part[1:].isdigit():
            return int(part[1:])
    return 0
