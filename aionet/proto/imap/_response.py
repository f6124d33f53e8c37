"""Building IMAP responses (RFC 9051 §7, grammar §9): strings, lists, status lines, dates.

Rules of this file:

1. Everything returns ``bytes``; a function that builds a whole response line ends it with
   CRLF (``tagged``, ``untagged``, ``continuation``), the others build one value.
2. A string is sent as an atom, a quoted string or a literal, whichever the grammar allows
   for its bytes: CR, LF and NUL always force a literal; 8-bit bytes force one too unless
   the session enabled UTF-8 (``utf8=True``, RFC 9051 / RFC 6855) and they are valid UTF-8.
3. Human-readable text (``tagged``/``continuation`` text and codes) cannot break the line:
   CR and LF in it become spaces. ``untagged`` takes its text as built (it may carry
   literals, e.g. a FETCH body).
4. Cheap on the hot path (a FETCH of 10,000 messages): bytes ``%``-formatting, regular
   expressions compiled at import, no per-call allocation beyond the result.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import tzinfo

__all__ = [
    "astring",
    "continuation",
    "format_date_time",
    "literal",
    "nstring",
    "plist",
    "quoted",
    "tagged",
    "untagged",
]

_ATOM: Final = re.compile(rb'[^(){ %*"\\\]\x00-\x1f\x7f-\xff]+')
_NEEDS_LITERAL: Final = re.compile(rb"[\r\n\x00]")
_MONTHS: Final = (
    b"Jan",
    b"Feb",
    b"Mar",
    b"Apr",
    b"May",
    b"Jun",
    b"Jul",
    b"Aug",
    b"Sep",
    b"Oct",
    b"Nov",
    b"Dec",
)


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def _quotable(data: bytes, utf8: bool) -> bool:
    if _NEEDS_LITERAL.search(data) is not None:
        return False
    if data.isascii():
        return True
    if not utf8:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def quoted(value: str | bytes, utf8: bool = False) -> bytes:
    """A quoted string (``"..."``, with ``\\`` and ``"`` escaped) when the bytes allow one,
    else a literal (see the module docstring)."""
    data = _bytes(value)
    if not _quotable(data, utf8):
        return literal(data)
    if b"\\" in data or b'"' in data:
        data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + data + b'"'


def astring(value: str | bytes, utf8: bool = False) -> bytes:
    """An atom when the value is one (``NIL`` excepted: clients read it as nil), else
    ``quoted``."""
    data = _bytes(value)
    if _ATOM.fullmatch(data) is not None and data.upper() != b"NIL":
        return data
    return quoted(data, utf8)


def nstring(value: str | bytes | None, utf8: bool = False) -> bytes:
    """``NIL`` for None, else ``quoted``."""
    return b"NIL" if value is None else quoted(value, utf8)


def literal(data: bytes, binary: bool = False) -> bytes:
    """Always a literal, ``{n}`` CRLF data (``~{n}`` with ``binary``: BINARY fetch data
    holding NUL bytes, RFC 3516)."""
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(data) + data


def plist(items: Iterable[str | bytes]) -> bytes:
    """A parenthesised list of already-built values (atoms, strings, sublists): ``(a b)``."""
    return b"(" + b" ".join([_bytes(i) for i in items]) + b")"


def _text(value: str | bytes) -> bytes:
    data = _bytes(value)
    if b"\r" in data or b"\n" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return data


def tagged(
    tag: str | bytes, status: str, text: str | bytes, code: str | bytes | None = None
) -> bytes:
    """``tag status [code] text`` CRLF; ``status`` is OK, NO or BAD; ``code`` is the response
    code without its brackets (``READ-WRITE``, ``APPENDUID 38505 3955``)."""
    if code is None:
        return b"%s %s %s\r\n" % (_bytes(tag), status.encode("ascii"), _text(text))
    return b"%s %s [%s] %s\r\n" % (_bytes(tag), status.encode("ascii"), _text(code), _text(text))


def untagged(text: str | bytes) -> bytes:
    """``* text`` CRLF; the text is sent as built (``5 EXISTS``, ``OK [UIDNEXT 4] next``)."""
    return b"* " + _bytes(text) + b"\r\n"


def continuation(text: str | bytes = "") -> bytes:
    """``+ text`` CRLF (``+ `` CRLF: an empty SASL challenge, RFC 9051 §7.5)."""
    return b"+ " + _text(text) + b"\r\n"


def format_date_time(ts: float, tz: tzinfo | None = None) -> bytes:
    """An INTERNALDATE value, the ``date-time`` of RFC 9051 §9 with its quotes:
    ``"17-Jul-1996 02:44:25 -0700"``; UTC unless ``tz`` is given."""
    moment = datetime.fromtimestamp(ts, tz or UTC)
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    sign = b"+" if minutes >= 0 else b"-"
    minutes = abs(minutes)
    return b'"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        moment.day,
        _MONTHS[moment.month - 1],
        moment.year,
        moment.hour,
        moment.minute,
        moment.second,
        sign,
        minutes // 60,
        minutes % 60,
    )
