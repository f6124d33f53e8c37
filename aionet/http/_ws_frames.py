"""RFC 6455 frame heads for ``WebSocket``'s fast path: pure functions, no I/O, no state.

``websockets``' sans-IO ``Protocol`` frames every message through generator coroutines, a
``Frame`` dataclass and ``Opcode`` enum lookups: about half of the Python time an echo server
spends per small message. The session parses the head of each client frame here instead and
takes the common case itself: a whole, final, masked text or binary frame with no reserved bit,
outside a fragmented message. Every other frame goes, whole, to ``websockets``, which keeps the
protocol's state (fragments, control frames, the close handshake) and its RFC answers (1002,
1009); a head that breaks a rule ``websockets`` checks before the payload (an unknown opcode, a
missing mask, a length over the limit) hands it everything from there on.
"""

from __future__ import annotations

try:  # what websockets' own frame parser uses: its C speedup, or the pure-Python fallback
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the wheels ship the speedup
    from websockets.utils import apply_mask

__all__ = ["BAD_HEAD", "GATHER", "MASK_VIEW", "frame_at", "server_head", "unmask"]

#: ``frame_at``'s answer for a head that ``websockets`` must see (it fails the connection).
BAD_HEAD = (-1, -1, -1)
#: From this payload size, unmask through a ``memoryview`` (no copy of the masked bytes).
MASK_VIEW = 1024
#: From this payload size, a frame is written as head and payload gathered, not joined first
#: (measured with uvloop: a join costs less below about 8 KiB, more above).
GATHER = 8192
# Opcodes 0-2 and 8-10 (RFC 6455 §5.2); the others are reserved.
_KNOWN = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})


def frame_at(buf: bytes | bytearray, pos: int, limit: int) -> tuple[int, int, int] | None:
    """The client frame starting at ``buf[pos]``: ``(first byte, payload start, frame end)``.

    ``None`` when the head is not all there yet; ``BAD_HEAD`` for an unknown opcode, a frame
    without the mask bit (a client must mask) or a payload over ``limit`` bytes. The end may
    lie past ``len(buf)``: the payload has not all arrived.
    """
    size = len(buf)
    if size - pos < 2:
        return None
    first, second = buf[pos], buf[pos + 1]
    if (first & 0x0F) not in _KNOWN or not second & 0x80:
        return BAD_HEAD
    length, at = second & 0x7F, pos + 2
    if length == 126:
        if size - pos < 4:
            return None
        length, at = int.from_bytes(buf[at : at + 2], "big"), at + 2
    elif length == 127:
        if size - pos < 10:
            return None
        length, at = int.from_bytes(buf[at : at + 8], "big"), at + 8
    if length > limit:
        return BAD_HEAD
    return first, at + 4, at + 4 + length


def unmask(buf: bytes, start: int, end: int) -> bytes:
    """The payload ``buf[start:end]`` unmasked with the key in the 4 bytes before it."""
    key = buf[start - 4 : start]
    if end - start >= MASK_VIEW:
        with memoryview(buf) as view:
            return apply_mask(view[start:end], key)
    return apply_mask(buf[start:end], key)


def server_head(first: int, n: int) -> bytes:
    """The head of an unmasked server frame: ``first`` (FIN and opcode), then the length."""
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return bytes((first, 126, n >> 8, n & 0xFF))
    return bytes((first, 127)) + n.to_bytes(8, "big")
