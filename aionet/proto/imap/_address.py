"""Addresses of ENVELOPE (RFC 9051 §7.5.2): RFC 5322 address lists, groups and the obsolete
forms (routes, phrases with dots), parsed as Dovecot does into ``(name adl mailbox host)``.

Rules of this file: nothing raises; text is kept as raw bytes (encoded words untouched,
quoted strings unquoted); a missing local part or domain is ``MISSING_MAILBOX`` /
``MISSING_DOMAIN``, an unterminated ``<...>`` has the domain ``SYNTAX_ERROR``; a group is
``(NIL NIL name NIL)`` ... ``(NIL NIL NIL NIL)``.
"""

from __future__ import annotations

import re
from typing import Final

from ._mime import comment_end, quoted_string
from ._response import nstring

__all__ = ["Address", "parse_addresses", "write_addresses"]

_MISSING_MAILBOX: Final = b"MISSING_MAILBOX"
_MISSING_DOMAIN: Final = b"MISSING_DOMAIN"
_SYNTAX_ERROR: Final = b"SYNTAX_ERROR"

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


_ADDR_SPECIALS: Final = frozenset(b"<>@,;:.")
_ATEXT: Final = re.compile(rb'[^()<>@,;:\\".\[\] \t\r\n]+')


def _address_tokens(v: bytes) -> list[tuple[str, bytes]]:
    """Words (``w``), quoted strings (``q``), comments (``c``), domain literals (``d``) and
    specials (``s``)."""
    out: list[tuple[str, bytes]] = []
    i, n = 0, len(v)
    while i < n:
        c = v[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x22:
            text, i = quoted_string(v, i)
            out.append(("q", text))
        elif c == 0x28:
            end = comment_end(v, i)
            out.append(("c", v[i + 1 : end - 1].strip()))
            i = end
        elif c == 0x5B:  # "["
            end = v.find(b"]", i)
            end = n if end < 0 else end + 1
            out.append(("d", v[i:end]))
            i = end
        elif c in _ADDR_SPECIALS:
            out.append(("s", bytes((c,))))
            i += 1
        else:
            m = _ATEXT.match(v, i)
            j = m.end() if m else i + 1  # a lone stray character ("\\", "]") is a word
            out.append(("w", v[i:j]))
            i = j
    return out


class _AddressParser:
    __slots__ = ("comment", "i", "toks")

    def __init__(self, value: bytes) -> None:
        self.toks = _address_tokens(value)
        self.i = 0
        self.comment: bytes | None = None

    def _peek(self) -> tuple[str, bytes] | None:
        toks = self.toks
        while self.i < len(toks) and toks[self.i][0] == "c":
            self.comment = toks[self.i][1]
            self.i += 1
        return toks[self.i] if self.i < len(toks) else None

    def _special(self, char: bytes) -> bool:
        tok = self._peek()
        if tok is not None and tok == ("s", char):
            self.i += 1
            return True
        return False

    def _phrase(self) -> list[bytes]:
        words: list[bytes] = []
        while (tok := self._peek()) is not None and (tok[0] in "wq" or tok == ("s", b".")):
            if tok[0] == "s" and words:  # obs-phrase: "John Q. Public"
                words[-1] += b"."
            else:
                words.append(tok[1])
            self.i += 1
        return words

    def _dotted(self, kinds: str) -> bytes | None:
        parts: list[bytes] = []
        while (tok := self._peek()) is not None and tok[0] in kinds:
            parts.append(tok[1])
            self.i += 1
            if not self._special(b"."):
                break
            parts.append(b".")
        return b"".join(parts) if parts else None

    def _domain(self) -> bytes | None:
        tok = self._peek()
        if tok is not None and tok[0] == "d":
            self.i += 1
            return tok[1]
        return self._dotted("w")

    def address_list(self) -> list[Address]:
        out: list[Address] = []
        while self._peek() is not None:
            if self._special(b",") or self._special(b";"):
                continue
            start = self.i
            if not self._group(out):
                self._mailbox(out)
            if self.i == start:
                self.i += 1  # junk: always move on
            while (tok := self._peek()) is not None and tok != ("s", b","):
                self.i += 1  # the rest of a broken address, up to the next one
        return out

    def _group(self, out: list[Address]) -> bool:
        start = self.i
        words = self._phrase()
        if not words or not self._special(b":"):
            self.i = start
            return False
        out.append((None, None, b" ".join(words), None))
        while (tok := self._peek()) is not None and tok != ("s", b";"):
            if self._special(b","):
                continue
            before = self.i
            self._mailbox(out)
            if self.i == before:
                self.i += 1
        self._special(b";")
        out.append((None, None, None, None))
        return True

    def _mailbox(self, out: list[Address]) -> None:
        start = self.i
        words = self._phrase()
        if self._special(b"<"):
            name = b" ".join(words) or None
            route = self._route()
            local = self._dotted("wq")
            domain = self._domain() if self._special(b"@") else None
            if not self._special(b">"):
                domain = _SYNTAX_ERROR
            out.append((name, route, local or _MISSING_MAILBOX, domain or _MISSING_DOMAIN))
            return
        self.i = start
        self.comment = None
        local = self._dotted("wq")
        domain = self._domain() if self._special(b"@") else None
        if local is None and domain is None:
            return
        self._peek()  # a trailing comment is the display name: "a@b (Name)"
        out.append((self.comment, None, local or _MISSING_MAILBOX, domain or _MISSING_DOMAIN))

    def _route(self) -> bytes | None:
        hops: list[bytes] = []
        while self._special(b"@"):
            hops.append(b"@" + (self._domain() or b""))
            while self._special(b","):
                pass
        if hops:
            self._special(b":")
            return b",".join(hops)
        return None


def parse_addresses(value: bytes) -> list[Address]:
    return _AddressParser(value).address_list()


def write_addresses(addresses: list[Address]) -> bytes:
    if not addresses:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)" % (nstring(n), nstring(a), nstring(m), nstring(h))
            for n, a, m, h in addresses
        )
        + b")"
    )
