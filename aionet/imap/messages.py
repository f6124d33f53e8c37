"""IMAP commands on the selected mailbox's messages: CHECK, CLOSE, UNSELECT, EXPUNGE, SEARCH,
FETCH, STORE, COPY, MOVE (and their UID forms).

Sequence sets are resolved against the session's view (``Selected``), never by expanding a
range: ``UID FETCH 1:4294967295`` costs what the mailbox holds, not four billion numbers.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ..proto import imap as p
from ..storage.index import NoSuchMailbox
from .fetch import UnknownTransferEncoding, formatter, render_content, sets_seen
from .selected import flag_list
from .session import Refused, Result

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..storage.index import IndexedMessage
    from .selected import Selected
    from .session import Session


def _compact(numbers: list[int]) -> str:
    return str(p.SequenceSet.from_numbers(numbers))


__all__ = ["check", "close", "copy", "expunge", "fetch", "move", "search", "store", "unselect"]

#: Messages whose content one trip to the thread pool renders.
BATCH = 64
#: Index-only FETCH lines built per step before the output is flushed.
INDEX_BATCH = 1024


def targets(
    s: Session, sel: Selected, seqset: p.SequenceSet, *, uid: bool
) -> list[tuple[int, IndexedMessage]]:
    """The (sequence number, message) pairs a set names, in mailbox order."""
    if seqset.is_saved:
        saved = set(s.saved)
        return [(n, sel.messages[u]) for n, u in enumerate(sel.uids, 1) if u in saved]
    if not uid:  # sequence numbers: the spans are the answer (clamped to the view)
        out: list[tuple[int, IndexedMessage]] = []
        uids, get = sel.uids, sel.messages.__getitem__
        for lo, hi in seqset.intervals(len(sel)):
            out += zip(range(lo, hi + 1), map(get, uids[lo - 1 : hi]), strict=True)
        return out
    uids = sel.uids
    picked: list[int] = []
    for lo, hi in seqset.intervals(sel.largest_uid):  # sorted and disjoint
        picked += uids[bisect.bisect_left(uids, lo) : bisect.bisect_right(uids, hi)]
    return sel.by_uids(picked)


# -- CHECK / CLOSE / UNSELECT / EXPUNGE --------------------------------------------------------


async def check(s: Session, cmd: p.Check) -> Result:
    return Result("CHECK completed")


async def close(s: Session, cmd: p.Close) -> Result:
    sel = s.need_selected()
    if not sel.readonly:
        deleted = [m.uid for m in sel.messages.values() if "\\Deleted" in m.flags]
        if deleted:
            await s.service.store.run(sel.index.expunge, deleted)
            s.changed(sel.name)
    s.unselect()
    return Result("CLOSE completed")


async def unselect(s: Session, cmd: p.Unselect) -> Result:
    s.unselect()
    return Result("UNSELECT completed")


async def expunge(s: Session, cmd: p.Expunge) -> Result:
    sel = s.need_selected()
    if sel.readonly:
        raise Refused("Mailbox is read-only", "READ-ONLY")
    chosen: Iterable[IndexedMessage] = sel.messages.values()
    if cmd.uids is not None:
        chosen = [m for _, m in targets(s, sel, cmd.uids, uid=True)]
    deleted = [m.uid for m in chosen if "\\Deleted" in m.flags]
    if deleted:
        await s.service.store.run(sel.index.expunge, deleted)
        sel.event.set()  # catch up now: the EXPUNGE responses come before the tagged OK
        s.changed(sel.name)
    return Result("EXPUNGE completed")


# -- SEARCH ------------------------------------------------------------------------------------


class _View:
    """A message as ``proto.imap.matches`` sees it (``SearchView``)."""

    __slots__ = ("_index", "_m", "largest_seq", "largest_uid", "recent", "seq")

    def __init__(self, sel: Selected, seq: int, m: IndexedMessage) -> None:
        self._index = sel.index
        self._m = m
        self.seq = seq
        self.recent = m.uid in sel.recent
        self.largest_seq = len(sel)
        self.largest_uid = sel.largest_uid

    @property
    def uid(self) -> int:
        return self._m.uid

    @property
    def flags(self) -> frozenset[str]:
        return self._m.flags

    @property
    def size(self) -> int:
        return self._m.size

    @property
    def internal_date(self) -> float:
        return self._m.internal_date

    @property
    def modseq(self) -> int:
        return self._m.modseq

    def info(self) -> p.MessageInfo:
        return p.MessageInfo.parse(self._index.read(self._m.uid) or b"")


async def search(s: Session, cmd: p.Search) -> Result:
    sel = s.need_selected()
    views = [_View(sel, n, sel.messages[u]) for n, u in enumerate(sel.uids, 1)]
    key = p.replace_saved(cmd.key, p.SequenceSet.from_numbers(s.saved))  # SEARCHRES ``$``

    def run() -> list[_View]:
        return [v for v in views if p.matches(key, v)]

    found = await s.service.store.run(run)
    numbers = [v.uid if cmd.uid else v.seq for v in found]
    options = set(cmd.return_options)
    if "SAVE" in options:
        s.saved = [v.uid for v in found]
        options.discard("SAVE")
        if not options and not s.rev2:
            return Result("SEARCH completed")
    if cmd.return_options or s.rev2:
        s.send(_esearch(cmd.tag, cmd.uid, numbers, options or {"ALL"}, found))
    else:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
        if _uses_modseq(cmd) and found:
            line += b" (MODSEQ %d)" % max(v.modseq for v in found)
        s.send(line + b"\r\n")
    return Result("SEARCH completed")


def _uses_modseq(cmd: p.Search) -> bool:
    """Whether the key has a MODSEQ criterion (then SEARCH answers with the highest, RFC 7162)."""

    def walk(key: p.SearchKey) -> bool:
        if isinstance(key, p.ModSeqKey):
            return True
        if isinstance(key, p.NotKey):
            return walk(key.key)
        if isinstance(key, p.OrKey):
            return walk(key.left) or walk(key.right)
        if isinstance(key, p.AndKey):
            return any(walk(k) for k in key.keys)
        return False

    return walk(cmd.key)


def _esearch(
    tag: str, uid: bool, numbers: list[int], options: set[str], found: list[_View]
) -> bytes:
    parts = [b"* ESEARCH (TAG %s)" % p.quoted(tag)]
    if uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in options:
            parts.append(b"MIN %d" % min(numbers))
        if "MAX" in options:
            parts.append(b"MAX %d" % max(numbers))
        if "ALL" in options:
            parts.append(b"ALL " + _compact(numbers).encode())
    if "COUNT" in options:
        parts.append(b"COUNT %d" % len(numbers))
    return b" ".join(parts) + b"\r\n"


# -- FETCH -------------------------------------------------------------------------------------


async def fetch(s: Session, cmd: p.Fetch) -> Result:
    sel = s.need_selected()
    chosen = targets(s, sel, cmd.sequence, uid=cmd.uid)
    items = list(cmd.items)
    names = {item.name for item in items}
    condstore = s.condstore
    if cmd.changed_since is not None:
        s.enabled.add("CONDSTORE")
        condstore = True
        chosen = [(n, m) for n, m in chosen if m.modseq > cmd.changed_since]
        if "MODSEQ" not in names:
            items.append(p.FetchItem("MODSEQ"))
    elif condstore and "FLAGS" in names and "MODSEQ" not in names:
        items.append(p.FetchItem("MODSEQ"))  # RFC 7162 §3.2: FLAGS come with their MODSEQ
    if cmd.uid and "UID" not in names:
        items.insert(0, p.FetchItem("UID"))
    # Reading a body sets \Seen (not in EXAMINE, not with .PEEK), and the new flags are told.
    if not sel.readonly and any(sets_seen(item) for item in items):
        unseen = [m.uid for _, m in chosen if "\\Seen" not in m.flags]
        if unseen:
            result = await s.service.store.run(sel.index.store, unseen, "add", ["\\Seen"])
            sel.update(result.changed)
            s.changed(sel.name)
            chosen = [(n, sel.messages.get(m.uid, m)) for n, m in chosen]
            if "FLAGS" not in names:
                items.append(p.FetchItem("FLAGS"))
    frozen = tuple(items)
    recent = sel.recent if not s.rev2 else None
    formatters = [formatter(item, recent) for item in frozen]
    if all(f is not None for f in formatters):  # the index alone answers: no file, no thread
        pieces = [f for f in formatters if f is not None]
        template = b"* %%d FETCH (%s)\r\n" % b" ".join(t for t, _ in pieces)
        getters = [g for _, g in pieces]
        for start in range(0, len(chosen), INDEX_BATCH):
            batch = chosen[start : start + INDEX_BATCH]
            s.send(b"".join([template % (seq, *[g(m) for g in getters]) for seq, m in batch]))
            await s.maybe_flush()
        return Result("FETCH completed")
    gone = 0
    for start in range(0, len(chosen), BATCH):
        batch = chosen[start : start + BATCH]
        try:
            rendered = await s.service.store.run(
                render_content, sel.index, [m for _, m in batch], frozen, s.service.infos
            )
        except UnknownTransferEncoding:
            raise Refused("Unknown content transfer encoding", "UNKNOWN-CTE") from None
        for (seq, m), answers in zip(batch, rendered, strict=True):
            if answers is None:
                gone += 1
                continue
            parts = [
                f[0] % f[1](m) if f is not None else answers[i] for i, f in enumerate(formatters)
            ]
            s.send(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
        await s.maybe_flush()
    if gone:
        raise Refused("Some messages were expunged meanwhile", "EXPUNGEISSUED")
    return Result("FETCH completed")


# -- STORE -------------------------------------------------------------------------------------


async def store(s: Session, cmd: p.Store) -> Result:
    sel = s.need_selected()
    if sel.readonly:
        raise Refused("Mailbox is read-only", "READ-ONLY")
    chosen = targets(s, sel, cmd.sequence, uid=cmd.uid)
    if cmd.unchanged_since is not None:
        s.enabled.add("CONDSTORE")
    result = await s.service.store.run(
        sel.index.store, [m.uid for _, m in chosen], cmd.mode, cmd.flags, cmd.unchanged_since
    )
    sel.update(result.changed)
    if result.changed:
        s.changed(sel.name)
    modified = set(result.modified)
    condstore = s.condstore
    changed = {m.uid for m in result.changed}
    rev1 = not s.rev2
    for seq, old in chosen:
        if old.uid in modified:
            continue
        m = sel.messages.get(old.uid, old)
        if cmd.silent and not (condstore and m.uid in changed):
            continue
        parts = []
        if cmd.uid:
            parts.append(b"UID %d" % m.uid)
        if not cmd.silent:
            flags = m.flags | {"\\Recent"} if rev1 and m.uid in sel.recent else m.flags
            parts.append(b"FLAGS " + flag_list(frozenset(flags)))
        if condstore:
            parts.append(b"MODSEQ (%d)" % m.modseq)
        s.send(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
    if modified:
        numbers = sorted(old.uid if cmd.uid else seq for seq, old in chosen if old.uid in modified)
        return Result("Conditional STORE failed", f"MODIFIED {_compact(numbers)}")
    return Result("STORE completed")


# -- COPY / MOVE -------------------------------------------------------------------------------


async def _copy(s: Session, cmd: p.Copy | p.Move, *, move: bool) -> Result:
    sel = s.need_selected()
    if move and sel.readonly:
        raise Refused("Mailbox is read-only", "READ-ONLY")
    account = s.need_account()
    storage = s.service.store
    try:
        target = await storage.run(account.index, cmd.mailbox)
    except NoSuchMailbox:
        raise Refused("Mailbox doesn't exist", "TRYCREATE") from None
    chosen = targets(s, sel, cmd.sequence, uid=cmd.uid)
    verb = "MOVE" if move else "COPY"
    if not chosen:
        return Result(f"{verb} completed")
    uids = [m.uid for _, m in chosen]
    action = sel.index.move_to if move else sel.index.copy_to
    pairs = await storage.run(action, uids, target)
    snapshot = await storage.run(target.status)
    s.changed(cmd.mailbox)
    code = None
    if pairs:
        sources = _compact([a for a, _ in pairs])
        code = f"COPYUID {snapshot.uidvalidity} {sources} {_compact([b for _, b in pairs])}"
    if move:
        if code is not None:
            s.send(b"* OK [%s] Moved\r\n" % code.encode())
        sel.event.set()  # the EXPUNGEs of what moved, before the tagged OK
        s.changed(sel.name)
        return Result("MOVE completed")
    return Result("COPY completed", code)


async def copy(s: Session, cmd: p.Copy) -> Result:
    return await _copy(s, cmd, move=False)


async def move(s: Session, cmd: p.Move) -> Result:
    return await _copy(s, cmd, move=True)
