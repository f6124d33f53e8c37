"""The bounded line buffer every line protocol reads with (tier 1: bytes in, lines out)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aionet.proto.lines import TOO_LONG, LineBuffer


def lines_of(buf: LineBuffer) -> list[object]:
    out: list[object] = []
    while (line := buf.next_line()) is not None:
        out.append(line)
    return out


def test_lines_crlf_and_bare_lf() -> None:
    buf = LineBuffer(64)
    buf.feed(b"USER a\r\nPASS b\nNO")
    assert lines_of(buf) == [b"USER a", b"PASS b"]
    buf.feed(b"OP\r\n")
    assert lines_of(buf) == [b"NOOP"]
    assert len(buf) == 0


def test_an_over_long_line_is_dropped_as_it_arrives_and_reported_once() -> None:
    buf = LineBuffer(16)
    for _ in range(1000):  # a megabyte-long line never holds more than max_line
        buf.feed(b"x" * 1000)
        assert buf.next_line() is None
        assert len(buf) <= 1000 + 16
    buf.feed(b"tail\r\nNEXT\r\n")
    assert lines_of(buf) == [TOO_LONG, b"NEXT"]


def test_the_bound_counts_the_line_end() -> None:
    buf = LineBuffer(8)
    buf.feed(b"123456\r\n1234567\r\n")
    assert lines_of(buf) == [b"123456", TOO_LONG]


def test_discard_input_drops_what_waits() -> None:
    buf = LineBuffer(64)
    buf.feed(b"STLS\r\nQUIT\r\npartial")
    assert buf.next_line() == b"STLS"
    assert buf.discard_input() == len(b"QUIT\r\npartial")
    assert buf.next_line() is None


@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(min_value=4, max_value=64))
def test_any_chunking_gives_the_same_lines(chunks: list[bytes], max_line: int) -> None:
    whole, split = LineBuffer(max_line), LineBuffer(max_line)
    whole.feed(b"".join(chunks))
    expected = lines_of(whole)
    got: list[object] = []
    for chunk in chunks:
        split.feed(chunk)
        got += lines_of(split)
        assert len(split) <= max_line + len(chunk)
    assert got == expected
