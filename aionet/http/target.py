"""Request-target helpers for the protocol: split, decode, and ASGI address pairs."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

__all__ = ["address", "decode_path", "split_target"]


def address(value: Any) -> tuple[str, int | None] | None:
    """An ASGI ``client``/``server`` pair from a socket address (``(path, None)`` for unix)."""
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    if isinstance(value, str) and value:
        return (value, None)  # unix socket path
    return None


def split_target(url: bytes) -> tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of a request target in any of its four forms."""
    if url[:1] == b"/":
        path, _, query = url.partition(b"?")
        return path, query
    if url == b"*":
        return url, b""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return url, b""  # authority-form (CONNECT host:port)
    return parsed.path or b"/", parsed.query or b""


def decode_path(raw_path: bytes) -> str:
    """The ASGI ``path``: percent-decoded, UTF-8 (undecodable bytes replaced)."""
    if b"%" not in raw_path and raw_path.isascii():
        return raw_path.decode("ascii")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")
