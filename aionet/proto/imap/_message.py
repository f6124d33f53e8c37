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

from datetime import date
from email.utils import parsedate_tz
from typing import TYPE_CHECKING, Final

from ._address import Address, parse_addresses, write_addresses
from ._mime import (
    MAX_MIME_DEPTH,
    MAX_PARTS,
    TOKEN,
    Builder,
    Part,
    decode_charset,
    decode_cte,
    decode_words,
    is_message,
    language_tags,
    to_str,
    token_value,
    unfold,
)
from ._response import nstring, quoted

if TYPE_CHECKING:
    from ._syntax import Section

__all__ = ["MAX_MIME_DEPTH", "MAX_PARTS", "MessageInfo"]

_EMPTY_PART: Final = (
    b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0',
    b" NIL NIL NIL NIL",
)
_EMPTY_ENVELOPE: Final = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


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
        self._root = Part(data, 0, len(data))
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

    def _tree(self) -> Part:
        if not self._built:
            Builder(self._data).build(self._root, 0)
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

    def _node(self, part: tuple[int, ...]) -> Part | None:
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
                out = decode_cte(node.encoding(data), data[node.body : node.end])
        if out is not None and partial is not None:
            out = out[partial[0] : partial[0] + partial[1]]
        return out

    # -- search texts -----------------------------------------------------------------------

    def header_text(self, name: str) -> list[str]:
        """The decoded values (RFC 2047 words decoded) of every top-level field ``name``."""
        wanted = name.lower().encode("ascii", "replace")
        data = self._data
        return [
            decode_words(unfold(data[f.colon + 1 : f.end]))
            for f in self._root.fields
            if f.name == wanted
        ]

    def header_block(self) -> str:
        """The whole top-level header, values decoded, one ``Name: value`` line per field."""
        if self._header_block is None:
            data = self._data
            self._header_block = "\n".join(
                to_str(data[f.start : f.colon])
                + ": "
                + decode_words(unfold(data[f.colon + 1 : f.end]))
                for f in self._root.fields
            )
        return self._header_block

    def text(self) -> str:
        """The decoded text of the body's text parts (attachments of other types skipped)."""
        if self._body_text is None:
            chunks: list[str] = []
            _collect_text(self._data, self._tree(), chunks)
            self._body_text = "\n".join(chunks)
        return self._body_text

    def sent_date(self) -> date | None:
        """The day of the Date header as written (its time and zone ignored), or None."""
        if self._sent_date is False:
            raw = self._root.raw(self._data, b"date")
            self._sent_date = _parse_day(raw) if raw is not None else None
        return self._sent_date if isinstance(self._sent_date, date) else None


def _numbered(node: Part) -> list[Part]:
    """The parts numbered below ``node`` (RFC 9051 §6.4.5): a multipart's parts; for a
    message/rfc822, the parts of the message inside (itself when it is not multipart)."""
    if node.children is not None:
        return node.children
    if node.message is not None:
        inner = node.message
        return inner.children if inner.children is not None else [inner]
    return []


def _header_fields(data: bytes, part: Part, names: tuple[str, ...], exclude: bool) -> bytes:
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
        parsed = parsedate_tz(to_str(raw))
        if parsed is None:
            return None
        year, month, day = parsed[0], parsed[1], parsed[2]
        return date(year, month, day)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def _collect_text(data: bytes, part: Part, chunks: list[str]) -> None:
    if part.children is not None:
        for child in part.children:
            _collect_text(data, child, chunks)
        return
    if part.message is not None:
        inner = part.message
        chunks.append(
            "\n".join(decode_words(unfold(data[f.colon + 1 : f.end])) for f in inner.fields)
        )
        _collect_text(data, inner, chunks)
        return
    maintype, _ = part.kind()
    if maintype != b"text":
        return
    payload = decode_cte(part.encoding(data), data[part.body : part.end])
    if payload is None:
        payload = data[part.body : part.end]
    charset = part.param(b"charset")
    chunks.append(decode_charset(payload, to_str(charset) if charset else None))


# -- writers ----------------------------------------------------------------------------------


def _envelope(data: bytes, part: Part) -> bytes:
    def text(name: bytes) -> bytes:
        value = part.raw(data, name)
        return nstring(value)

    def addresses(name: bytes) -> list[Address]:
        value = part.raw(data, name)
        return parse_addresses(value) if value is not None else []

    sender_from = addresses(b"from")
    sender = addresses(b"sender") or sender_from
    reply_to = addresses(b"reply-to") or sender_from
    return b"(%s)" % b" ".join(
        (
            text(b"date"),
            text(b"subject"),
            write_addresses(sender_from),
            write_addresses(sender),
            write_addresses(reply_to),
            write_addresses(addresses(b"to")),
            write_addresses(addresses(b"cc")),
            write_addresses(addresses(b"bcc")),
            text(b"in-reply-to"),
            text(b"message-id"),
        )
    )


def _param_list(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(quoted(n) + b" " + quoted(v) for n, v in params) + b")"


def _extension(data: bytes, part: Part) -> bytes:
    """`` disposition language location`` (the common tail of the extension data)."""
    disposition = part.raw(data, b"content-disposition")
    parsed = token_value(disposition) if disposition is not None else None
    disp = b"NIL"
    if parsed is not None:
        disp = b"(%s %s)" % (quoted(parsed[0]), _param_list(parsed[1]))
    language = part.raw(data, b"content-language")
    tags = language_tags(language) if language is not None else []
    lang = b"(" + b" ".join(quoted(t) for t in tags) + b")" if tags else b"NIL"
    location = part.raw(data, b"content-location")
    return b" %s %s %s" % (disp, lang, nstring(location))


def _write_body(data: bytes, part: Part, extended: bool, out: list[bytes]) -> None:
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
    m = TOKEN.fullmatch(encoding) if encoding is not None else None
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
    elif is_message(part):  # not descended into (encoded, or too deep): an empty message
        out.append(b" " + _EMPTY_ENVELOPE + b" " + _EMPTY_PART[0])
        out.append((_EMPTY_PART[1] if extended else b"") + b") %d" % lines)
    elif is_text:
        out.append(b" %d" % lines)
    if extended:
        out.append(b" " + nstring(part.raw(data, b"content-md5")) + _extension(data, part))
    out.append(b")")
