"""``Selected``: one session's view of its selected mailbox, and how it catches up.

IMAP numbers messages by position (message sequence numbers), and a client's numbers must
only change when the server says so: the view is the session's own list of UIDs, updated only
by ``catch_up`` (which emits the untagged ``EXPUNGE``/``EXISTS``/``FETCH`` that explain the
change) and by the session's own commands. RFC 9051 §7.5.1: ``EXPUNGE`` may not be sent while
answering FETCH, STORE or SEARCH (their non-UID forms) — then expunged messages stay in the
view, marked gone, until a command where the news may be told.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterable

    from ..storage.index import IndexedMessage, MailboxIndex, Snapshot

__all__ = ["Selected", "flag_list"]

_FLAG_LISTS: dict[frozenset[str], bytes] = {}


def flag_list(flags: frozenset[str]) -> bytes:
    """``(\\Seen $Forwarded)`` for a flag set (cached: there are few distinct sets)."""
    out = _FLAG_LISTS.get(flags)
    if out is None:
        out = b"(" + " ".join(sorted(flags)).encode() + b")"
        if len(_FLAG_LISTS) < 4096:
            _FLAG_LISTS[flags] = out
    return out


class Selected:
    """The selected mailbox as this session knows it."""

    __slots__ = (
        "event",
        "gone",
        "highest_modseq",
        "index",
        "key",
        "messages",
        "name",
        "readonly",
        "recent",
        "stamp",
        "uidnext",
        "uids",
        "uidvalidity",
    )

    def __init__(
        self,
        name: str,
        index: MailboxIndex,
        snapshot: Snapshot,
        *,
        readonly: bool,
        event: asyncio.Event,
        key: tuple[str, str],
    ) -> None:
        self.name = name
        #: What the hub knows this mailbox by (user, name).
        self.key = key
        self.index = index
        self.readonly = readonly
        #: Set by the hub when another session of this process changed the mailbox.
        self.event = event
        self.uidvalidity = snapshot.uidvalidity
        self.uids: list[int] = [m.uid for m in snapshot.messages]
        self.messages: dict[int, IndexedMessage] = {m.uid: m for m in snapshot.messages}
        self.recent: set[int] = set(snapshot.recent)
        #: Expunged meanwhile, not yet reported (still numbered in the view).
        self.gone: set[int] = set()
        self.uidnext = snapshot.uidnext
        self.highest_modseq = snapshot.highest_modseq
        self.stamp = snapshot.stamp

    # -- numbering -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int:
        """The sequence number of ``uid`` (0 when it is not in the view)."""
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0

    def by_uids(self, wanted: Iterable[int]) -> list[tuple[int, IndexedMessage]]:
        """``wanted`` ascending: one forward walk over the view, no search per UID."""
        uids, messages, out = self.uids, self.messages, []
        i, n = 0, len(uids)
        for uid in wanted:
            if i < n and uids[i] != uid:
                i = bisect.bisect_left(uids, uid, i)
            if i < n and uids[i] == uid:
                out.append((i + 1, messages[uid]))
                i += 1
        return out

    @property
    def largest_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def update(self, messages: Iterable[IndexedMessage]) -> None:
        """Our own STORE's results: the view takes them without reporting them again."""
        for m in messages:
            if m.uid in self.messages:
                self.messages[m.uid] = m
                if m.modseq > self.highest_modseq:
                    self.highest_modseq = m.modseq

    # -- catching up ---------------------------------------------------------------------------

    def needs_sync(self) -> bool:
        """Whether the mailbox may have changed (hub event or a cheap stat of the index)."""
        return self.event.is_set() or self.index.changed(self.stamp)

    def catch_up(
        self, snapshot: Snapshot, *, expunge: bool, rev1: bool, condstore: bool
    ) -> list[bytes]:
        """Bring the view to ``snapshot``; the untagged responses that tell the client."""
        self.event.clear()
        self.stamp = snapshot.stamp
        self.uidvalidity = snapshot.uidvalidity
        self.uidnext = snapshot.uidnext
        current = {m.uid: m for m in snapshot.messages}
        out: list[bytes] = []
        # Expunged: every UID of the view that is no longer there.
        gone = [uid for uid in self.uids if uid not in current]
        if gone:
            self.gone.update(gone)
        if expunge and self.gone:
            for uid in sorted(self.gone, reverse=True):  # high to low: numbers stay valid
                seq = self.seq_of(uid)
                if seq:
                    out.append(b"* %d EXPUNGE\r\n" % seq)
                    del self.uids[seq - 1]
                self.messages.pop(uid, None)
                self.recent.discard(uid)
            self.gone.clear()
        # Changed flags of messages both have.
        messages = self.messages
        for uid, new in current.items():
            old = messages.get(uid)
            if old is None or uid in self.gone:
                continue
            if old.flags != new.flags or old.modseq != new.modseq:
                messages[uid] = new
                if old.flags != new.flags or condstore:
                    out.append(self._fetch_flags(uid, new, rev1=rev1, condstore=condstore))
        # Arrived: UIDs above the largest the view has.
        largest = self.largest_uid
        arrived = [m for m in snapshot.messages if m.uid > largest]
        if arrived:
            for m in arrived:
                self.uids.append(m.uid)
                messages[m.uid] = m
            self.recent.update(uid for uid in snapshot.recent if uid in messages)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if rev1:
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        else:
            self.recent.update(uid for uid in snapshot.recent if uid in messages)
        if snapshot.highest_modseq > self.highest_modseq:
            self.highest_modseq = snapshot.highest_modseq
        return out

    def _fetch_flags(self, uid: int, m: IndexedMessage, *, rev1: bool, condstore: bool) -> bytes:
        flags = m.flags | {"\\Recent"} if rev1 and uid in self.recent else m.flags
        modseq = b" MODSEQ (%d)" % m.modseq if condstore else b""
        return b"* %d FETCH (UID %d FLAGS %s%s)\r\n" % (
            self.seq_of(uid),
            uid,
            flag_list(frozenset(flags)),
            modseq,
        )
