"""Bounded CRLF line reading for every line protocol (POP3 today; IMAP, and FTP's codec next).

Sans-IO, in the manner of h11's ``_receivebuffer``: bytes go in with ``feed``, whole lines come
out of ``next_line``. Two promises hold whatever the peer sends:

* **Memory is bounded by ``max_line``**: a line that grows past it is dropped as it arrives
  (its bytes are never kept), and reported once, as ``TOO_LONG``, when its end is seen.
* **Work is O(n) in the bytes received**: the search for the line end resumes where the last
  one stopped, so a line trickling in byte by byte is not rescanned from its start.

Lines end at LF; CRs before it are removed (RFC 5321, 1939 and 9051 all use CRLF, and servers
accept a bare LF). ``discard_input`` drops whatever waits (plaintext before a
TLS handshake: ``aionet.core.starttls``).
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TOO_LONG", "LineBuffer"]


class _TooLong(enum.Enum):
    TOO_LONG = "TOO_LONG"


#: What ``next_line`` returns for a line over ``max_line`` (its bytes are gone).
TOO_LONG: Final = _TooLong.TOO_LONG


class LineBuffer:
    """Received bytes, cut into lines of at most ``max_line`` bytes (the LF included)."""

    __slots__ = ("_buffer", "_dropping", "_scanned", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold no LF
        self._dropping = False  # inside a line that went over max_line

    def __len__(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data

    def next_line(self) -> bytes | _TooLong | None:
        """The next whole line without its CRLF, ``TOO_LONG`` for an over-long one, or None
        when no whole line has arrived yet."""
        buf = self._buffer
        end = buf.find(b"\n", self._scanned)
        if end < 0:
            if len(buf) > self.max_line:  # over the bound before its end: drop what came
                self._dropping = True
                buf.clear()
                self._scanned = 0
            else:
                self._scanned = len(buf)
            return None
        line = bytes(buf[:end])
        del buf[: end + 1]
        self._scanned = 0
        if self._dropping or end + 1 > self.max_line:
            self._dropping = False
            return TOO_LONG
        return line.rstrip(b"\r")

    def discard_input(self) -> int:
        """Drop every byte received and not yet returned; return how many."""
        size = len(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        self._dropping = False
        return size
