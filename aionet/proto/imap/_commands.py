"""IMAP commands as values (RFC 9051 §6 and RFC 3501 §6, with LITERAL+, SASL-IR, ESEARCH,
CONDSTORE, LIST-EXTENDED, SPECIAL-USE, ID, BINARY, MULTIAPPEND, MOVE, UIDPLUS, UNSELECT,
ENABLE, IDLE, NAMESPACE): one frozen dataclass per command, built by ``parse_command``
(``_parse.py``).

Rules of this file:

1. Every command is a value with ``tag``; those the UID prefix applies to carry ``uid``.
   Field names are the contract the engine is written against.
2. Values arrive normalised (see ``_parse.py``); secrets and message data never show in a
   ``repr`` (LOGIN's password, AUTHENTICATE's initial response, APPEND's data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ._search import SearchKey
    from ._syntax import Section, SequenceSet

__all__ = [
    "Append",
    "AppendMessage",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Expunge",
    "Fetch",
    "FetchItem",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "Rename",
    "Search",
    "Select",
    "StartTls",
    "Status",
    "Store",
    "Subscribe",
    "Unselect",
    "Unsubscribe",
]

# -- the commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    tag: str


@dataclass(frozen=True, slots=True)
class Noop:
    tag: str


@dataclass(frozen=True, slots=True)
class Logout:
    tag: str


@dataclass(frozen=True, slots=True)
class StartTls:
    tag: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE; ``initial`` is the SASL-IR initial response (RFC 4959) as sent, still
    base64 (``b""`` for ``=``, None when absent)."""

    tag: str
    mechanism: str
    initial: bytes | None = None

    def __repr__(self) -> str:
        return f"Authenticate(tag={self.tag!r}, mechanism={self.mechanism!r})"


@dataclass(frozen=True, slots=True)
class Login:
    tag: str
    username: str
    password: str

    def __repr__(self) -> str:  # the password never shows
        return f"Login(tag={self.tag!r}, username={self.username!r})"


@dataclass(frozen=True, slots=True)
class Enable:
    tag: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Select:
    """SELECT, or EXAMINE (``readonly``); ``condstore`` for ``(CONDSTORE)`` (RFC 7162)."""

    tag: str
    mailbox: str
    readonly: bool = False
    condstore: bool = False


@dataclass(frozen=True, slots=True)
class Create:
    """CREATE, with RFC 6154's ``(USE (\\Sent ...))`` as ``special_use``."""

    tag: str
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    tag: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    tag: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST, LIST-EXTENDED (RFC 5258) included; options upper-cased. ``RETURN (STATUS (...))``
    (RFC 5819) puts ``STATUS`` in ``return_options`` and its items in ``status_items``."""

    tag: str
    reference: str
    patterns: tuple[str, ...]
    select_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lsub:
    tag: str
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace:
    tag: str


@dataclass(frozen=True, slots=True)
class Status:
    tag: str
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (several with MULTIAPPEND, RFC 3502)."""

    flags: tuple[str, ...]
    internal_date: float | None  # epoch seconds, the zone applied
    data: bytes

    def __repr__(self) -> str:
        return (
            f"AppendMessage(flags={self.flags!r}, internal_date={self.internal_date!r}, "
            f"data=<{len(self.data)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class Append:
    tag: str
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Check:
    tag: str


@dataclass(frozen=True, slots=True)
class Close:
    tag: str


@dataclass(frozen=True, slots=True)
class Unselect:
    tag: str


@dataclass(frozen=True, slots=True)
class Expunge:
    """EXPUNGE, or UID EXPUNGE set (``uid``, ``uids``; RFC 4315)."""

    tag: str
    uid: bool = False
    uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class Search:
    """[UID] SEARCH; ``return_options`` from ESEARCH's ``RETURN (...)`` (RFC 4731, SAVE from
    RFC 5182), empty when there was no RETURN; ``charset`` upper-cased or None."""

    tag: str
    uid: bool
    charset: str | None
    key: SearchKey
    return_options: tuple[str, ...] = ()


_SIMPLE_NAMES: Final = {
    name: name.encode()
    for name in (
        "FLAGS",
        "UID",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "MODSEQ",
    )
}


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One FETCH data item. ``BODY[...]``/``BODY.PEEK[...]`` are ``name="BODY"`` with a
    ``section`` (``peek`` for .PEEK), bare ``BODY`` has none; likewise ``BINARY``;
    ``BINARY.SIZE`` has a section; ``partial`` is ``(start, length)``."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def response_name(self) -> bytes:
        """The item's name in the FETCH response: ``BODY[HEADER.FIELDS (FROM)]<0>`` (the
        partial shows its origin only), ``BODY`` for ``BODY.PEEK``, RFC822.* as they are."""
        if self.section is None:
            return _SIMPLE_NAMES.get(self.name) or self.name.encode()
        name = f"{self.name}[{self.section}]"
        if self.partial is not None:
            name += f"<{self.partial[0]}>"
        return name.encode()


@dataclass(frozen=True, slots=True)
class Fetch:
    tag: str
    uid: bool
    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    changed_since: int | None = None


@dataclass(frozen=True, slots=True)
class Store:
    tag: str
    uid: bool
    sequence: SequenceSet
    mode: Literal["set", "add", "remove"]
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    tag: str
    uid: bool
    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Move:
    tag: str
    uid: bool
    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Idle:
    tag: str


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971): field/value pairs as sent, or None for ``ID NIL``."""

    tag: str
    params: dict[str, str | None] | None = field(default=None, hash=False)


Command = (
    Capability
    | Noop
    | Logout
    | StartTls
    | Authenticate
    | Login
    | Enable
    | Select
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Fetch
    | Store
    | Copy
    | Move
    | Idle
    | Id
)
