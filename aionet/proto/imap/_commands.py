"""IMAP commands (RFC 9051 §6 and RFC 3501 §6, with LITERAL+, SASL-IR, ESEARCH, CONDSTORE,
LIST-EXTENDED, SPECIAL-USE, ID, BINARY, MULTIAPPEND, MOVE, UIDPLUS, UNSELECT, ENABLE, IDLE,
NAMESPACE): one frozen dataclass per command and ``parse_command`` from a ``RawCommand``.

Rules of this file:

1. Every command is a value with ``tag``; those the UID prefix applies to carry ``uid``.
   ``parse_command`` knows the commands by name in one table, ``PARSERS``; any other name is
   ``ImapSyntaxError("unknown command")``.
2. The parser checks grammar only, never state or existence (that is the engine's and the
   store's): anything the grammar refuses raises ``ImapSyntaxError`` whose text is the BAD
   reply; ``SEARCH CHARSET`` other than UTF-8/US-ASCII raises its subclass ``UnknownCharset``.
3. Values arrive normalised: keywords upper-cased, system flags in canonical spelling,
   mailbox names decoded (modified UTF-7, or UTF-8 when the session enabled it) with INBOX
   in any case as ``INBOX``, FETCH macros expanded, ``UID`` added to UID FETCH items and
   ``MODSEQ`` to FETCH items with CHANGEDSINCE (RFC 7162 §3.1.4.1), ``RETURN ()`` of SEARCH
   read as ``RETURN (ALL)`` (RFC 4731 §3.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from ._search import AndKey, SearchKey, parse_search_key
from ._syntax import (
    MAX_NUMBER64,
    ImapSyntaxError,
    Scanner,
    Section,
    SequenceSet,
    UnknownCharset,
    decode_mailbox,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._reader import RawCommand

__all__ = [
    "PARSERS",
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
    "parse_command",
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

# -- helpers ----------------------------------------------------------------------------------

_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_TEXT = re.compile(rb"[A-Za-z]+(?:\.[A-Za-z]+)*")
_PART = re.compile(rb"[0-9]+")

STATUS_ITEMS: Final = frozenset(
    {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ"}
)
SELECT_OPTIONS: Final = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS: Final = frozenset({"SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE"})
SEARCH_RETURN: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
SEARCH_CHARSETS: Final = frozenset({"UTF-8", "US-ASCII"})
USE_ATTRIBUTES: Final = {
    a.upper(): a
    for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
_MACROS: Final = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_PLAIN_ITEMS: Final = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)
_MAX_ID_PAIRS: Final = 30  # RFC 2971 §3.3


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImapSyntaxError(f"{what} is not UTF-8") from None


def _mailbox(s: Scanner, utf8: bool) -> str:
    name = decode_mailbox(s.astring(), utf8)
    return "INBOX" if name.upper() == "INBOX" else name


def _options(s: Scanner, allowed: frozenset[str], what: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in s.paren_list(what):
        option = raw.decode("ascii").upper()
        if option not in allowed:
            raise ImapSyntaxError(f"unknown {what} {option}")
        if option not in out:
            out.append(option)
    return tuple(out)


def _flag_list(s: Scanner) -> tuple[str, ...]:
    s.expect(b"(")
    flags: list[str] = []
    if s.try_byte(b")"):
        return ()
    while True:
        flag = s.flag()
        if flag not in flags:
            flags.append(flag)
        if s.try_byte(b")"):
            return tuple(flags)
        s.sp()


def _status_items(s: Scanner) -> tuple[str, ...]:
    items = _options(s, STATUS_ITEMS, "status item")
    if not items:
        raise ImapSyntaxError("empty status item list")
    return items


# -- command parsers (tag, scanner positioned after the command word, utf8) -------------------


def _no_args(cls: Callable[[str], Command]) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.expect_end()
        return cls(tag)

    return parse


def _authenticate(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    mechanism = s.keyword()
    initial: bytes | None = None
    if s.try_sp():
        token = s.atom()
        if token == b"=":
            initial = b""
        elif _BASE64.fullmatch(token):
            initial = token
        else:
            raise ImapSyntaxError("invalid SASL initial response")
    s.expect_end()
    return Authenticate(tag, mechanism, initial)


def _login(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    user = _utf8(s.astring(), "user name")
    s.sp()
    password = _utf8(s.astring(), "password")
    s.expect_end()
    return Login(tag, user, password)


def _enable(tag: str, s: Scanner, utf8: bool) -> Command:
    caps: list[str] = []
    while s.try_sp():
        caps.append(s.keyword())
    if not caps:
        raise ImapSyntaxError("ENABLE needs a capability")
    s.expect_end()
    return Enable(tag, tuple(caps))


def _select(readonly: bool) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.sp()
        mailbox = _mailbox(s, utf8)
        condstore = False
        if s.try_sp():
            params = _options(s, frozenset({"CONDSTORE"}), "select parameter")
            if not params:
                raise ImapSyntaxError("empty select parameter list")
            condstore = True
        s.expect_end()
        return Select(tag, mailbox, readonly, condstore)

    return parse


def _create(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    mailbox = _mailbox(s, utf8)
    uses: list[str] = []
    if s.try_sp():
        s.expect(b"(")
        if s.keyword() != "USE":
            raise ImapSyntaxError("unknown CREATE parameter")
        s.sp()
        s.expect(b"(")
        while not s.try_byte(b")"):
            if uses:
                s.sp()
            s.expect(b"\\", "expected a special-use attribute")
            attr = "\\" + s.atom().decode("ascii")
            uses.append(USE_ATTRIBUTES.get(attr.upper(), attr))
        s.expect(b")")
    s.expect_end()
    return Create(tag, mailbox, tuple(uses))


def _one_mailbox(cls: Callable[[str, str], Command]) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.sp()
        mailbox = _mailbox(s, utf8)
        s.expect_end()
        return cls(tag, mailbox)

    return parse


def _rename(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    old = _mailbox(s, utf8)
    s.sp()
    new = _mailbox(s, utf8)
    s.expect_end()
    return Rename(tag, old, new)


def _list(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    select: tuple[str, ...] = ()
    if s.peek() == 0x28:  # "(" selection options (RFC 5258)
        select = _options(s, SELECT_OPTIONS, "selection option")
        if select and set(select) <= {"RECURSIVEMATCH", "REMOTE"} and "RECURSIVEMATCH" in select:
            raise ImapSyntaxError("RECURSIVEMATCH needs another selection option")
        s.sp()
    reference = decode_mailbox(s.astring(), utf8)
    s.sp()
    patterns: list[str] = []
    if s.try_byte(b"("):
        while True:
            patterns.append(decode_mailbox(s.list_mailbox(), utf8))
            if s.try_byte(b")"):
                break
            s.sp()
    else:
        patterns.append(decode_mailbox(s.list_mailbox(), utf8))
    returns: list[str] = []
    status: tuple[str, ...] = ()
    if s.try_sp():
        if s.keyword() != "RETURN":
            raise ImapSyntaxError("expected RETURN")
        s.sp()
        s.expect(b"(")
        while not s.try_byte(b")"):
            if returns:
                s.sp()
            option = s.keyword()
            if option not in RETURN_OPTIONS:
                raise ImapSyntaxError(f"unknown return option {option}")
            if option == "STATUS":
                s.sp()
                status = _status_items(s)
            if option not in returns:
                returns.append(option)
    s.expect_end()
    return List(tag, reference, tuple(patterns), select, tuple(returns), status)


def _lsub(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    reference = decode_mailbox(s.astring(), utf8)
    s.sp()
    pattern = decode_mailbox(s.list_mailbox(), utf8)
    s.expect_end()
    return Lsub(tag, reference, pattern)


def _status(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    mailbox = _mailbox(s, utf8)
    s.sp()
    items = _status_items(s)
    s.expect_end()
    return Status(tag, mailbox, items)


def _append(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    mailbox = _mailbox(s, utf8)
    messages: list[AppendMessage] = []
    while True:  # MULTIAPPEND (RFC 3502): one or more messages
        s.sp()
        flags: tuple[str, ...] = ()
        when: float | None = None
        if s.peek() == 0x28:  # "("
            flags = _flag_list(s)
            s.sp()
        if s.peek() == 0x22:  # '"'
            when = s.date_time()
            s.sp()
        if s.peek() not in (0x7B, 0x7E):  # "{" "~"
            raise ImapSyntaxError("APPEND data must be a literal")
        messages.append(AppendMessage(flags, when, s.literal(allow8=True)))
        if s.at_end():
            break
    s.expect_end()
    return Append(tag, mailbox, tuple(messages))


def _expunge(tag: str, s: Scanner, utf8: bool) -> Command:
    s.expect_end()
    return Expunge(tag)


def _uid_expunge(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    uids = s.sequence_set()
    s.expect_end()
    return Expunge(tag, True, uids)


def _search(uid: bool) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.sp()
        returns: tuple[str, ...] = ()
        charset: str | None = None
        if s.peek_keyword() == "RETURN":
            s.atom()
            s.sp()
            returns = _options(s, SEARCH_RETURN, "search return option") or ("ALL",)
            s.sp()
        if s.peek_keyword() == "CHARSET":
            s.atom()
            s.sp()
            charset = s.astring().decode("ascii", "replace").upper()
            if charset not in SEARCH_CHARSETS:
                raise UnknownCharset(f"unsupported charset {charset}")
            s.sp()
        keys = [parse_search_key(s)]
        while s.try_sp():
            keys.append(parse_search_key(s))
        s.expect_end()
        key = keys[0] if len(keys) == 1 else AndKey(tuple(keys))
        return Search(tag, uid, charset, key, returns)

    return parse


def _section(s: Scanner, binary: bool) -> Section:
    s.expect(b"[")
    parts: list[int] = []
    text: str | None = None
    fields: list[str] = []
    if not s.try_byte(b"]"):
        while s.peek() in range(0x30, 0x3A):
            parts.append(s.nz_number(what="part number"))
            if not s.try_byte(b"."):
                break
            if s.peek() not in range(0x30, 0x3A):
                text = "."  # a section text follows
                break
        if text is not None or not parts:
            if binary:
                raise ImapSyntaxError("BINARY takes part numbers only")
            m = _SECTION_TEXT.match(s.buf, s.pos)
            text = m.group(0).decode("ascii").upper() if m else ""
            if m:
                s.pos = m.end()
            allowed = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT")
            if text not in allowed and not (text == "MIME" and parts):
                raise ImapSyntaxError("invalid section")
            if text.startswith("HEADER.FIELDS"):
                s.sp()
                s.expect(b"(")
                while True:
                    raw = s.astring()
                    if not raw.isascii() or not raw:
                        raise ImapSyntaxError("invalid header field name")
                    fields.append(raw.decode("ascii").upper())
                    if s.try_byte(b")"):
                        break
                    s.sp()
        s.expect(b"]", "expected ']'")
    return Section(tuple(parts), text, tuple(fields))


def _partial(s: Scanner) -> tuple[int, int] | None:
    if not s.try_byte(b"<"):
        return None
    start = s.number(MAX_NUMBER64, "partial origin")
    s.expect(b".")
    length = s.nz_number(MAX_NUMBER64, "partial length")
    s.expect(b">")
    return (start, length)


def _fetch_item(s: Scanner) -> FetchItem:
    m = _FETCH_NAME.match(s.buf, s.pos)
    if m is None:
        raise ImapSyntaxError("expected a fetch item")
    s.pos = m.end()
    name = m.group(0).decode("ascii").upper()
    if name in _PLAIN_ITEMS:
        return FetchItem(name)
    if name == "BODY" and s.peek() != 0x5B:  # "["
        return FetchItem("BODY")
    if name in ("BODY", "BODY.PEEK"):
        section = _section(s, binary=False)
        return FetchItem("BODY", section, _partial(s), name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK"):
        section = _section(s, binary=True)
        return FetchItem("BINARY", section, _partial(s), name == "BINARY.PEEK")
    if name == "BINARY.SIZE":
        return FetchItem("BINARY.SIZE", _section(s, binary=True))
    raise ImapSyntaxError(f"unknown fetch item {name}")


def _fetch(uid: bool) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.sp()
        sequence = s.sequence_set()
        s.sp()
        items: list[FetchItem] = []
        if s.try_byte(b"("):
            while True:
                items.append(_fetch_item(s))
                if s.try_byte(b")"):
                    break
                s.sp()
        elif s.peek_keyword() in _MACROS:
            items = [FetchItem(n) for n in _MACROS[s.keyword()]]
        else:
            items.append(_fetch_item(s))
        changed_since: int | None = None
        if s.try_sp():
            s.expect(b"(")
            while not s.try_byte(b")"):
                if changed_since is not None:
                    s.sp()
                modifier = s.keyword()
                if modifier != "CHANGEDSINCE":  # VANISHED needs QRESYNC, not offered
                    raise ImapSyntaxError(f"unknown fetch modifier {modifier}")
                s.sp()
                changed_since = s.number(MAX_NUMBER64, "mod-sequence")
            if changed_since is None:
                raise ImapSyntaxError("empty fetch modifier list")
        s.expect_end()
        unique = list(dict.fromkeys(items))
        if uid and FetchItem("UID") not in unique:
            unique.insert(0, FetchItem("UID"))
        if changed_since is not None and FetchItem("MODSEQ") not in unique:
            unique.append(FetchItem("MODSEQ"))
        return Fetch(tag, uid, sequence, tuple(unique), changed_since)

    return parse


def _store(uid: bool) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.sp()
        sequence = s.sequence_set()
        s.sp()
        unchanged_since: int | None = None
        if s.try_byte(b"("):
            if s.keyword() != "UNCHANGEDSINCE":
                raise ImapSyntaxError("unknown store modifier")
            s.sp()
            unchanged_since = s.number(MAX_NUMBER64, "mod-sequence")
            s.expect(b")")
            s.sp()
        mode: Literal["set", "add", "remove"] = "set"
        if s.try_byte(b"+"):
            mode = "add"
        elif s.try_byte(b"-"):
            mode = "remove"
        word = s.keyword()
        if word not in ("FLAGS", "FLAGS.SILENT"):
            raise ImapSyntaxError("expected FLAGS or FLAGS.SILENT")
        s.sp()
        if s.peek() == 0x28:
            flags = _flag_list(s)
        else:
            bare = [s.flag()]
            while s.try_sp():
                bare.append(s.flag())
            flags = tuple(dict.fromkeys(bare))
        s.expect_end()
        return Store(tag, uid, sequence, mode, word == "FLAGS.SILENT", flags, unchanged_since)

    return parse


def _copy(cls: type[Copy] | type[Move], uid: bool) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.sp()
        sequence = s.sequence_set()
        s.sp()
        mailbox = _mailbox(s, utf8)
        s.expect_end()
        return cls(tag, uid, sequence, mailbox)

    return parse


def _id(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    if s.peek_keyword() == "NIL":
        s.atom()
        s.expect_end()
        return Id(tag, None)
    s.expect(b"(")
    params: dict[str, str | None] = {}
    while True:
        if len(params) >= _MAX_ID_PAIRS:
            raise ImapSyntaxError("too many ID fields")
        key = _utf8(s.string(), "ID field")
        s.sp()
        raw = s.nstring()
        params[key] = None if raw is None else _utf8(raw, "ID value")
        if s.try_byte(b")"):
            break
        s.sp()
    s.expect_end()
    return Id(tag, params)


_UID_PARSERS: Final[dict[str, Callable[[str, Scanner, bool], Command]]] = {
    "FETCH": _fetch(True),
    "STORE": _store(True),
    "SEARCH": _search(True),
    "COPY": _copy(Copy, True),
    "MOVE": _copy(Move, True),
    "EXPUNGE": _uid_expunge,
}


def _uid(tag: str, s: Scanner, utf8: bool) -> Command:
    s.sp()
    parser = _UID_PARSERS.get(s.keyword())
    if parser is None:
        raise ImapSyntaxError("unknown UID command")
    return parser(tag, s, utf8)


PARSERS: Final[dict[str, Callable[[str, Scanner, bool], Command]]] = {
    "CAPABILITY": _no_args(Capability),
    "NOOP": _no_args(Noop),
    "LOGOUT": _no_args(Logout),
    "STARTTLS": _no_args(StartTls),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select(False),
    "EXAMINE": _select(True),
    "CREATE": _create,
    "DELETE": _one_mailbox(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(Subscribe),
    "UNSUBSCRIBE": _one_mailbox(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_args(Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "CHECK": _no_args(Check),
    "CLOSE": _no_args(Close),
    "UNSELECT": _no_args(Unselect),
    "EXPUNGE": _expunge,
    "SEARCH": _search(False),
    "FETCH": _fetch(False),
    "STORE": _store(False),
    "COPY": _copy(Copy, False),
    "MOVE": _copy(Move, False),
    "IDLE": _no_args(Idle),
    "ID": _id,
    "UID": _uid,
}


def parse_command(raw: RawCommand, utf8: bool = False) -> Command:
    """The command ``raw`` holds, checked against the grammar.

    ``utf8``: the session enabled IMAP4rev2 or UTF8=ACCEPT (mailbox names are UTF-8, not
    modified UTF-7).

    Raises:
        UnknownCharset: SEARCH with a charset other than UTF-8/US-ASCII.
        ImapSyntaxError: anything else the grammar refuses (``"unknown command"`` for a
            name not in ``PARSERS``).
    """
    parser = PARSERS.get(raw.name)
    if parser is None:
        raise ImapSyntaxError("unknown command")
    return parser(raw.tag, Scanner(raw.pieces), utf8)
