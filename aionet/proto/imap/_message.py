"""What IMAP shows of a stored message: ENVELOPE, BODY/BODYSTRUCTURE, BODY[section] and
BINARY[section] extraction, decoded header and body text for SEARCH (RFC 9051 §6.4.5, §7.5.2;
RFC 3501 §6.4.5, §7.4.2; RFC 3516; MIME per RFC 2045/2046, parameters per RFC 2231).

Rules of this file:

1. ``MessageInfo.parse`` never raises, whatever the bytes: garbage, no header, broken MIME,
   8-bit headers, hostile nesting (MIME parts nest at most ``MAX_MIME_DEPTH`` deep, at most
   ``MAX_PARTS`` parts are split out; deeper or further content stays inside its parent).
2. Eager work is the top-level header only; the MIME tree is built on the first call that
   needs it, and ENVELOPE, BODYSTRUCTURE and the search texts are computed once and cached:
   a ``MessageInfo`` is built once per message and kept by the engine.
3. Parts are offsets into the original bytes, never copies: ``section`` returns exactly the
   stored bytes for ``BODY[]`` and every part (RFC 3501 §6.4.5), ``HEADER`` includes the
   blank line, ``HEADER.FIELDS`` returns the matching lines (case-insensitive) and a blank
   line, a part that does not exist is ``b""`` (as Dovecot answers).
4. The output follows what Dovecot sends: header text as raw bytes (encoded words kept) in
   ENVELOPE, types and parameters as written, ``("charset" "us-ascii")`` added to text/*
   without a charset, an empty multipart shown with one empty text/plain part, addresses with
   ``MISSING_MAILBOX``/``MISSING_DOMAIN`` where the header lacks them, sizes in octets of the
   stored (CRLF) bytes, lines counted as LFs.
"""

from __future__ import annotations

import binascii
import email.errors
import re
from datetime import date
from email.header import decode_header, make_header
from email.utils import parsedate_tz
from typing import TYPE_CHECKING, Final

from ._response import nstring, quoted

if TYPE_CHECKING:
    from ._syntax import Section

__all__ = ["MAX_MIME_DEPTH", "MAX_PARTS", "MessageInfo"]

MAX_MIME_DEPTH: Final = 100
MAX_PARTS: Final = 10_000

_FIELD_NAME: Final = re.compile(rb"[!-9;-~]+")
_LINE_BREAK: Final = re.compile(rb"\r?\n")
_TOKEN: Final = re.compile(rb'[^\x00-\x20()<>@,;:\\"/\[\]?=\x7f]+')
_NOT_BASE64: Final = re.compile(rb"[^A-Za-z0-9+/]")
_SECTION_CONTINUATION: Final = re.compile(rb"(.+)\*([0-9]{1,3})(\*?)")
_EMPTY_PART: Final = (
    b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0',
    b" NIL NIL NIL NIL",
)
_EMPTY_ENVELOPE: Final = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
_MISSING_MAILBOX: Final = b"MISSING_MAILBOX"
_MISSING_DOMAIN: Final = b"MISSING_DOMAIN"
_SYNTAX_ERROR: Final = b"SYNTAX_ERROR"
_IDENTITY_ENCODINGS: Final = frozenset({b"", b"7bit", b"8bit", b"binary"})

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


class _Field:
    """One header field: its lower-cased name and the span of its lines (folds included)."""

    __slots__ = ("colon", "end", "name", "start")

    def __init__(self, name: bytes, start: int, colon: int, end: int) -> None:
        self.name = name
        self.start = start
        self.colon = colon
        self.end = end


def _scan_header(data: bytes, start: int, end: int) -> tuple[list[_Field], int]:
    """The header fields in ``data[start:end]`` and where the body starts (after the blank
    line; ``end`` when there is none). Lines that are not fields are skipped."""
    fields: list[_Field] = []
    current: _Field | None = None
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        if line_end - pos <= 2 and data[pos:line_end] in (b"\n", b"\r\n", b"\r"):
            return fields, line_end  # the blank line
        if data[pos] in (0x20, 0x09):
            if current is not None:
                current.end = line_end
        else:
            colon = data.find(b":", pos, line_end)
            name = data[pos:colon].rstrip(b" \t") if colon > pos else b""
            if name and _FIELD_NAME.fullmatch(name):
                current = _Field(name.lower(), pos, colon, line_end)
                fields.append(current)
            else:
                current = None
        pos = line_end
    return fields, end


def _unfold(raw: bytes) -> bytes:
    return _LINE_BREAK.sub(b"", raw).strip(b" \t\r")


def _to_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_words(raw: bytes) -> str:
    """A header value with its RFC 2047 encoded words decoded (best effort)."""
    text = _to_str(raw)
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, email.errors.MessageError):
        return text


def _decode_charset(payload: bytes, charset: str | None) -> str:
    if charset and charset.lower() not in ("us-ascii", "utf-8", "utf8"):
        try:
            return payload.decode(charset, "replace")
        except (LookupError, UnicodeError, ValueError, TypeError):
            pass
    return _to_str(payload)


def _decode_cte(encoding: bytes, raw: bytes) -> bytes | None:
    """The content with its transfer encoding undone; None for an unknown encoding."""
    if encoding in _IDENTITY_ENCODINGS:
        return raw
    if encoding == b"base64":
        clean = _NOT_BASE64.sub(b"", raw)
        extra = len(clean) % 4
        if extra == 1:
            clean = clean[:-1]
        elif extra:
            clean += b"=" * (4 - extra)
        try:
            return binascii.a2b_base64(clean)
        except binascii.Error:  # not expected: the input was made canonical above
            return None
    if encoding == b"quoted-printable":
        return binascii.a2b_qp(raw)
    return None


# -- MIME header values -----------------------------------------------------------------------


def _comment_end(v: bytes, i: int) -> int:
    """The index after the comment starting at ``v[i] == "("`` (comments nest)."""
    depth = 0
    n = len(v)
    while i < n:
        c = v[i]
        if c == 0x5C:  # "\" quoted-pair
            i += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_cfws(v: bytes, i: int) -> int:
    n = len(v)
    while i < n:
        c = v[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x28:  # "("
            i = _comment_end(v, i)
        else:
            break
    return i


def _quoted_string(v: bytes, i: int) -> tuple[bytes, int]:
    """The content of the quoted string at ``v[i] == '"'`` and the index after it."""
    out = bytearray()
    i += 1
    n = len(v)
    while i < n:
        c = v[i]
        if c == 0x22:
            return bytes(out), i + 1
        if c == 0x5C and i + 1 < n:
            i += 1
            c = v[i]
        if c not in (0x0D, 0x0A):
            out.append(c)
        i += 1
    return bytes(out), i


def _params(v: bytes, i: int) -> list[tuple[bytes, bytes]]:
    """``*(";" attribute "=" value)``, stopping at the first syntax error; RFC 2231
    continuations joined (``name*0``, ``name*1``... into ``name``, or ``name*`` when the
    first piece is extended)."""
    out: list[tuple[bytes, bytes]] = []
    n = len(v)
    while True:
        i = _skip_cfws(v, i)
        if i >= n or v[i] != 0x3B:  # ";"
            break
        i = _skip_cfws(v, i + 1)
        m = _TOKEN.match(v, i)
        if m is None:
            break
        name = m.group(0)
        i = _skip_cfws(v, m.end())
        if i >= n or v[i] != 0x3D:  # "="
            break
        i = _skip_cfws(v, i + 1)
        if i < n and v[i] == 0x22:
            value, i = _quoted_string(v, i)
        else:
            m = _TOKEN.match(v, i)
            if m is None:
                break
            value, i = m.group(0), m.end()
        out.append((name, value))
    return _join_continuations(out)


def _join_continuations(params: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if not any(b"*" in name for name, _ in params):
        return params
    out: list[tuple[bytes, bytes]] = []
    pieces: dict[bytes, list[tuple[int, bool, bytes]]] = {}
    for name, value in params:
        m = _SECTION_CONTINUATION.fullmatch(name)
        if m is None:
            out.append((name, value))
            continue
        base = m.group(1)
        if base not in pieces:
            pieces[base] = []
            out.append((base, b""))  # placeholder, keeps the order
        pieces[base].append((int(m.group(2)), bool(m.group(3)), value))
    joined: list[tuple[bytes, bytes]] = []
    for name, value in out:
        if name in pieces and not value:
            parts = sorted(pieces[name], key=lambda p: p[0])
            extended = parts[0][1]
            joined.append((name + b"*" if extended else name, b"".join(p[2] for p in parts)))
        else:
            joined.append((name, value))
    return joined


def _language_tags(v: bytes) -> list[bytes]:
    """``1#Language-tag`` (Content-Language, RFC 3282), comments skipped."""
    tags: list[bytes] = []
    i = 0
    while True:
        i = _skip_cfws(v, i)
        m = _TOKEN.match(v, i)
        if m is None:
            return tags
        tags.append(m.group(0))
        i = _skip_cfws(v, m.end())
        if i >= len(v) or v[i] != 0x2C:  # ","
            return tags
        i += 1


def _media_type(v: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """``type "/" subtype *(";" parameter)``, or None when it does not parse."""
    i = _skip_cfws(v, 0)
    m = _TOKEN.match(v, i)
    if m is None:
        return None
    i = _skip_cfws(v, m.end())
    if i >= len(v) or v[i] != 0x2F:  # "/"
        return None
    i = _skip_cfws(v, i + 1)
    sub = _TOKEN.match(v, i)
    if sub is None:
        return None
    return m.group(0), sub.group(0), _params(v, sub.end())


def _token_value(v: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """``token *(";" parameter)`` (Content-Disposition), or a bare token."""
    i = _skip_cfws(v, 0)
    m = _TOKEN.match(v, i)
    if m is None:
        return None
    return m.group(0), _params(v, m.end())


# -- addresses (RFC 5322 §3.4, obsolete forms included) ---------------------------------------

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
            text, i = _quoted_string(v, i)
            out.append(("q", text))
        elif c == 0x28:
            end = _comment_end(v, i)
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


def _addresses(value: bytes) -> list[Address]:
    return _AddressParser(value).address_list()


def _write_addresses(addresses: list[Address]) -> bytes:
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


# -- the MIME tree ----------------------------------------------------------------------------


class _Part:
    """One MIME entity: header span ``start:body``, body span ``body:end``."""

    __slots__ = (
        "body",
        "children",
        "end",
        "fields",
        "media",
        "message",
        "params",
        "start",
    )

    def __init__(self, data: bytes, start: int, end: int, default: bytes = b"text/plain") -> None:
        self.start = start
        self.end = end
        self.fields, self.body = _scan_header(data, start, end)
        self.children: list[_Part] | None = None  # multipart: its parts
        self.message: _Part | None = None  # message/rfc822: the message inside
        ctype = self.raw(data, b"content-type")
        parsed = _media_type(ctype) if ctype is not None else None
        if parsed is None:
            maintype, subtype = default.split(b"/")
            self.media: tuple[bytes, bytes] = (maintype, subtype)
            self.params: list[tuple[bytes, bytes]] = []
        else:
            self.media = (parsed[0], parsed[1])
            self.params = parsed[2]

    def raw(self, data: bytes, name: bytes) -> bytes | None:
        """The unfolded value of the first field ``name`` (lower case), or None."""
        for f in self.fields:
            if f.name == name:
                return _unfold(data[f.colon + 1 : f.end])
        return None

    def param(self, name: bytes) -> bytes | None:
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None

    def kind(self) -> tuple[bytes, bytes]:
        return self.media[0].lower(), self.media[1].lower()

    def encoding(self, data: bytes) -> bytes:
        value = self.raw(data, b"content-transfer-encoding")
        m = _TOKEN.fullmatch(value) if value is not None else None
        return m.group(0).lower() if m else b""


class _Builder:
    """Builds the tree below a part, bounded in depth and in parts."""

    __slots__ = ("data", "parts")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.parts = 1

    def build(self, part: _Part, depth: int) -> None:
        if depth >= MAX_MIME_DEPTH or self.parts >= MAX_PARTS:
            return
        maintype, subtype = part.kind()
        if maintype == b"multipart":
            boundary = part.param(b"boundary")
            if boundary:
                default = b"message/rfc822" if subtype == b"digest" else b"text/plain"
                part.children = []
                for start, end in self._split(part.body, part.end, boundary):
                    self.parts += 1
                    child = _Part(self.data, start, end, default)
                    part.children.append(child)
                    self.build(child, depth + 1)
        elif _is_message(part) and part.encoding(self.data) in _IDENTITY_ENCODINGS:
            self.parts += 1
            part.message = _Part(self.data, part.body, part.end)
            self.build(part.message, depth + 1)

    def _split(self, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
        """The parts' spans: between delimiter lines ``--boundary``; the line break before a
        delimiter belongs to it (RFC 2046 §5.1.1); the preamble and epilogue are dropped."""
        data = self.data
        delimiter = b"--" + boundary
        spans: list[tuple[int, int]] = []
        part_start = -1
        pos = start
        while True:
            i = data.find(delimiter, pos, end)
            if i < 0:
                break
            pos = i + 1
            if i != start and data[i - 1] != 0x0A:
                continue
            k = i + len(delimiter)
            close = data.startswith(b"--", k) and k + 2 <= end
            if close:
                k += 2
            while k < end and data[k] in (0x20, 0x09):
                k += 1
            if k < end and data[k] not in (0x0D, 0x0A):
                continue  # "--boundary" followed by more: not a delimiter
            if k < end and data[k] == 0x0D:
                k += 1
            if k < end and data[k] == 0x0A:
                k += 1
            if part_start >= 0:
                if self.parts + len(spans) + 1 >= MAX_PARTS:  # out of parts: the last
                    spans.append((part_start, end))  # one runs to the end
                    return spans
                spans.append((part_start, _before_line_break(data, part_start, i)))
            if close:
                return spans
            part_start = k
            pos = k
        if part_start >= 0:  # no close delimiter: the last part runs to the end
            spans.append((part_start, end))
        return spans


def _is_message(part: _Part) -> bool:
    return part.kind() in ((b"message", b"rfc822"), (b"message", b"global"))


def _before_line_break(data: bytes, start: int, i: int) -> int:
    end = i
    if end > start and data[end - 1] == 0x0A:
        end -= 1
        if end > start and data[end - 1] == 0x0D:
            end -= 1
    return end


# -- MessageInfo ------------------------------------------------------------------------------


class MessageInfo:
    """A parsed message: see the module docstring. Build it with ``MessageInfo.parse``."""

    __slots__ = (
        "_body_text",
        "_built",
        "_cache",
        "_data",
        "_header_block",
        "_root",
        "_sent_date",
    )

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._root = _Part(data, 0, len(data))
        self._built = False
        self._cache: dict[str, bytes] = {}
        self._body_text: str | None = None
        self._header_block: str | None = None
        self._sent_date: date | bool | None = False  # False: not computed yet

    @classmethod
    def parse(cls, data: bytes) -> MessageInfo:
        """Parse a stored message (its header now, its MIME structure when first needed).
        Never raises."""
        return cls(bytes(data))

    @property
    def size(self) -> int:
        return len(self._data)

    def _tree(self) -> _Part:
        if not self._built:
            _Builder(self._data).build(self._root, 0)
            self._built = True
        return self._root

    # -- ENVELOPE / BODYSTRUCTURE -----------------------------------------------------------

    def envelope(self) -> bytes:
        """The ENVELOPE value (RFC 9051 §7.5.2), parentheses included."""
        cached = self._cache.get("envelope")
        if cached is None:
            cached = self._cache["envelope"] = _envelope(self._data, self._root)
        return cached

    def body_structure(self, extended: bool = True) -> bytes:
        """The BODYSTRUCTURE value (``extended``) or BODY's (not), parentheses included."""
        key = "bodystructure" if extended else "body"
        cached = self._cache.get(key)
        if cached is None:
            out: list[bytes] = []
            _write_body(self._data, self._tree(), extended, out)
            cached = self._cache[key] = b"".join(out)
        return cached

    # -- sections ---------------------------------------------------------------------------

    def _node(self, part: tuple[int, ...]) -> _Part | None:
        root = self._tree()
        node = root
        kids = root.children if root.children is not None else [root]
        for depth, number in enumerate(part):
            if depth:
                kids = _numbered(node)
            if not 1 <= number <= len(kids):
                return None
            node = kids[number - 1]
        return node

    def section(self, section: Section, partial: tuple[int, int] | None = None) -> bytes:
        """The bytes of ``BODY[section]`` (RFC 9051 §6.4.5), sliced by ``partial``
        ``(start, length)``; ``b""`` for a part that does not exist."""
        data = self._data
        node = self._node(section.part) if section.part else self._root
        text = section.text
        if node is None:
            out = b""
        elif text is None:
            out = data if not section.part else data[node.body : node.end]
        elif text == "MIME":
            out = data[node.start : node.body]
        else:
            message = node if not section.part else node.message
            if message is None:
                out = b""
            elif text == "HEADER":
                out = data[message.start : message.body]
            elif text == "TEXT":
                out = data[message.body : message.end]
            else:
                out = _header_fields(data, message, section.fields, text.endswith(".NOT"))
        if partial is not None:
            start, length = partial
            out = out[start : start + length]
        return out

    def binary(self, section: Section, partial: tuple[int, int] | None = None) -> bytes | None:
        """``BINARY[section]`` (RFC 3516): the part's content with its transfer encoding
        undone; None when the encoding is unknown (answer ``NO [UNKNOWN-CTE]``)."""
        data = self._data
        if not section.part:
            out: bytes | None = data
        else:
            node = self._node(section.part)
            if node is None:
                out = b""
            elif node.children is not None or node.message is not None:
                out = data[node.body : node.end]
            else:
                out = _decode_cte(node.encoding(data), data[node.body : node.end])
        if out is not None and partial is not None:
            out = out[partial[0] : partial[0] + partial[1]]
        return out

    # -- search texts -----------------------------------------------------------------------

    def header_text(self, name: str) -> list[str]:
        """The decoded values (RFC 2047 words decoded) of every top-level field ``name``."""
        wanted = name.lower().encode("ascii", "replace")
        data = self._data
        return [
            _decode_words(_unfold(data[f.colon + 1 : f.end]))
            for f in self._root.fields
            if f.name == wanted
        ]

    def header_block(self) -> str:
        """The whole top-level header, values decoded, one ``Name: value`` line per field."""
        if self._header_block is None:
            data = self._data
            self._header_block = "\n".join(
                _to_str(data[f.start : f.colon])
                + ": "
                + _decode_words(_unfold(data[f.colon + 1 : f.end]))
                for f in self._root.fields
            )
        return self._header_block

    def text(self) -> str:
        """The decoded text of the body's text parts (attachments of other types skipped)."""
        if self._body_text is None:
            chunks: list[str] = []
            _collect_text(self._data, self._tree(), chunks, top=True)
            self._body_text = "\n".join(chunks)
        return self._body_text

    def sent_date(self) -> date | None:
        """The day of the Date header as written (its time and zone ignored), or None."""
        if self._sent_date is False:
            raw = self._root.raw(self._data, b"date")
            self._sent_date = _parse_day(raw) if raw is not None else None
        return self._sent_date if isinstance(self._sent_date, date) else None


def _numbered(node: _Part) -> list[_Part]:
    """The parts numbered below ``node`` (RFC 9051 §6.4.5): a multipart's parts; for a
    message/rfc822, the parts of the message inside (itself when it is not multipart)."""
    if node.children is not None:
        return node.children
    if node.message is not None:
        inner = node.message
        return inner.children if inner.children is not None else [inner]
    return []


def _header_fields(data: bytes, part: _Part, names: tuple[str, ...], exclude: bool) -> bytes:
    wanted = {n.lower().encode("ascii", "replace") for n in names}
    lines: list[bytes] = []
    for f in part.fields:
        if (f.name in wanted) != exclude:
            line = data[f.start : f.end]
            lines.append(line if line.endswith(b"\n") else line + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def _parse_day(raw: bytes) -> date | None:
    try:
        parsed = parsedate_tz(_to_str(raw))
        if parsed is None:
            return None
        year, month, day = parsed[0], parsed[1], parsed[2]
        return date(year, month, day)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def _collect_text(data: bytes, part: _Part, chunks: list[str], top: bool = False) -> None:
    if part.children is not None:
        for child in part.children:
            _collect_text(data, child, chunks)
        return
    if part.message is not None:
        inner = part.message
        chunks.append(
            "\n".join(_decode_words(_unfold(data[f.colon + 1 : f.end])) for f in inner.fields)
        )
        _collect_text(data, inner, chunks)
        return
    maintype, _ = part.kind()
    if maintype != b"text":
        return
    payload = _decode_cte(part.encoding(data), data[part.body : part.end])
    if payload is None:
        payload = data[part.body : part.end]
    charset = part.param(b"charset")
    chunks.append(_decode_charset(payload, _to_str(charset) if charset else None))


# -- writers ----------------------------------------------------------------------------------


def _envelope(data: bytes, part: _Part) -> bytes:
    def text(name: bytes) -> bytes:
        value = part.raw(data, name)
        return nstring(value)

    def addresses(name: bytes) -> list[Address]:
        value = part.raw(data, name)
        return _addresses(value) if value is not None else []

    sender_from = addresses(b"from")
    sender = addresses(b"sender") or sender_from
    reply_to = addresses(b"reply-to") or sender_from
    return b"(%s)" % b" ".join(
        (
            text(b"date"),
            text(b"subject"),
            _write_addresses(sender_from),
            _write_addresses(sender),
            _write_addresses(reply_to),
            _write_addresses(addresses(b"to")),
            _write_addresses(addresses(b"cc")),
            _write_addresses(addresses(b"bcc")),
            text(b"in-reply-to"),
            text(b"message-id"),
        )
    )


def _param_list(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(quoted(n) + b" " + quoted(v) for n, v in params) + b")"


def _extension(data: bytes, part: _Part) -> bytes:
    """`` disposition language location`` (the common tail of the extension data)."""
    disposition = part.raw(data, b"content-disposition")
    parsed = _token_value(disposition) if disposition is not None else None
    disp = b"NIL"
    if parsed is not None:
        disp = b"(%s %s)" % (quoted(parsed[0]), _param_list(parsed[1]))
    language = part.raw(data, b"content-language")
    tags = _language_tags(language) if language is not None else []
    lang = b"(" + b" ".join(quoted(t) for t in tags) + b")" if tags else b"NIL"
    location = part.raw(data, b"content-location")
    return b" %s %s %s" % (disp, lang, nstring(location))


def _write_body(data: bytes, part: _Part, extended: bool, out: list[bytes]) -> None:
    if part.children is not None:
        out.append(b"(")
        if part.children:
            for child in part.children:
                _write_body(data, child, extended, out)
        else:  # a multipart without parts is not allowed: show one empty part
            out.append(_EMPTY_PART[0] + (_EMPTY_PART[1] if extended else b"") + b")")
        out.append(b" " + quoted(part.media[1]))
        if extended:
            out.append(b" " + _param_list(part.params) + _extension(data, part))
        out.append(b")")
        return
    maintype, subtype = part.media
    params = part.params
    is_text = maintype.lower() == b"text"
    if is_text and part.param(b"charset") is None:
        params = [*params, (b"charset", b"us-ascii")]
    encoding = part.raw(data, b"content-transfer-encoding")
    m = _TOKEN.fullmatch(encoding) if encoding is not None else None
    out.append(
        b"(%s %s %s %s %s %s %d"
        % (
            quoted(maintype),
            quoted(subtype),
            _param_list(params),
            nstring(part.raw(data, b"content-id")),
            nstring(part.raw(data, b"content-description")),
            quoted(m.group(0)) if m else b'"7bit"',
            part.end - part.body,
        )
    )
    lines = data.count(b"\n", part.body, part.end)
    if part.message is not None:
        out.append(b" " + _envelope(data, part.message) + b" ")
        _write_body(data, part.message, extended, out)
        out.append(b" %d" % lines)
    elif _is_message(part):  # not descended into (encoded, or too deep): an empty message
        out.append(b" " + _EMPTY_ENVELOPE + b" " + _EMPTY_PART[0])
        out.append((_EMPTY_PART[1] if extended else b"") + b") %d" % lines)
    elif is_text:
        out.append(b" %d" % lines)
    if extended:
        out.append(b" " + nstring(part.raw(data, b"content-md5")) + _extension(data, part))
    out.append(b")")
