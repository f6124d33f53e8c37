"""Parsing IMAP commands: ``parse_command`` turns a ``RawCommand`` into one of the command
values of ``_commands.py``, checked against the grammar of RFC 9051 §9 (RFC 3501 §9) and of
the extensions the server offers.

Rules of this file:

1. ``parse_command`` knows the commands by name in one table, ``PARSERS``; any other name is
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
from typing import TYPE_CHECKING, Final, Literal

from ._commands import (
    Append,
    AppendMessage,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    FetchItem,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Rename,
    Search,
    Select,
    StartTls,
    Status,
    Store,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from ._fetch import MACROS, fetch_item
from ._search import AndKey, parse_search_key
from ._syntax import (
    MAX_NUMBER64,
    ImapSyntaxError,
    Scanner,
    UnknownCharset,
    decode_mailbox,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._reader import RawCommand

__all__ = ["PARSERS", "parse_command"]

# -- helpers ----------------------------------------------------------------------------------

_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


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


def _fetch(uid: bool) -> Callable[[str, Scanner, bool], Command]:
    def parse(tag: str, s: Scanner, utf8: bool) -> Command:
        s.sp()
        sequence = s.sequence_set()
        s.sp()
        items: list[FetchItem] = []
        if s.try_byte(b"("):
            while True:
                items.append(fetch_item(s))
                if s.try_byte(b")"):
                    break
                s.sp()
        elif s.peek_keyword() in MACROS:
            items = [FetchItem(n) for n in MACROS[s.keyword()]]
        else:
            items.append(fetch_item(s))
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
