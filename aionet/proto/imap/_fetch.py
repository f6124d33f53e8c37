"""FETCH data items (RFC 9051 §6.4.5, RFC 3516 BINARY): names, ``BODY[section]<partial>``
sections and the ALL/FAST/FULL macros, read from the scanner into ``FetchItem`` values.

Rules of this file: section text is upper-cased (``HEADER.FIELDS``), header field names too;
``MIME`` needs a part number; ``BINARY`` sections are part numbers only; a partial's length is
a nz-number; every refusal is an ``ImapSyntaxError``.
"""

from __future__ import annotations

import re
from typing import Final

from ._commands import FetchItem
from ._syntax import MAX_NUMBER64, ImapSyntaxError, Scanner, Section

__all__ = ["MACROS", "fetch_item"]

_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_TEXT = re.compile(rb"[A-Za-z]+(?:\.[A-Za-z]+)*")

MACROS: Final = {
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


def fetch_item(s: Scanner) -> FetchItem:
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
