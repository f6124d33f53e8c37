"""MIME as IMAP needs it (RFC 2045/2046, parameters per RFC 2231, RFC 2047 words): header
fields located by offset, header values parsed, and the tree of parts of a stored message.

Rules of this file:

1. Nothing raises, whatever the bytes; broken values fall back to MIME's defaults
   (text/plain; charset us-ascii; 7bit), as Dovecot does.
2. A part is offsets into the stored bytes (header ``start:body``, body ``body:end``), never a
   copy; the line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
3. The tree is bounded: parts nest at most ``MAX_MIME_DEPTH`` deep and at most ``MAX_PARTS``
   are split out; deeper or further content stays inside its parent.
"""

from __future__ import annotations

import binascii
import email.errors
import re
from email.header import decode_header, make_header
from typing import Final

__all__ = [
    "IDENTITY_ENCODINGS",
    "MAX_MIME_DEPTH",
    "MAX_PARTS",
    "TOKEN",
    "Builder",
    "Field",
    "Part",
    "comment_end",
    "decode_charset",
    "decode_cte",
    "decode_words",
    "is_message",
    "language_tags",
    "quoted_string",
    "scan_header",
    "skip_cfws",
    "to_str",
    "token_value",
    "unfold",
]

MAX_MIME_DEPTH: Final = 100
MAX_PARTS: Final = 10_000

_FIELD_NAME: Final = re.compile(rb"[!-9;-~]+")
_LINE_BREAK: Final = re.compile(rb"\r?\n")
TOKEN: Final = re.compile(rb'[^\x00-\x20()<>@,;:\\"/\[\]?=\x7f]+')
_NOT_BASE64: Final = re.compile(rb"[^A-Za-z0-9+/]")
_SECTION_CONTINUATION: Final = re.compile(rb"(.+)\*([0-9]{1,3})(\*?)")
IDENTITY_ENCODINGS: Final = frozenset({b"", b"7bit", b"8bit", b"binary"})


class Field:
    """One header field: its lower-cased name and the span of its lines (folds included)."""

    __slots__ = ("colon", "end", "name", "start")

    def __init__(self, name: bytes, start: int, colon: int, end: int) -> None:
        self.name = name
        self.start = start
        self.colon = colon
        self.end = end


def scan_header(data: bytes, start: int, end: int) -> tuple[list[Field], int]:
    """The header fields in ``data[start:end]`` and where the body starts (after the blank
    line; ``end`` when there is none). Lines that are not fields are skipped."""
    fields: list[Field] = []
    current: Field | None = None
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
                current = Field(name.lower(), pos, colon, line_end)
                fields.append(current)
            else:
                current = None
        pos = line_end
    return fields, end


def unfold(raw: bytes) -> bytes:
    return _LINE_BREAK.sub(b"", raw).strip(b" \t\r")


def to_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def decode_words(raw: bytes) -> str:
    """A header value with its RFC 2047 encoded words decoded (best effort)."""
    text = to_str(raw)
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, email.errors.MessageError):
        return text


def decode_charset(payload: bytes, charset: str | None) -> str:
    if charset and charset.lower() not in ("us-ascii", "utf-8", "utf8"):
        try:
            return payload.decode(charset, "replace")
        except (LookupError, UnicodeError, ValueError, TypeError):
            pass
    return to_str(payload)


def decode_cte(encoding: bytes, raw: bytes) -> bytes | None:
    """The content with its transfer encoding undone; None for an unknown encoding."""
    if encoding in IDENTITY_ENCODINGS:
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


def comment_end(v: bytes, i: int) -> int:
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


def skip_cfws(v: bytes, i: int) -> int:
    n = len(v)
    while i < n:
        c = v[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x28:  # "("
            i = comment_end(v, i)
        else:
            break
    return i


def quoted_string(v: bytes, i: int) -> tuple[bytes, int]:
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
        i = skip_cfws(v, i)
        if i >= n or v[i] != 0x3B:  # ";"
            break
        i = skip_cfws(v, i + 1)
        m = TOKEN.match(v, i)
        if m is None:
            break
        name = m.group(0)
        i = skip_cfws(v, m.end())
        if i >= n or v[i] != 0x3D:  # "="
            break
        i = skip_cfws(v, i + 1)
        if i < n and v[i] == 0x22:
            value, i = quoted_string(v, i)
        else:
            m = TOKEN.match(v, i)
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


def language_tags(v: bytes) -> list[bytes]:
    """``1#Language-tag`` (Content-Language, RFC 3282), comments skipped."""
    tags: list[bytes] = []
    i = 0
    while True:
        i = skip_cfws(v, i)
        m = TOKEN.match(v, i)
        if m is None:
            return tags
        tags.append(m.group(0))
        i = skip_cfws(v, m.end())
        if i >= len(v) or v[i] != 0x2C:  # ","
            return tags
        i += 1


def _media_type(v: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """``type "/" subtype *(";" parameter)``, or None when it does not parse."""
    i = skip_cfws(v, 0)
    m = TOKEN.match(v, i)
    if m is None:
        return None
    i = skip_cfws(v, m.end())
    if i >= len(v) or v[i] != 0x2F:  # "/"
        return None
    i = skip_cfws(v, i + 1)
    sub = TOKEN.match(v, i)
    if sub is None:
        return None
    return m.group(0), sub.group(0), _params(v, sub.end())


def token_value(v: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """``token *(";" parameter)`` (Content-Disposition), or a bare token."""
    i = skip_cfws(v, 0)
    m = TOKEN.match(v, i)
    if m is None:
        return None
    return m.group(0), _params(v, m.end())


# -- the MIME tree ----------------------------------------------------------------------------


class Part:
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
        self.fields, self.body = scan_header(data, start, end)
        self.children: list[Part] | None = None  # multipart: its parts
        self.message: Part | None = None  # message/rfc822: the message inside
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
                return unfold(data[f.colon + 1 : f.end])
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
        m = TOKEN.fullmatch(value) if value is not None else None
        return m.group(0).lower() if m else b""


class Builder:
    """Builds the tree below a part, bounded in depth and in parts."""

    __slots__ = ("data", "parts")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.parts = 1

    def build(self, part: Part, depth: int) -> None:
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
                    child = Part(self.data, start, end, default)
                    part.children.append(child)
                    self.build(child, depth + 1)
        elif is_message(part) and part.encoding(self.data) in IDENTITY_ENCODINGS:
            self.parts += 1
            part.message = Part(self.data, part.body, part.end)
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


def is_message(part: Part) -> bool:
    return part.kind() in ((b"message", b"rfc822"), (b"message", b"global"))


def _before_line_break(data: bytes, start: int, i: int) -> int:
    end = i
    if end > start and data[end - 1] == 0x0A:
        end -= 1
        if end > start and data[end - 1] == 0x0D:
            end -= 1
    return end
