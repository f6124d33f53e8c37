"""Static-file rules without I/O: safe paths, validators, conditional requests, byte ranges.

The built-in static app (``aionet/http/static.py``) does the file system calls; every decision
it makes about a request — which relative path, 304 or not, which range, 206 or 416 — is a pure
function here, tested without files (RFC 9110 §8.8 validators, §13 conditionals, §14 ranges).
"""

from __future__ import annotations

import functools
import mimetypes
import re
from urllib.parse import unquote_to_bytes

from .http import HttpError, http_date, parse_http_date

__all__ = [
    "Range",
    "content_type",
    "etag",
    "http_date",
    "is_not_modified",
    "parse_http_date",
    "parse_range",
    "safe_segments",
]

#: ``parse_range`` result for a syntactically valid range that selects no byte of the file.
UNSATISFIABLE = "unsatisfiable"
Range = tuple[int, int]  # first byte, last byte (inclusive)
_CONTROL_RE = re.compile(rb"[\x00-\x1f\x7f]")


def safe_segments(raw_path: bytes) -> list[str]:
    """The path segments of a request target, checked for traversal, or an error.

    ``raw_path`` is the target's path exactly as it arrived (percent-encoded). Empty segments
    and ``.`` are dropped (``//a/./b`` is ``a/b``).

    Raises:
        HttpError: 400 for an encoded ``/`` or ``\\``, NUL or another control byte, a
            backslash, or a path that is not UTF-8; 404 for any ``..`` segment (encoded or not).
    """
    if not raw_path.startswith(b"/"):
        raise HttpError(400, "the static app serves origin-form targets only")
    lowered = raw_path.lower()
    if b"%2f" in lowered or b"%5c" in lowered or b"\\" in raw_path:
        raise HttpError(400, "encoded or backslash path separator")
    decoded = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
    if _CONTROL_RE.search(decoded) is not None:
        raise HttpError(400, "control byte in path")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "path is not UTF-8") from None
    segments = [s for s in text.split("/") if s and s != "."]
    if ".." in segments:
        raise HttpError(404, "dot-dot segment in path")
    return segments


def etag(mtime_ns: int, size: int) -> bytes:
    """A strong validator from modification time and size (as nginx builds its own)."""
    return b'"%x-%x"' % (mtime_ns // 1000, size)


def is_not_modified(
    tag: bytes, mtime: float, if_none_match: bytes | None, if_modified_since: bytes | None
) -> bool:
    """Whether a GET/HEAD gets ``304`` (RFC 9110 §13.2.2: If-None-Match wins over the date).

    ``If-None-Match`` uses weak comparison: ``W/"x"`` matches ``"x"``; ``*`` matches any file.
    """
    if if_none_match is not None:
        if if_none_match.strip() == b"*":
            return True
        wanted = {t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")}
        return tag in wanted
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and int(mtime) <= since
    return False


def range_applies(if_range: bytes | None, tag: bytes, mtime: float) -> bool:
    """``If-Range``: serve the range only when the validator still matches (§13.1.5)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(b'"'):
        return value == tag
    since = parse_http_date(value)
    return since is not None and int(mtime) == int(since)


def parse_range(header: bytes | None, size: int) -> Range | str | None:
    """One byte range of a file of ``size`` bytes: ``(first, last)``, ``UNSATISFIABLE`` or None.

    None means "serve the whole file": no header, another unit, a syntax error, or several
    ranges (allowed by RFC 9110 §14.2: a server may ignore Range). ``UNSATISFIABLE`` (→ 416)
    is a well-formed single range that starts past the end, or a zero-length suffix.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first_text, dash, last_text = (part.strip() for part in spec.strip().partition(b"-"))
    if not dash or not (first_text or last_text):
        return None
    if any(text and not text.isdigit() for text in (first_text, last_text)):
        return None
    if not first_text:  # suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return (max(0, size - suffix), size - 1)
    first = int(first_text)
    last = int(last_text) if last_text else None
    if last is not None and last < first:
        return None  # invalid: ignore the header
    if first >= size:
        return UNSATISFIABLE
    return (first, size - 1 if last is None else min(last, size - 1))


def content_type(name: str) -> bytes:
    """The Content-Type for a file name; text types get ``charset=utf-8``."""
    base = name.rpartition("/")[2]
    return _content_type(base[base.index(".") :] if "." in base else "")


@functools.lru_cache(maxsize=1024)
def _content_type(suffixes: str) -> bytes:
    guessed, encoding = mimetypes.guess_type("f" + suffixes, strict=False)
    if guessed is None or encoding is not None:  # .gz and friends: opaque bytes
        return b"application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return guessed.encode() + b"; charset=utf-8"
    return guessed.encode()
