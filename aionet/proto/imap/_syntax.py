"""IMAP tokens and small grammar pieces (RFC 9051 §9, RFC 3501 §9): the errors, the argument
scanner the command parser walks, sequence sets, dates and modified UTF-7 mailbox names.

Rules of this file:

1. Everything a command argument can be (atom, quoted string, literal, number, sequence set,
   flag, date) is read by ``Scanner``; the command and search parsers never index bytes
   themselves.
2. Every failure is an ``ImapSyntaxError`` whose text is fit for ``tag BAD <text>``; nothing
   else is raised for any input (a hostile number is refused by its digit count, before
   ``int()``).
3. Regular expressions are compiled once, here, at import.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final

from ...errors import ProtocolError
from ._response import astring

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "MAX_NUMBER",
    "MAX_NUMBER64",
    "ImapSyntaxError",
    "Scanner",
    "Section",
    "SequenceSet",
    "UnknownCharset",
    "decode_mailbox",
    "encode_mailbox",
    "normalize_flag",
]

#: nz-number / number: 32 bits unsigned (RFC 9051 §9).
MAX_NUMBER: Final = 2**32 - 1
#: number64 / mod-sequence-value: 63 bits (RFC 9051 §9, RFC 7162 §7).
MAX_NUMBER64: Final = 2**63 - 1


class ImapSyntaxError(ProtocolError):
    """A command the grammar refuses; ``str(error)`` is the text of the ``BAD`` reply."""


class UnknownCharset(ImapSyntaxError):
    """SEARCH with a CHARSET other than UTF-8 or US-ASCII: answer
    ``NO [BADCHARSET (UTF-8 US-ASCII)]`` (RFC 9051 §6.4.4), not BAD."""


# -- character classes (RFC 9051 §9) ------------------------------------------------------------
# ATOM-CHAR: any CHAR except atom-specials: ( ) { SP CTL % * " \ ]
_ATOM = re.compile(rb'[^(){ %*"\\\]\x00-\x1f\x7f-\xff]+')
# ASTRING-CHAR = ATOM-CHAR / "]"
_ASTRING = re.compile(rb'[^(){ %*"\\\x00-\x1f\x7f-\xff]+')
# list-char = ATOM-CHAR / list-wildcards / resp-specials
_LIST_CHARS = re.compile(rb'[^(){ "\\\x00-\x1f\x7f-\xff]+')
# quoted = DQUOTE *QUOTED-CHAR DQUOTE; 8-bit allowed (UTF-8 under IMAP4rev2 / UTF8=ACCEPT)
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb"\\([\"\\])")
# literal marker, at the end of a line segment: ["~"] "{" number ["+"] "}"
_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")
_DIGITS = re.compile(rb"[0-9]+")
_SEQ_CHARS = re.compile(rb"[0-9:*,$]+")
_SEQ_RANGE = re.compile(r"([0-9]+|\*)(?::([0-9]+|\*))?")
_SEARCH_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})"'
)

MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER: Final = {m.upper().encode(): i for i, m in enumerate(MONTHS, 1)}

SYSTEM_FLAGS: Final = {
    f.upper(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
}


def _number(digits: bytes, limit: int, what: str) -> int:
    if len(digits) > len(str(limit)):
        raise ImapSyntaxError(f"{what} out of range")
    value = int(digits)
    if value > limit:
        raise ImapSyntaxError(f"{what} out of range")
    return value


def normalize_flag(flag: bytes, *, allow_recent: bool = False) -> str:
    """A flag as sent (``\\seen``, ``$Forwarded``) in its canonical spelling.

    System flags are case-insensitive and normalised (``\\Seen``); keywords are atoms kept as
    sent. ``\\Recent`` only where ``allow_recent`` (never in STORE/APPEND), other backslash
    names are refused: RFC 9051 reserves them for future standards.
    """
    text = flag.decode("ascii")
    if not text.startswith("\\"):
        return text
    upper = text.upper()
    if upper in SYSTEM_FLAGS:
        return SYSTEM_FLAGS[upper]
    if upper == "\\RECENT" and allow_recent:
        return "\\Recent"
    raise ImapSyntaxError(f"invalid flag {text}")


# -- sequence sets ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A ``sequence-set`` (RFC 9051 §9): ``1,3:5,7:*`` or ``$`` (SEARCHRES, RFC 5182).

    ``ranges`` holds ``(first, last)`` pairs as sent, ``0`` standing for ``*``. A saved set
    (``$``) has no ranges: the engine substitutes the saved result; resolved as is it is
    empty, as RFC 5182 §2.1 says of a ``$`` with no saved result.
    """

    ranges: tuple[tuple[int, int], ...] = ()
    is_saved: bool = False

    @classmethod
    def parse(cls, text: str | bytes) -> SequenceSet:
        """Parse a sequence set.

        Raises:
            ImapSyntaxError: not a sequence set, a 0, or a number of 2**32 or more.
        """
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if text == "$":
            return cls(is_saved=True)
        ranges: list[tuple[int, int]] = []
        for part in text.split(","):
            m = _SEQ_RANGE.fullmatch(part)
            if m is None:
                raise ImapSyntaxError("invalid sequence set")
            first = cls._bound(m.group(1))
            last = first if m.group(2) is None else cls._bound(m.group(2))
            ranges.append((first, last))
        return cls(tuple(ranges))

    @staticmethod
    def _bound(token: str) -> int:
        if token == "*":
            return 0
        value = _number(token.encode(), MAX_NUMBER, "sequence number")
        if value == 0:
            raise ImapSyntaxError("invalid sequence number 0")
        return value

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The most compact set of these numbers (``1:3,7``), for ESEARCH ALL and COPYUID."""
        ranges: list[tuple[int, int]] = []
        for n in sorted(set(numbers)):
            if ranges and ranges[-1][1] == n - 1:
                ranges[-1] = (ranges[-1][0], n)
            else:
                ranges.append((n, n))
        return cls(tuple(ranges))

    def intervals(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged ``(lo, hi)`` spans clamped to 1..largest (``*`` is ``largest``): what
        an engine bisects its own sorted numbers with, never expanding a range."""
        spans: list[tuple[int, int]] = []
        for first, last in self.ranges:
            a = largest if first == 0 else first
            b = largest if last == 0 else last
            lo, hi = (a, b) if a <= b else (b, a)
            lo, hi = max(lo, 1), min(hi, largest)
            if lo <= hi:
                spans.append((lo, hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def resolve(self, largest: int) -> list[int]:
        """The numbers of the set that exist, ascending and unique; ``*`` is ``largest``.

        ``n:m`` counts in either order, and a range past ``largest`` is cut there (so
        ``UID 559:*`` always includes the largest UID, RFC 9051 §6.4.9).
        """
        out: list[int] = []
        for lo, hi in self.intervals(largest):
            out.extend(range(lo, hi + 1))
        return out

    def contains(self, n: int, largest: int) -> bool:
        """``n in self.resolve(largest)``, without building the list."""
        if not 1 <= n <= largest:
            return False
        for first, last in self.ranges:
            a = largest if first == 0 else first
            b = largest if last == 0 else last
            if a <= n <= b or b <= n <= a:
                return True
        return False

    def exceeds(self, largest: int) -> bool:
        """True when a number of the set (not ``*``) is above ``largest``: for message
        sequence numbers that is an error (RFC 9051 §9 ``seq-number``), for UIDs it is not."""
        return any(first > largest or last > largest for first, last in self.ranges)

    def __str__(self) -> str:
        if self.is_saved:
            return "$"
        return ",".join((_star(a) if a == b else f"{_star(a)}:{_star(b)}") for a, b in self.ranges)


def _star(n: int) -> str:
    return "*" if n == 0 else str(n)


@dataclass(frozen=True, slots=True)
class Section:
    """A BODY[...] / BINARY[...] section (RFC 9051 §6.4.5): part numbers, then ``text`` one of
    None, HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME; ``fields`` upper-cased."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        spec = ".".join(str(p) for p in self.part)
        if self.text is not None:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.fields:
            names = b" ".join(astring(f) for f in self.fields).decode("ascii")
            spec = f"{spec} ({names})"
        return spec


# -- modified UTF-7 (RFC 3501 §5.1.3) ---------------------------------------------------------


def encode_mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name as sent on the wire: UTF-8 when the client enabled it (IMAP4rev2,
    UTF8=ACCEPT), else modified UTF-7. Quote the result with ``astring``."""
    if utf8:
        return name.encode("utf-8", "surrogatepass")
    out = bytearray()
    run: list[str] = []
    for ch in name:
        if "\x20" <= ch <= "\x7e":
            if run:
                out += _b64_run("".join(run))
                run.clear()
            out += b"&-" if ch == "&" else ch.encode("ascii")
        else:
            run.append(ch)
    if run:
        out += _b64_run("".join(run))
    return bytes(out)


def _b64_run(text: str) -> bytes:
    raw = base64.b64encode(text.encode("utf-16-be", "surrogatepass"))
    return b"&" + raw.rstrip(b"=").replace(b"/", b",") + b"-"


def decode_mailbox(raw: bytes, utf8: bool = False) -> str:
    """A mailbox name (or LIST pattern) from the wire to Unicode.

    With ``utf8`` the bytes are UTF-8 and ``&`` is an ordinary character; otherwise they are
    modified UTF-7, checked strictly (RFC 3501 §5.1.3: printable ASCII is never encoded, a
    shift sequence ends with ``-``, ``&-`` is ``&``, no 8-bit bytes).

    Raises:
        ImapSyntaxError: invalid UTF-8, or invalid modified UTF-7.
    """
    if utf8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ImapSyntaxError("mailbox name is not valid UTF-8") from None
    out: list[str] = []
    i, n = 0, len(raw)
    last_shift_end = -1
    while i < n:
        c = raw[i]
        if c != 0x26:  # "&"
            if not 0x20 <= c <= 0x7E:
                raise ImapSyntaxError("mailbox name is not valid modified UTF-7")
            out.append(chr(c))
            i += 1
            continue
        end = raw.find(b"-", i + 1)
        if end < 0:
            raise ImapSyntaxError("mailbox name is not valid modified UTF-7")
        if end == i + 1:
            out.append("&")
        else:
            if last_shift_end == i:  # two adjacent encoded runs must have been one
                raise ImapSyntaxError("mailbox name is not valid modified UTF-7")
            out.append(_decode_run(raw[i + 1 : end]))
            last_shift_end = end + 1
        i = end + 1
    return "".join(out)


_MB64 = re.compile(rb"[A-Za-z0-9+,]+")


def _decode_run(run: bytes) -> str:
    bad = ImapSyntaxError("mailbox name is not valid modified UTF-7")
    if _MB64.fullmatch(run) is None or len(run) % 4 == 1:
        raise bad
    padded = run.replace(b",", b"/") + b"=" * (-len(run) % 4)
    try:
        data = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise bad from None
    # the unused bits of the last base64 character must be zero (canonical form)
    if base64.b64encode(data).rstrip(b"=") != padded.rstrip(b"="):
        raise bad
    if len(data) % 2:
        raise bad
    try:
        text = data.decode("utf-16-be")
    except UnicodeDecodeError:
        raise bad from None
    if any("\x20" <= ch <= "\x7e" for ch in text):  # printable ASCII must be itself
        raise bad
    return text


# -- dates ------------------------------------------------------------------------------------


def parse_search_date(token: bytes) -> date:
    """``d-Mon-yyyy`` (1 or 2 digit day, month case-insensitive).

    Raises:
        ImapSyntaxError: not such a date, or not a real day.
    """
    m = _SEARCH_DATE.fullmatch(token)
    month = _MONTH_NUMBER.get(m.group(2).upper()) if m else None
    if m is None or month is None:
        raise ImapSyntaxError("invalid date")
    try:
        return date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        raise ImapSyntaxError("invalid date") from None


# -- the argument scanner ---------------------------------------------------------------------


class Scanner:
    """A cursor over a command's arguments: line segments with literals between them.

    ``pieces`` alternates text and literal data: ``(text, literal, text, ..., text)``; each
    text but the last ends with the literal marker its literal replaced.
    """

    __slots__ = ("_index", "_pieces", "buf", "pos")

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self._pieces = pieces
        self._index = 0
        self.buf = pieces[0] if pieces else b""
        self.pos = 0

    # -- position ----------------------------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and self._index + 1 >= len(self._pieces)

    def peek(self) -> int:
        """The next byte, or -1 at the end of a segment."""
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def expect_end(self) -> None:
        if not self.at_end():
            raise ImapSyntaxError("unexpected arguments")

    def try_byte(self, char: bytes) -> bool:
        if self.buf.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def expect(self, char: bytes, text: str | None = None) -> None:
        if not self.try_byte(char):
            raise ImapSyntaxError(text or f"expected {char.decode()!r}")

    def sp(self) -> None:
        self.expect(b" ", "expected a space")

    def try_sp(self) -> bool:
        return self.try_byte(b" ")

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.buf, self.pos)
        if m is None:
            raise ImapSyntaxError(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    # -- tokens ------------------------------------------------------------------------------

    def atom(self) -> bytes:
        return self._match(_ATOM, "an atom")

    def keyword(self) -> str:
        """An atom, upper-cased (command words, options, search keys)."""
        return self.atom().decode("ascii").upper()

    def peek_keyword(self) -> str | None:
        m = _ATOM.match(self.buf, self.pos)
        return m.group(0).decode("ascii").upper() if m else None

    def quoted(self) -> bytes:
        m = _QUOTED.match(self.buf, self.pos)
        if m is None:
            raise ImapSyntaxError("invalid quoted string")
        self.pos = m.end()
        body = m.group(1)
        return _UNESCAPE.sub(rb"\1", body) if b"\\" in body else body

    def literal(self, *, allow8: bool = False) -> bytes:
        """The literal whose marker starts here; it must end its line segment."""
        m = _LITERAL.match(self.buf, self.pos)
        if m is None or m.end() != len(self.buf) or self._index + 1 >= len(self._pieces):
            raise ImapSyntaxError("invalid literal")
        if m.group(1) and not allow8:
            raise ImapSyntaxError("literal8 not allowed here")
        data = self._pieces[self._index + 1]
        self._index += 2
        self.buf = self._pieces[self._index] if self._index < len(self._pieces) else b""
        self.pos = 0
        return data

    def string(self, *, allow8: bool = False) -> bytes:
        c = self.peek()
        if c == 0x22:  # '"'
            return self.quoted()
        if c == 0x7B or (c == 0x7E and allow8):  # "{" or "~"
            return self.literal(allow8=allow8)
        raise ImapSyntaxError("expected a string")

    def astring(self) -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        return self._match(_ASTRING, "a string")

    def list_mailbox(self) -> bytes:
        """``list-mailbox``: wildcards allowed unquoted."""
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string()
        return self._match(_LIST_CHARS, "a mailbox pattern")

    def nstring(self) -> bytes | None:
        if self.peek_keyword() == "NIL":
            self.atom()
            return None
        return self.string()

    def number(self, limit: int = MAX_NUMBER, what: str = "number") -> int:
        return _number(self._match(_DIGITS, what), limit, what)

    def nz_number(self, limit: int = MAX_NUMBER, what: str = "number") -> int:
        value = self.number(limit, what)
        if value == 0:
            raise ImapSyntaxError(f"invalid {what} 0")
        return value

    def sequence_set(self) -> SequenceSet:
        return SequenceSet.parse(self._match(_SEQ_CHARS, "a sequence set"))

    def flag(self, *, allow_recent: bool = False) -> str:
        backslash = self.try_byte(b"\\")
        return normalize_flag(
            (b"\\" if backslash else b"") + self.atom(), allow_recent=allow_recent
        )

    def search_date(self) -> date:
        if self.peek() == 0x22:
            return parse_search_date(self.quoted())
        return parse_search_date(self.atom())

    def date_time(self) -> float:
        """``date-time`` (APPEND): epoch seconds with the zone applied."""
        m = _DATE_TIME.match(self.buf, self.pos)
        month = _MONTH_NUMBER.get(m.group(2).upper()) if m else None
        if m is None or month is None:
            raise ImapSyntaxError("invalid date-time")
        self.pos = m.end()
        day, _, year, hh, mm, ss, sign, zone = m.groups()
        minutes = int(zone[:2]) * 60 + int(zone[2:])
        if int(zone[2:]) > 59 or minutes >= 24 * 60:
            raise ImapSyntaxError("invalid date-time")
        tz = timezone(timedelta(minutes=-minutes if sign == b"-" else minutes))
        try:
            moment = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
        except ValueError:
            raise ImapSyntaxError("invalid date-time") from None
        return moment.timestamp()

    def paren_list(self, item: str = "item") -> list[bytes]:
        """``"(" atom *(SP atom) ")"`` of atoms (options, capabilities): may be empty."""
        self.expect(b"(")
        out: list[bytes] = []
        if self.try_byte(b")"):
            return out
        while True:
            out.append(self.atom())
            if self.try_byte(b")"):
                return out
            self.expect(b" ", f"expected a space or ')' in the {item} list")


def epoch_day(ts: float) -> date:
    """The UTC day of an epoch time (BEFORE/ON/SINCE compare internal dates by day)."""
    return datetime.fromtimestamp(ts, UTC).date()
