"""``FrameGuard``: the HTTP/2 frames a client sends, counted before ``h2`` parses them.

``h2`` answers every frame by the RFC, which is what a flood exploits: a PING or SETTINGS
costs the server an ACK each, an empty DATA frame or a PRIORITY frame a parse each, and a
header block split over CONTINUATION frames is buffered until it ends (CVE-2024-27316's
class; ``h2`` caps the frames at 64, not the bytes). The guard reads only the 9-byte frame
headers, across reads, and answers with a reason to cut the connection when:

* a header block (HEADERS plus its CONTINUATIONs) passes ``max_block`` bytes, or
* frames that carry no request progress (SETTINGS, PING, PRIORITY, empty DATA without
  END_STREAM, unknown types) come faster than ``rate`` per second beyond a burst of ``burst``
  (a leaky bucket).

WINDOW_UPDATE is not counted (a client downloading at speed sends many, legitimately), nor
RST_STREAM: ``H2Protocol`` counts the streams a client resets (rapid reset), with a tighter
bound than a frame count could give.
"""

from __future__ import annotations

__all__ = ["FrameGuard"]

_DATA, _HEADERS, _PRIORITY, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONT = range(10)
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
_PREFACE = 24


class FrameGuard:
    """Frame-header accounting for one HTTP/2 connection (sans-IO: ``feed`` bytes, get a
    reason to close or None)."""

    __slots__ = ("_at", "_block", "_head", "_level", "_skip", "burst", "max_block", "rate")

    def __init__(
        self, *, max_block: int, rate: float = 100.0, burst: float = 1000.0, preface: bool = True
    ) -> None:
        self.max_block = max_block
        self.rate = rate
        self.burst = burst
        self._skip = _PREFACE if preface else 0  # payload bytes (or the preface) to pass over
        self._head = b""  # a frame header cut by a read
        self._block = -1  # bytes of the open header block (-1: none open)
        self._level = 0.0
        self._at = 0.0

    def feed(self, data: bytes, now: float) -> str | None:
        """Account for ``data`` (the next bytes from the client) at time ``now``."""
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            need = 9 - len(self._head)
            self._head += data[pos : pos + need]
            pos += need
            if len(self._head) < 9:
                return None
            head, self._head = self._head, b""
            length = int.from_bytes(head[:3], "big")
            reason = self._frame(head[3], head[4], length, now)
            if reason is not None:
                return reason
            self._skip = length
        return None

    def _frame(self, kind: int, flags: int, length: int, now: float) -> str | None:
        if kind in (_HEADERS, _PUSH):
            self._block = -1 if flags & _END_HEADERS else length
            return self._check_block() if self._block >= 0 else None
        if kind == _CONT:
            if self._block >= 0:
                self._block += length
                reason = self._check_block()
                if flags & _END_HEADERS:
                    self._block = -1
                return reason
            return None  # out of place: h2 refuses it
        if kind in (_WINDOW, _GOAWAY, _RST):  # RST_STREAM: H2Protocol counts resets per stream
            return None
        if kind == _DATA:
            if length or flags & _END_STREAM:
                return None
        elif kind in (_SETTINGS, _PING) and flags & _ACK:
            return None
        # Costs the server work and moves no request forward: one drop in the bucket.
        level = max(0.0, self._level - (now - self._at) * self.rate) + 1
        self._level, self._at = level, now
        return "control_flood" if level > self.burst else None

    def _check_block(self) -> str | None:
        return "header_block_too_large" if self._block > self.max_block else None
