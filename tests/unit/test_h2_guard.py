"""``FrameGuard``: frame headers counted across reads, header-block bytes, the control bucket."""

from __future__ import annotations

from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from aionet.http._h2_guard import FrameGuard

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def feed_bytewise(guard: FrameGuard, data: bytes, now: float = 0.0) -> str | None:
    for i in range(len(data)):  # the worst split: one byte per read
        reason = guard.feed(data[i : i + 1], now)
        if reason is not None:
            return reason
    return None


def test_header_block_bytes_are_bounded_across_continuations_and_reads() -> None:
    guard = FrameGuard(max_block=1000)
    data = PREFACE + HeadersFrame(1, b"h" * 400).serialize()
    data += ContinuationFrame(1, b"c" * 400).serialize()
    assert feed_bytewise(guard, data) is None
    assert guard.feed(ContinuationFrame(1, b"c" * 300).serialize(), 0.0) == "header_block_too_large"
    # A block that ends in time leaves nothing open.
    guard = FrameGuard(max_block=1000)
    done = ContinuationFrame(1, b"c" * 500, flags=["END_HEADERS"]).serialize()
    assert guard.feed(PREFACE + HeadersFrame(1, b"h" * 400).serialize() + done, 0.0) is None
    assert guard.feed(HeadersFrame(3, b"h" * 900, flags=["END_HEADERS"]).serialize(), 0) is None


def test_control_frames_fill_a_leaky_bucket() -> None:
    guard = FrameGuard(max_block=1000, rate=10, burst=20)
    ping = PingFrame(0, b"12345678").serialize()
    assert guard.feed(PREFACE + ping * 20, now=0.0) is None
    assert guard.feed(ping, now=0.0) == "control_flood"
    guard = FrameGuard(max_block=1000, rate=10, burst=20)
    for second in range(10):  # ten a second drain as fast as they come
        assert guard.feed((PREFACE if second == 0 else b"") + ping * 10, now=float(second)) is None


def test_what_is_not_counted() -> None:
    guard = FrameGuard(max_block=1000, rate=1, burst=2)
    free = [
        PingFrame(0, b"12345678", flags=["ACK"]),
        SettingsFrame(0, flags=["ACK"]),
        WindowUpdateFrame(1, 100),
        DataFrame(1, b"x"),
        DataFrame(1, b"", flags=["END_STREAM"]),
    ]
    data = PREFACE + b"".join(f.serialize() for f in free) * 50
    assert feed_bytewise(guard, data) is None
    counted = [SettingsFrame(0, {}), DataFrame(1, b""), SettingsFrame(0, {})]
    assert guard.feed(b"".join(f.serialize() for f in counted), 0.0) == "control_flood"
