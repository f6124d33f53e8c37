"""SEARCH keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4, CONDSTORE's MODSEQ from RFC 7162 §3.1.5,
SEARCHRES's ``$`` from RFC 5182): the AST, its parser and its evaluation.

Rules of this file:

1. The AST is a handful of frozen dataclasses (``SearchKey``); synonyms are folded while
   parsing (``NEW`` is ``RECENT UNSEEN``, ``OLD`` is ``NOT RECENT``, ``SUBJECT x`` is
   ``HEADER SUBJECT x``), so evaluation has one case per idea.
2. ``matches`` asks the message's ``SearchView`` for what a key needs and nothing more: keys on
   flags, numbers, sizes and internal dates never call ``info()``, so a ``SEARCH UNSEEN`` over
   a large mailbox parses no message. ``AndKey`` evaluates cheap keys first.
3. Text keys match case-insensitively as substrings of decoded text (RFC 2047 words, quoted-
   printable and base64 bodies in their charset), best effort; ``HEADER name ""`` matches every
   message that has the field.
4. Parsing is bounded: keys nest at most ``MAX_KEY_DEPTH`` deep (``NOT NOT NOT ...`` included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

from ._syntax import (
    MAX_NUMBER64,
    ImapSyntaxError,
    Scanner,
    SequenceSet,
    epoch_day,
    normalize_flag,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import date

    from ._message import MessageInfo

__all__ = [
    "MAX_KEY_DEPTH",
    "AllKey",
    "AndKey",
    "DateKey",
    "FlagKey",
    "ModSeqKey",
    "NotKey",
    "OrKey",
    "RecentKey",
    "SearchKey",
    "SearchView",
    "SequenceKey",
    "SizeKey",
    "TextKey",
    "matches",
    "parse_search_key",
    "replace_saved",
]

MAX_KEY_DEPTH: Final = 64


class SearchView(Protocol):
    """What ``matches`` reads of one message; the engine implements it."""

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> frozenset[str]: ...  # system flags canonical (\\Seen) + keywords
    @property
    def size(self) -> int: ...
    @property
    def internal_date(self) -> float: ...
    @property
    def modseq(self) -> int: ...
    @property
    def recent(self) -> bool: ...
    @property
    def largest_seq(self) -> int: ...
    @property
    def largest_uid(self) -> int: ...
    def info(self) -> MessageInfo: ...


@dataclass(frozen=True, slots=True)
class AllKey:
    """ALL."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    """ANSWERED DELETED DRAFT FLAGGED SEEN KEYWORD k (``present``) and their UN- forms."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class RecentKey:
    """RECENT (``present``), OLD (not present); NEW is RECENT UNSEEN."""

    present: bool = True


@dataclass(frozen=True, slots=True)
class SizeKey:
    """LARGER n (size > n) / SMALLER n (size < n)."""

    op: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE (``internal``: the internal date's UTC day) and SENTBEFORE/SENTON/
    SENTSINCE (``sent``: the Date header's day, time and zone ignored)."""

    field: Literal["internal", "sent"]
    op: Literal["before", "on", "since"]
    day: date


@dataclass(frozen=True, slots=True)
class TextKey:
    """HEADER name value (``field`` "header"; SUBJECT FROM TO CC BCC are headers too),
    BODY value (``field`` "body"), TEXT value (``field`` "text": header or body)."""

    field: Literal["header", "body", "text"]
    value: str
    header: str | None = None


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """A sequence set (``uid`` False) or UID set; ``$`` until the engine substitutes it
    (``replace_saved``) matches nothing."""

    sequence: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ n: messages whose modseq is n or higher (RFC 7162 §3.1.5); the optional entry
    name and type are accepted and ignored (aionet keeps one modseq per message)."""

    modseq: int


@dataclass(frozen=True, slots=True)
class NotKey:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class OrKey:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class AndKey:
    """Several keys that must all match (a search's key list, a parenthesised list)."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    AllKey
    | FlagKey
    | RecentKey
    | SizeKey
    | DateKey
    | TextKey
    | SequenceKey
    | ModSeqKey
    | NotKey
    | OrKey
    | AndKey
)

# -- parsing ----------------------------------------------------------------------------------

_FLAG_KEYS: Final = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS: Final = {"SUBJECT": "subject", "FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc"}
_DATE_KEYS: Final[
    dict[str, tuple[Literal["internal", "sent"], Literal["before", "on", "since"]]]
] = {
    "BEFORE": ("internal", "before"),
    "ON": ("internal", "on"),
    "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"),
    "SENTON": ("sent", "on"),
    "SENTSINCE": ("sent", "since"),
}
_SEQ_START: Final = frozenset(b"0123456789*$")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImapSyntaxError("search string is not UTF-8") from None


def parse_search_key(scanner: Scanner, depth: int = 0) -> SearchKey:
    """One search key at the scanner's position.

    Raises:
        ImapSyntaxError: not a search key, or nested deeper than ``MAX_KEY_DEPTH``.
    """
    if depth > MAX_KEY_DEPTH:
        raise ImapSyntaxError("search keys too deeply nested")
    c = scanner.peek()
    if c == 0x28:  # "("
        scanner.expect(b"(")
        keys = [parse_search_key(scanner, depth + 1)]
        while not scanner.try_byte(b")"):
            scanner.sp()
            keys.append(parse_search_key(scanner, depth + 1))
        return keys[0] if len(keys) == 1 else AndKey(tuple(keys))
    if c in _SEQ_START:
        return SequenceKey(scanner.sequence_set())
    word = scanner.keyword()
    if word in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[word]
        return FlagKey(flag, present)
    if word == "ALL":
        return AllKey()
    if word in ("RECENT", "OLD"):
        return RecentKey(word == "RECENT")
    if word == "NEW":
        return AndKey((RecentKey(True), FlagKey("\\Seen", False)))
    scanner.sp()
    if word in ("KEYWORD", "UNKEYWORD"):
        keyword = normalize_flag(scanner.atom())
        if keyword.startswith("\\"):
            raise ImapSyntaxError("KEYWORD takes a keyword, not a system flag")
        return FlagKey(keyword, word == "KEYWORD")
    if word in _HEADER_KEYS:
        return TextKey("header", _text(scanner.astring()), _HEADER_KEYS[word])
    if word == "HEADER":
        name = _text(scanner.astring()).lower()
        scanner.sp()
        return TextKey("header", _text(scanner.astring()), name)
    if word in ("BODY", "TEXT"):
        return TextKey("body" if word == "BODY" else "text", _text(scanner.astring()))
    if word in _DATE_KEYS:
        field, op = _DATE_KEYS[word]
        return DateKey(field, op, scanner.search_date())
    if word in ("LARGER", "SMALLER"):
        return SizeKey("larger" if word == "LARGER" else "smaller", scanner.number(MAX_NUMBER64))
    if word == "UID":
        return SequenceKey(scanner.sequence_set(), uid=True)
    if word == "NOT":
        return NotKey(parse_search_key(scanner, depth + 1))
    if word == "OR":
        left = parse_search_key(scanner, depth + 1)
        scanner.sp()
        return OrKey(left, parse_search_key(scanner, depth + 1))
    if word == "MODSEQ":
        if scanner.peek() == 0x22:  # entry-name SP entry-type-req
            scanner.quoted()
            scanner.sp()
            if scanner.keyword() not in ("PRIV", "SHARED", "ALL"):
                raise ImapSyntaxError("invalid MODSEQ entry type")
            scanner.sp()
        return ModSeqKey(scanner.number(MAX_NUMBER64, "mod-sequence"))
    raise ImapSyntaxError(f"unknown search key {word}")


def replace_saved(key: SearchKey, saved: SequenceSet) -> SearchKey:
    """The key with each ``$`` replaced by the saved result ``saved`` (a UID set): the
    engine's SEARCHRES substitution (RFC 5182)."""
    if isinstance(key, SequenceKey) and key.sequence.is_saved:
        return SequenceKey(saved, uid=True)
    if isinstance(key, NotKey):
        return NotKey(replace_saved(key.key, saved))
    if isinstance(key, OrKey):
        return OrKey(replace_saved(key.left, saved), replace_saved(key.right, saved))
    if isinstance(key, AndKey):
        return AndKey(tuple(replace_saved(k, saved) for k in key.keys))
    return key


# -- evaluation -------------------------------------------------------------------------------


def matches(key: SearchKey, msg: SearchView) -> bool:
    """Whether the message matches the key (see the module docstring)."""
    return _EVAL[type(key)](key, msg)


def _all(key: SearchKey, msg: SearchView) -> bool:
    return True


def _flag(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, FlagKey)
    flags = msg.flags
    if key.flag in flags:
        return key.present
    if not key.flag.startswith("\\"):  # keywords compare case-insensitively
        wanted = key.flag.lower()
        if any(f.lower() == wanted for f in flags):
            return key.present
    return not key.present


def _recent(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, RecentKey)
    return msg.recent == key.present


def _size(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, SizeKey)
    return msg.size > key.size if key.op == "larger" else msg.size < key.size


def _date(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, DateKey)
    day: date | None = None
    if key.field == "sent":
        day = msg.info().sent_date()
    if day is None:  # no usable Date header: the internal date stands in
        day = epoch_day(msg.internal_date)
    if key.op == "before":
        return day < key.day
    if key.op == "on":
        return day == key.day
    return day >= key.day


def _text_key(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, TextKey)
    needle = key.value.casefold()
    info = msg.info()
    if key.field == "header":
        assert key.header is not None
        return any(needle in value.casefold() for value in info.header_text(key.header))
    if key.field == "text" and needle in info.header_block().casefold():
        return True
    return needle in info.text().casefold()


def _sequence(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, SequenceKey)
    if key.uid:
        return key.sequence.contains(msg.uid, msg.largest_uid)
    return key.sequence.contains(msg.seq, msg.largest_seq)


def _modseq(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, ModSeqKey)
    return msg.modseq >= key.modseq


def _not(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, NotKey)
    return not matches(key.key, msg)


def _or(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, OrKey)
    left, right = key.left, key.right
    if _costly(left) and not _costly(right):
        left, right = right, left
    return matches(left, msg) or matches(right, msg)


def _and(key: SearchKey, msg: SearchView) -> bool:
    assert isinstance(key, AndKey)
    return all(matches(k, msg) for k in sorted(key.keys, key=_costly))  # cheap ones first


def _costly(key: SearchKey) -> bool:
    """True when evaluating the key may parse the message."""
    if isinstance(key, TextKey):
        return True
    if isinstance(key, DateKey):
        return key.field == "sent"
    if isinstance(key, NotKey):
        return _costly(key.key)
    if isinstance(key, OrKey):
        return _costly(key.left) or _costly(key.right)
    if isinstance(key, AndKey):
        return any(_costly(k) for k in key.keys)
    return False


_EVAL: Final[dict[type, Callable[[SearchKey, SearchView], bool]]] = {
    AllKey: _all,
    FlagKey: _flag,
    RecentKey: _recent,
    SizeKey: _size,
    DateKey: _date,
    TextKey: _text_key,
    SequenceKey: _sequence,
    ModSeqKey: _modseq,
    NotKey: _not,
    OrKey: _or,
    AndKey: _and,
}
