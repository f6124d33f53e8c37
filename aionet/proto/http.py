"""HTTP/1.1 framing rules that need no I/O: what llhttp leaves to us, and the reply bytes.

httptools (llhttp) parses the request; this module holds the checks RFC 9112 asks for that the
parser does not make on its own, plus everything a server writes that can be computed without
a socket:

* request checks: ``Transfer-Encoding`` must be exactly ``chunked`` and never appear in an
  HTTP/1.0 request (§6.1), one ``Host`` in HTTP/1.1 (§3.2), sane ``Content-Length`` (§6.3),
  sane ``X-Request-ID`` values; every failure raises ``HttpError`` carrying its status;
* ``message_start()``: where the n-th pipelined message begins in a buffer the parser already
  validated (used to recover a request whose method llhttp does not know);
* replies: status lines, the cached ``Date`` header, response header encoding with
  response-splitting checks, chunk framing, complete error and refusal responses.

What llhttp already rejects (tested on the raw socket in ``tests/e2e/test_http_framing.py``):
``Content-Length`` together with ``Transfer-Encoding``, duplicate or list-valued
``Content-Length``, ``chunked`` that is not the final coding, unknown codings alone, bad chunk
sizes, obs-fold, bare CR or LF in the head and around chunks, NUL and other control bytes in
field names, values and the target.
"""

from __future__ import annotations

import calendar
import itertools
import os
import re
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

from ..errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CONTINUE_100",
    "DateCache",
    "HttpError",
    "RequestIds",
    "check_transfer_encoding",
    "chunk",
    "encode_headers",
    "error_response",
    "http_date",
    "is_token",
    "message_start",
    "parse_content_length",
    "parse_http_date",
    "phrase",
    "refusal_response",
    "sane_request_id",
    "status_allows_body",
    "status_line",
]

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The one final transfer coding a request may use (RFC 9112 §6.1); we decode no other.
CHUNKED = b"chunked"
#: Longest ``X-Request-ID`` we echo back; longer ones are replaced by a generated id.
MAX_REQUEST_ID = 128
_OWS = b" \t"


class HttpError(ProtocolError):
    """A request the server must refuse: ``status`` is the reply, ``reason`` goes to the log.

    Raised by the checks in this module and by the protocol's parser callbacks; the protocol
    turns it into a complete response (``error_response``) and closes the connection (h11's
    ``error_status_hint``): a ``ProtocolError`` whose reply is built from ``status``.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason, close=True)
        self.status = status
        self.reason = reason
        #: The request target, when the head got that far (for the access log).
        self.target: str | None = None


# -- tokens and ids --------------------------------------------------------------------------

#: RFC 9110 §5.6.2 ``tchar``.
_TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def is_token(value: bytes) -> bool:
    """True when ``value`` is a non-empty RFC 9110 token (a method, a field name)."""
    return _TOKEN_RE.match(value) is not None


def sane_request_id(value: bytes) -> bool:
    """True when an incoming ``X-Request-ID`` may be reused: 1 to 128 token characters."""
    return len(value) <= MAX_REQUEST_ID and _TOKEN_RE.match(value) is not None


class RequestIds:
    """Cheap unique request ids: a random per-process prefix and a counter (no syscall each)."""

    __slots__ = ("_count", "_prefix")

    def __init__(self, prefix: bytes | None = None) -> None:
        self._prefix = prefix if prefix is not None else os.urandom(6).hex().encode()
        self._count = itertools.count(1)

    def next(self) -> bytes:
        return b"%s-%x" % (self._prefix, next(self._count))


# -- request checks ----------------------------------------------------------------------------


def check_transfer_encoding(value: bytes, http_version: str) -> None:
    """Accept only ``Transfer-Encoding: chunked`` in HTTP/1.1 requests.

    Raises:
        HttpError: 400 for any other coding list (``gzip, chunked`` included: we decode no
            other coding, and an unknown one leaves the body length unknowable) and for any
            ``Transfer-Encoding`` in an HTTP/1.0 request (RFC 9112 §6.1: faulty framing).
    """
    if http_version != "1.1":
        raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
    if value.strip(_OWS).lower() != CHUNKED:
        raise HttpError(400, "unsupported Transfer-Encoding (only 'chunked' is accepted)")


def parse_content_length(value: bytes) -> int:
    """The value of a ``Content-Length`` field llhttp has already checked (digits, one value).

    Raises:
        HttpError: 400 when it is not a plain decimal number after all.
    """
    text = value.strip(_OWS)
    if not text.isdigit():
        raise HttpError(400, "invalid Content-Length")
    return int(text)


def message_start(data: bytes, skip: int) -> int | None:
    """The offset where message ``skip`` (0-based) begins in ``data``, or None if unknown.

    ``data`` starts at a message boundary and its first ``skip`` messages were already parsed
    and validated by llhttp, so their heads end at the first blank line (no bare LFs) and their
    bodies are framed by ``Content-Length`` or valid chunks. Empty lines between messages are
    skipped as llhttp skips them.
    """
    pos = _skip_blank_lines(data, 0)
    for _ in range(skip):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return None
        head = data[pos:end].lower()
        pos = end + 4
        if b"\ntransfer-encoding:" in head:
            found = _skip_chunked_body(data, pos)
            if found is None:
                return None
            pos = found
        else:
            pos += _content_length_of(head)
        pos = _skip_blank_lines(data, pos)
    return pos if pos <= len(data) else None


def _skip_blank_lines(data: bytes, pos: int) -> int:
    while data[pos : pos + 2] == b"\r\n":
        pos += 2
    return pos


def _content_length_of(head: bytes) -> int:
    at = head.find(b"\ncontent-length:")
    if at < 0:
        return 0
    line_end = head.find(b"\r\n", at + 1)
    value = head[at + 16 : line_end if line_end >= 0 else len(head)]
    return int(value.strip(_OWS) or b"0")


def _skip_chunked_body(data: bytes, pos: int) -> int | None:
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(data[pos:line_end].split(b";", 1)[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n", pos)
            while trailer_end > pos:  # trailer fields, up to the empty line
                pos = trailer_end + 2
                trailer_end = data.find(b"\r\n", pos)
            return None if trailer_end < 0 else trailer_end + 2
        pos += size + 2


# -- replies -------------------------------------------------------------------------------------


def phrase(status: int) -> str:
    """The reason phrase of ``status`` (empty for codes without one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus
}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n`` for any status from 100 to 599 (built once per code)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 599:
            raise ValueError(f"invalid HTTP status code {status!r}")
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, phrase(status).encode())
    return line


def status_allows_body(status: int) -> bool:
    """False for 1xx, 204 and 304: such responses end after the head (RFC 9112 §6.3)."""
    return status >= 200 and status != 204 and status != 304


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBERS = {name.lower(): i + 1 for i, name in enumerate(_MONTHS)}
# RFC 9110 section 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms.
_DATE_RES = (
    re.compile(rb"^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$"),
    re.compile(rb"^[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$"),
)
_ASCTIME_RE = re.compile(rb"^[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$")


def http_date(timestamp: float) -> bytes:
    """An IMF-fixdate for a POSIX time: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(timestamp)
    return b"%s, %02d %s %d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday].encode(),
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def parse_http_date(value: bytes) -> float | None:
    """The POSIX time of an HTTP date in any of its three forms, or None if it is not one."""
    fields = _date_fields(value.strip())
    if fields is None:
        return None
    day, month_name, year, hh, mm, ss = fields
    month = _MONTH_NUMBERS.get(month_name.decode().lower())
    hour, minute, second = int(hh), int(mm), int(ss)
    if month is None or not 1 <= int(day) <= 31 or hour > 23 or minute > 59 or second > 60:
        return None
    full_year = int(year)
    if len(year) == 2:  # RFC 850: two-digit years, 70-99 meaning 19xx
        full_year += 1900 if full_year >= 70 else 2000
    return float(calendar.timegm((full_year, month, int(day), hour, minute, second)))


def _date_fields(value: bytes) -> tuple[bytes, ...] | None:
    """``(day, month, year, hour, minute, second)`` as matched, or None."""
    for pattern in _DATE_RES:
        match = pattern.match(value)
        if match is not None:
            return match.groups()
    match = _ASCTIME_RE.match(value)
    if match is None:
        return None
    month, day, hh, mm, ss, year = match.groups()
    return (day.strip(), month, year, hh, mm, ss)


class DateCache:
    """The ``Date`` header line, rebuilt at most once per second by whoever ticks it.

    ``prelude`` is ``server: NAME\\r\\ndate: ...\\r\\n`` ready to be put after a status line.
    """

    __slots__ = ("_second", "_server", "prelude")

    def __init__(self, server: str | None = "aionet") -> None:
        self._server = b"server: %s\r\n" % server.encode("latin-1") if server else b""
        self._second = -1
        self.prelude = b""
        self.update(time.time())

    def update(self, now: float) -> bool:
        """Refresh for wall-clock time ``now``; True when the second changed."""
        second = int(now)
        if second == self._second:
            return False
        self._second = second
        self.prelude = b"%sdate: %s\r\n" % (self._server, http_date(second))
        return True


# Response header lines as they must look once encoded: a token name, ": ", a value without
# CR, LF, NUL or other control bytes (HTAB allowed), CRLF. One regex over the whole block checks
# every line at once; a CR or LF smuggled into a name or value breaks the match, and a whole
# CRLF smuggled into a value shows in the line count (no response splitting).
_BLOCK_RE = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
_LENGTH, _CONNECTION, _TRANSFER_ENCODING = 1, 2, 3
_FRAMING = {b"content-length": _LENGTH, b"connection": _CONNECTION}
_FRAMING[b"transfer-encoding"] = _TRANSFER_ENCODING


def encode_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, int | None, bool]:
    """Encode an app's response headers: ``(block, content_length, close)``.

    ``block`` is ``name: value\r\n`` lines without ``Transfer-Encoding`` (framing is the
    server's job) and without ``Connection`` (the protocol writes its own); ``content_length``
    is the app's declared length or None; ``close`` is True when the app asked for
    ``Connection: close``.

    Raises:
        ValueError: a name is not a token, a value holds control bytes, or ``Content-Length``
            is not a number.
    """
    lines: list[bytes] = []
    length: int | None = None
    close = False
    for name, value in headers:
        kind = _FRAMING.get(name.lower())
        if kind is not None:
            if kind == _LENGTH:
                length = _response_length(value)
            else:
                close = close or (kind == _CONNECTION and b"close" in value.lower())
                continue
        lines.append(name + b": " + value + b"\r\n")
    block = b"".join(lines)
    if _BLOCK_RE.fullmatch(block) is None or block.count(b"\n") != len(lines):
        raise ValueError(f"invalid response header in {block[:200]!r}")
    return block, length, close


class HeaderCache:
    """``encode_headers`` with memory: apps often send the same header list again and again.

    Keyed by the headers' content (never by identity), so a hit is exactly what encoding
    would produce. Bounded: at most ``size`` entries of lists of at most 16 headers; it
    empties when full. Unhashable header items (lists) are simply encoded.
    """

    __slots__ = ("_entries", "size")

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: dict[tuple[tuple[bytes, bytes], ...], tuple[bytes, int | None, bool]] = {}

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, int | None, bool]:
        """Same result and errors as ``encode_headers``."""
        try:
            key = tuple(headers)
            found = self._entries.get(key)
        except TypeError:
            return encode_headers(headers)
        if found is None:
            found = encode_headers(key)
            if len(key) <= 16:
                if len(self._entries) >= self.size:
                    self._entries.clear()
                self._entries[key] = found
        return found


def _response_length(value: bytes) -> int:
    text = value.strip(_OWS)
    if not text.isdigit():
        raise ValueError(f"invalid Content-Length {value!r} in the response")
    return int(text)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def error_response(
    status: int, prelude: bytes = b"", *, close: bool = True, head_only: bool = False
) -> bytes:
    """A complete plain-text response; ``Connection: close`` unless ``close`` is False.

    ``prelude`` (``Server``/``Date``, extra lines) goes right after the status line;
    ``head_only`` leaves the body out (the answer to a HEAD request).
    """
    body = b"%d %s\n" % (status, phrase(status).encode())
    head = b"%s%scontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % (
        status_line(status),
        prelude,
        len(body),
    )
    end = b"connection: close\r\n\r\n" if close else b"\r\n"
    return head + end + (b"" if head_only else body)


def refusal_response() -> bytes:
    """What a connection refused by the connection manager gets: ``503``, then closed.

    Built once per listener, so it carries no ``Date`` (RFC 9110 §6.6.1 allows that for 5xx).
    """
    return error_response(503, b"retry-after: 1\r\n")
