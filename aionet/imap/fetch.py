"""FETCH responses: what each data item answers, built from the index and the message files.

Items that need only the index (UID, FLAGS, RFC822.SIZE, INTERNALDATE, MODSEQ) are formatted
on the event loop with no file access. Items that need the message (ENVELOPE, BODY,
BODYSTRUCTURE, sections, RFC822*, BINARY*) are built on the store's thread pool, a batch of
messages per trip; the structure answers (ENVELOPE, BODY, BODYSTRUCTURE) are cached per
message (``InfoCache``), so a client listing a folder again parses nothing.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple

from ..proto import imap as p
from .selected import flag_list

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..storage.index import IndexedMessage, MailboxIndex
    from .service import InfoCache

    #: The value of an index-only item of one message.
    Getter = Callable[[IndexedMessage], object]

__all__ = [
    "CONTENT_ITEMS",
    "SEEN_ITEMS",
    "Structure",
    "formatter",
    "render_content",
    "sets_seen",
]

#: Items that need the message file (or its cached structure).
CONTENT_ITEMS = frozenset(
    {
        "ENVELOPE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "BINARY",
        "BINARY.SIZE",
    }
)
#: Items that set ``\\Seen`` unless ``.PEEK`` (RFC 9051 §6.4.5).
SEEN_ITEMS = frozenset({"RFC822", "RFC822.TEXT"})
_STRUCTURE_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE"})


class Structure(NamedTuple):
    """The cached structure answers of one message."""

    envelope: bytes
    body: bytes
    bodystructure: bytes


class Gone(Exception):
    pass


def sets_seen(item: p.FetchItem) -> bool:
    if item.name in SEEN_ITEMS:
        return True
    return item.name in ("BODY", "BINARY") and item.section is not None and not item.peek


def needs_data(item: p.FetchItem) -> bool:
    """Whether the item needs the message bytes, not only its cached structure."""
    if item.name in _STRUCTURE_ITEMS:
        return False
    return not (item.name == "BODY" and item.section is None)


_RECENT = frozenset({"\\Recent"})


def formatter(item: p.FetchItem, recent: set[int] | None) -> tuple[bytes, Getter] | None:
    """How an item answered from the index alone is written: its ``%``-template and the
    getter of its value (None: the item needs the message). ``recent``: the session's
    \\Recent UIDs when FLAGS must show them (IMAP4rev1)."""
    name = item.name
    if name == "UID":
        return b"UID %d", attrgetter("uid")
    if name == "FLAGS":
        if recent:
            return b"FLAGS %s", lambda m: flag_list(
                m.flags | _RECENT if m.uid in recent else m.flags
            )
        return b"FLAGS %s", lambda m: flag_list(m.flags)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d", attrgetter("size")
    if name == "INTERNALDATE":
        return b"INTERNALDATE %s", lambda m: p.format_date_time(m.internal_date)
    if name == "MODSEQ":
        return b"MODSEQ (%d)", attrgetter("modseq")
    return None


def render_content(
    index: MailboxIndex,
    messages: list[IndexedMessage],
    items: tuple[p.FetchItem, ...],
    cache: InfoCache,
) -> list[dict[int, bytes] | None]:
    """Per message, the bytes of each content item (by its position in ``items``), or None
    when the message was expunged meanwhile. Runs on the store's thread pool."""
    content = [(i, item) for i, item in enumerate(items) if item.name in CONTENT_ITEMS]
    data_needed = any(needs_data(item) for _, item in content)
    out: list[dict[int, bytes] | None] = []
    for m in messages:
        structure = cache.get(m.unique, m.size)
        info: p.MessageInfo | None = None
        data = b""
        if data_needed or structure is None:
            read = index.read(m.uid)  # follows a rename (a flag change) by someone else
            if read is None:  # expunged meanwhile
                out.append(None)
                continue
            data = read
            info = p.MessageInfo.parse(data)
            if structure is None:
                structure = Structure(
                    info.envelope(), info.body_structure(False), info.body_structure(True)
                )
                cache.put(m.unique, m.size, structure)
        answers: dict[int, bytes] = {}
        for i, item in content:
            answers[i] = _answer(item, structure, info, data)
        out.append(answers)
    return out


def _answer(
    item: p.FetchItem, structure: Structure, info: p.MessageInfo | None, data: bytes
) -> bytes:
    name = item.name
    if name == "ENVELOPE":
        return b"ENVELOPE " + structure.envelope
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + structure.bodystructure
    if name == "BODY" and item.section is None:
        return b"BODY " + structure.body
    assert info is not None
    if name == "RFC822":
        return b"RFC822 " + p.literal(data)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + p.literal(info.section(p.Section(text="HEADER"), None))
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + p.literal(info.section(p.Section(text="TEXT"), None))
    section = item.section if item.section is not None else p.Section()
    if name == "BINARY" or name == "BINARY.SIZE":
        decoded = info.binary(section)
        if decoded is None:
            raise UnknownTransferEncoding
        if name == "BINARY.SIZE":
            return item.response_name() + b" %d" % len(decoded)
        if item.partial is not None:
            start, length = item.partial
            decoded = decoded[start : start + length]
        body = p.literal(decoded)
        if b"\x00" in decoded:
            body = b"~" + body  # literal8 (RFC 3516)
        return item.response_name() + b" " + body
    return item.response_name() + b" " + p.literal(info.section(section, item.partial))


class UnknownTransferEncoding(Exception):
    pass
