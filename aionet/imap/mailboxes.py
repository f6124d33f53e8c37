"""IMAP commands on mailboxes: SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST,
LSUB, STATUS, APPEND.

Names arrive decoded (modified UTF-7, or UTF-8 once IMAP4rev2 is enabled) and are validated by
the store (``aionet.storage.index.Account``): no name reaches outside the user's Maildir. The
hierarchy delimiter is ``/``; on disk a folder ``A/B`` is the Maildir++ directory ``.A.B``.
"""

from __future__ import annotations

import functools
import re
from functools import lru_cache
from typing import TYPE_CHECKING

from ..proto import imap as p
from ..storage.index import SYSTEM_FLAGS as STORE_SYSTEM_FLAGS
from ..storage.index import Account, NoSuchMailbox
from .selected import Selected, flag_list
from .session import Refused, Result, State

if TYPE_CHECKING:
    from ..storage.index import MailboxEntry, Snapshot
    from .session import Session

__all__ = ["append", "create", "delete", "list_", "lsub", "rename", "select", "status"]

DELIMITER = Account.DELIMITER
#: What every mailbox's FLAGS lists (the store maps them to Maildir letters).
SYSTEM_FLAGS = frozenset(STORE_SYSTEM_FLAGS)


def name_bytes(s: Session, name: str) -> bytes:
    """A mailbox name as the client reads it (modified UTF-7 until IMAP4rev2 is enabled)."""
    return p.astring(p.encode_mailbox(name, utf8=s.rev2), utf8=s.rev2)


# -- SELECT / EXAMINE --------------------------------------------------------------------------


async def select(s: Session, cmd: p.Select) -> Result:
    account = s.need_account()
    store = s.service.store
    had = s.selected is not None
    s.unselect()  # a failed SELECT leaves nothing selected (RFC 9051 §6.3.2)
    if had and (s.rev2 or s.condstore):
        s.send(b"* OK [CLOSED] Previous mailbox closed\r\n")
    index = await store.run(account.index, cmd.mailbox)
    snapshot = await store.run(functools.partial(index.sync, claim_recent=not cmd.readonly))
    if cmd.condstore:
        s.enabled.add("CONDSTORE")
    key = s.mailbox_key(cmd.mailbox)
    event = s.service.hub.watch(key)
    sel = Selected(cmd.mailbox, index, snapshot, readonly=cmd.readonly, event=event, key=key)
    s.selected = sel
    s.state = State.SELECTED
    flags = flag_list(frozenset(SYSTEM_FLAGS | set(snapshot.keywords)))
    s.send(b"* FLAGS %s\r\n" % flags)
    if cmd.readonly:
        s.send(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n")
    else:
        s.send(b"* OK [PERMANENTFLAGS %s] Flags permitted\r\n" % (flags[:-1] + b" \\*)"))
    s.send(b"* %d EXISTS\r\n" % len(sel))
    if not s.rev2:
        s.send(b"* %d RECENT\r\n" % len(sel.recent))
        first_unseen = next(
            (n for n, m in enumerate(snapshot.messages, 1) if "\\Seen" not in m.flags), 0
        )
        if first_unseen:
            s.send(b"* OK [UNSEEN %d] First unseen\r\n" % first_unseen)
    s.send(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % snapshot.uidvalidity)
    s.send(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % snapshot.uidnext)
    s.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % snapshot.highest_modseq)
    if s.rev2:
        s.send(b'* LIST () "/" %s\r\n' % name_bytes(s, cmd.mailbox))
    verb = "EXAMINE" if cmd.readonly else "SELECT"
    return Result(f"{verb} completed", "READ-ONLY" if cmd.readonly else "READ-WRITE")


# -- CREATE / DELETE / RENAME / SUBSCRIBE ------------------------------------------------------


def _strip_delimiter(name: str) -> str:
    """``CREATE foo/`` creates ``foo`` (RFC 9051 §6.3.4: the trailing delimiter only says the
    client means to create children)."""
    return name[:-1] if name.endswith(DELIMITER) and len(name) > 1 else name


async def create(s: Session, cmd: p.Create) -> Result:
    account = s.need_account()
    name = _strip_delimiter(cmd.mailbox)
    if name.upper() == "INBOX":
        raise Refused("INBOX always exists", "ALREADYEXISTS")
    await s.service.store.run(account.create, name, cmd.special_use)
    return Result("CREATE completed")


async def delete(s: Session, cmd: p.Delete) -> Result:
    account = s.need_account()
    if cmd.mailbox.upper() == "INBOX":
        raise Refused("INBOX cannot be deleted", "CANNOT")
    await s.service.store.run(account.delete, cmd.mailbox)
    if s.selected is not None and s.selected.name == cmd.mailbox:
        s.unselect()
    s.changed(cmd.mailbox)
    return Result("DELETE completed")


async def rename(s: Session, cmd: p.Rename) -> Result:
    account = s.need_account()
    await s.service.store.run(account.rename, cmd.old, _strip_delimiter(cmd.new))
    s.changed(cmd.old)
    return Result("RENAME completed")


async def subscribe(s: Session, cmd: p.Subscribe) -> Result:
    await s.service.store.run(s.need_account().subscribe, cmd.mailbox)
    return Result("SUBSCRIBE completed")


async def unsubscribe(s: Session, cmd: p.Unsubscribe) -> Result:
    await s.service.store.run(s.need_account().unsubscribe, cmd.mailbox)
    return Result("UNSUBSCRIBE completed")


# -- LIST / LSUB -------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    """A LIST pattern: ``*`` matches anything, ``%`` anything but the delimiter; a leading
    INBOX matches in any case (RFC 9051 §6.3.9)."""
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(ch))
    body = "".join(parts)
    if pattern[:5].upper() == "INBOX":
        body = "(?i:INBOX)" + "".join(parts[5:])
    return re.compile(body + r"\Z", re.DOTALL)


def _matches(entry: MailboxEntry, patterns: list[re.Pattern[str]]) -> bool:
    return any(pat.match(entry.name) for pat in patterns)


async def list_(s: Session, cmd: p.List) -> Result:
    account = s.need_account()
    if cmd.patterns == ("",) and not cmd.select_options:
        # The delimiter and root of the reference (RFC 9051 §6.3.9).
        s.send(b'* LIST (\\Noselect) "/" ""\r\n')
        return Result("LIST completed")
    entries = await s.service.store.run(account.mailboxes)
    patterns = [_pattern(cmd.reference + pat) for pat in cmd.patterns]
    only_subscribed = "SUBSCRIBED" in cmd.select_options
    only_special = "SPECIAL-USE" in cmd.select_options
    show_subscribed = only_subscribed or "SUBSCRIBED" in cmd.return_options
    status_items = getattr(cmd, "status_items", ())
    for entry in entries:
        if not _matches(entry, patterns):
            continue
        if only_subscribed and not entry.subscribed:
            continue
        attributes = set(entry.attributes)
        if only_special and not attributes & SPECIAL_ATTRIBUTES:
            continue
        if show_subscribed and entry.subscribed:
            attributes.add("\\Subscribed")
        s.send(
            b'* LIST (%s) "/" %s\r\n'
            % (" ".join(sorted(attributes)).encode(), name_bytes(s, entry.name))
        )
        if status_items and "\\Noselect" not in attributes and "\\NonExistent" not in attributes:
            try:
                index = await s.service.store.run(account.index, entry.name)
                snapshot = await s.service.store.run(index.status)
            except NoSuchMailbox:
                continue
            s.send(_status_line(s, entry.name, snapshot, status_items))
    return Result("LIST completed")


SPECIAL_ATTRIBUTES = frozenset({"\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All"})


async def lsub(s: Session, cmd: p.Lsub) -> Result:
    account = s.need_account()
    store = s.service.store
    entries = {e.name: e for e in await store.run(account.mailboxes)}
    patterns = [_pattern(cmd.reference + cmd.pattern)]
    for name in sorted(await store.run(account.subscriptions)):
        if not any(pat.match(name) for pat in patterns):
            continue
        entry = entries.get(name)
        # A subscribed name that does not exist (any more) is listed \Noselect (RFC 3501).
        attributes = "\\Noselect" if entry is None or "\\Noselect" in entry.attributes else ""
        s.send(b'* LSUB (%s) "/" %s\r\n' % (attributes.encode(), name_bytes(s, name)))
    return Result("LSUB completed")


# -- STATUS ------------------------------------------------------------------------------------


def _status_line(s: Session, name: str, snapshot: Snapshot, items: tuple[str, ...]) -> bytes:
    values = []
    for item in items:
        if item == "MESSAGES":
            value = len(snapshot.messages)
        elif item == "UIDNEXT":
            value = snapshot.uidnext
        elif item == "UIDVALIDITY":
            value = snapshot.uidvalidity
        elif item == "UNSEEN":
            value = sum(1 for m in snapshot.messages if "\\Seen" not in m.flags)
        elif item == "DELETED":
            value = sum(1 for m in snapshot.messages if "\\Deleted" in m.flags)
        elif item == "SIZE":
            value = sum(m.size for m in snapshot.messages)
        elif item == "RECENT":
            value = sum(1 for m in snapshot.messages if m.path.parent.name == "new")
        elif item == "HIGHESTMODSEQ":
            value = snapshot.highest_modseq
        else:  # pragma: no cover - the codec accepts only the items above
            continue
        values.append(b"%s %d" % (item.encode(), value))
    return b"* STATUS %s (%s)\r\n" % (name_bytes(s, name), b" ".join(values))


async def status(s: Session, cmd: p.Status) -> Result:
    account = s.need_account()
    store = s.service.store
    index = await store.run(account.index, cmd.mailbox)
    snapshot = await store.run(index.status)
    s.send(_status_line(s, cmd.mailbox, snapshot, cmd.items))
    return Result("STATUS completed")


# -- APPEND ------------------------------------------------------------------------------------


async def append(s: Session, cmd: p.Append) -> Result:
    account = s.need_account()
    store = s.service.store
    try:
        index = await store.run(account.index, cmd.mailbox)
    except NoSuchMailbox:
        raise Refused("Mailbox doesn't exist", "TRYCREATE") from None
    uids = []
    for message in cmd.messages:
        uid = await store.run(index.append, message.data, message.flags, message.internal_date)
        uids.append(uid)
    snapshot = await store.run(index.status)
    s.changed(cmd.mailbox)
    code = f"APPENDUID {snapshot.uidvalidity} {p.SequenceSet.from_numbers(uids)}"
    return Result("APPEND completed", code)
