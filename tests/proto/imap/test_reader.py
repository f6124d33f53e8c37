"""IMAP command framing without sockets: bytes in, commands out, memory bounded (tier 1)."""

from __future__ import annotations

import pytest

from aionet.proto.imap import (
    MAX_LITERALS,
    BadCommand,
    CommandReader,
    NeedContinuation,
    RawCommand,
    ReaderEvent,
)
from aionet.proto.lines import TOO_LONG


def events(reader: CommandReader, data: bytes = b"") -> list[ReaderEvent]:
    reader.feed(data)
    out: list[ReaderEvent] = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


def test_a_simple_command_and_pipelining_in_one_feed() -> None:
    got = events(CommandReader(), b"a1 NOOP\r\nA2 capability\r\na3 LOGOUT\n")
    assert got == [
        RawCommand("a1", "NOOP", (b"",)),
        RawCommand("A2", "CAPABILITY", (b"",)),
        RawCommand("a3", "LOGOUT", (b"",)),
    ]


def test_the_arguments_keep_their_leading_space() -> None:
    (cmd,) = events(CommandReader(), b"a1 UID FETCH 1:* (FLAGS)\r\n")
    assert cmd == RawCommand("a1", "UID", (b" FETCH 1:* (FLAGS)",))


def test_a_command_split_byte_by_byte() -> None:
    reader = CommandReader()
    data = b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n"
    got: list[ReaderEvent] = []
    for byte in data:
        got += events(reader, bytes([byte]))
    assert got == [
        NeedContinuation("a1"),
        RawCommand("a1", "LOGIN", (b" {5}", b"alice", b" {6+}", b"secret", b"")),
    ]


def test_synchronizing_literal_waits_for_its_bytes() -> None:
    reader = CommandReader()
    assert events(reader, b"A003 APPEND saved-messages (\\Seen) {8}\r\n") == [
        NeedContinuation("A003")
    ]
    assert events(reader, b"Hello, ") == []
    assert events(reader, b"W\r\n") == [
        RawCommand("A003", "APPEND", (b" saved-messages (\\Seen) {8}", b"Hello, W", b""))
    ]


def test_literal_data_is_not_read_as_lines() -> None:
    # a literal may hold CRLF, parentheses, quotes and literal markers of its own
    body = b'line1\r\n(") {99}\r\n'
    got = events(CommandReader(), b"a APPEND x {%d+}\r\n%s\r\n" % (len(body), body))
    assert got == [RawCommand("a", "APPEND", (b" x {%d+}" % len(body), body, b""))]


def test_literal8_and_zero_length_literals() -> None:
    got = events(CommandReader(), b"a APPEND x ~{3+}\r\n\x00\x01\x02 ~{0}\r\n\r\n")
    assert got == [
        NeedContinuation("a"),
        RawCommand("a", "APPEND", (b" x ~{3+}", b"\x00\x01\x02", b" ~{0}", b"", b"")),
    ]


def test_a_marker_inside_a_quoted_string_is_not_a_literal() -> None:
    got = events(CommandReader(), b'a SEARCH SUBJECT "{5}"\r\nb SEARCH SUBJECT "x {5}\r\n')
    assert got == [
        RawCommand("a", "SEARCH", (b' SUBJECT "{5}"',)),
        RawCommand("b", "SEARCH", (b' SUBJECT "x {5}',)),  # unterminated: the parser's BAD
    ]


def test_an_escaped_quote_does_not_end_the_string() -> None:
    got = events(CommandReader(), b'a LOGIN "a\\" {3}\r\nb LOGIN "a\\\\" {3}\r\n')
    assert got == [
        RawCommand("a", "LOGIN", (b' "a\\" {3}',)),  # still inside the quotes
        NeedContinuation("b"),
    ]


def test_synchronizing_literal_over_the_limit_is_refused_before_the_client_sends_it() -> None:
    reader = CommandReader(max_literal=100)
    assert events(reader, b"a APPEND x {101}\r\n") == [BadCommand("a", "[TOOBIG] literal too big")]
    # the client got BAD instead of "+": the next line is a new command
    assert events(reader, b"b NOOP\r\n") == [RawCommand("b", "NOOP", (b"",))]


@pytest.mark.parametrize("marker", [b"{2147483648}", b"{99999999999999999999}"])
def test_huge_synchronizing_literals_cost_nothing(marker: bytes) -> None:
    reader = CommandReader()
    assert events(reader, b"a APPEND x " + marker + b"\r\nb NOOP\r\n") == [
        BadCommand("a", "[TOOBIG] literal too big"),
        RawCommand("b", "NOOP", (b"",)),
    ]


def test_non_synchronizing_literal_bomb_is_counted_down_never_stored() -> None:
    max_line = 1024
    reader = CommandReader(max_line=max_line, max_literal=1000)
    assert events(reader, b"a APPEND x {2147483648+}\r\n") == []
    sent = 0
    chunk = b"\xff" * 65536
    while sent + len(chunk) <= 2**31:  # the whole 2 GiB, in 64 KiB chunks
        if sent > 2**31 - 2**26 or sent < 2**20:  # check the bound at both ends
            assert events(reader, chunk) == []
            assert len(reader) <= max_line + 64
        else:
            reader.feed(chunk)
            assert reader.next_event() is None
        sent += len(chunk)
    assert events(reader, b" (\\Seen) {5+}\r\nhello\r\nb NOOP\r\n") == [
        BadCommand("a", "[TOOBIG] literal too big"),
        RawCommand("b", "NOOP", (b"",)),
    ]


def test_a_refused_command_ends_at_its_next_synchronizing_literal() -> None:
    reader = CommandReader(max_literal=10)
    got = events(reader, b"a APPEND x {20+}\r\n" + b"y" * 20 + b" {3}\r\nb NOOP\r\n")
    assert got == [BadCommand("a", "[TOOBIG] literal too big"), RawCommand("b", "NOOP", (b"",))]


def test_literals_of_one_command_share_the_limit() -> None:
    reader = CommandReader(max_literal=10)
    got = events(reader, b"a APPEND x {6+}\r\n123456 {6}\r\nb NOOP\r\n")
    assert got == [BadCommand("a", "[TOOBIG] literal too big"), RawCommand("b", "NOOP", (b"",))]


def test_too_many_digits_in_a_literal_size() -> None:
    reader = CommandReader()
    got = events(reader, b"a LOGIN {123456789012345678901+}\r\nb NOOP\r\n")
    assert got == [BadCommand("a", "invalid literal size"), RawCommand("b", "NOOP", (b"",))]


def test_too_many_literals() -> None:
    reader = CommandReader()
    data = b"a SEARCH" + b" {0+}\r\n" * (MAX_LITERALS + 1) + b" ALL\r\nb NOOP\r\n"
    assert events(reader, data) == [
        BadCommand("a", "too many literals"),
        RawCommand("b", "NOOP", (b"",)),
    ]
    assert len(reader) == 0


def test_exactly_the_most_literals_is_fine() -> None:
    data = b"a SEARCH" + b" {0+}\r\n" * MAX_LITERALS + b" ALL\r\n"
    (cmd,) = events(CommandReader(), data)
    assert isinstance(cmd, RawCommand) and len(cmd.pieces) == 2 * MAX_LITERALS + 1


def test_command_text_is_bounded_across_lines() -> None:
    reader = CommandReader(max_line=64)
    line = b" " + b"x" * 40 + b" {0+}\r\n"  # each line within max_line, all six beyond 4x
    assert events(reader, b"a SEARCH" + line * 6 + b"\r\nb NOOP\r\n") == [
        BadCommand("a", "command too long"),
        RawCommand("b", "NOOP", (b"",)),
    ]


def test_an_over_long_line_is_reported_once_with_its_tag() -> None:
    reader = CommandReader(max_line=64)
    assert events(reader, b"a17 LOGIN " + b"x" * 100) == []
    assert len(reader) <= 64 + 100
    for _ in range(100):
        assert events(reader, b"x" * 1000) == []
        assert len(reader) <= 64 + 1000
    assert events(reader, b"\r\nb NOOP\r\n") == [
        BadCommand("a17", "line too long"),
        RawCommand("b", "NOOP", (b"",)),
    ]


def test_an_over_long_line_without_a_readable_tag_is_untagged() -> None:
    reader = CommandReader(max_line=32)
    assert events(reader, b"x" * 100 + b"\r\n") == [BadCommand(None, "line too long")]
    assert events(reader, b"(bad LOGIN " + b"x" * 100 + b"\r\n") == [
        BadCommand(None, "line too long")
    ]


def test_an_over_long_continuation_line_keeps_the_tag() -> None:
    reader = CommandReader(max_line=32)
    got = events(reader, b"t1 LOGIN {1+}\r\na " + b"y" * 64 + b"\r\nt2 NOOP\r\n")
    assert got == [BadCommand("t1", "line too long"), RawCommand("t2", "NOOP", (b"",))]


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"", BadCommand(None, "empty command line")),
        (b"+ NOOP", BadCommand(None, "missing or invalid tag")),
        (b"a+b NOOP", BadCommand(None, "missing or invalid tag")),
        (b"* NOOP", BadCommand(None, "missing or invalid tag")),
        (b"(a NOOP", BadCommand(None, "missing or invalid tag")),
        (b'"a" NOOP', BadCommand(None, "missing or invalid tag")),
        (b"a\x01 NOOP", BadCommand(None, "missing or invalid tag")),
        (b"a1", BadCommand("a1", "missing command")),
        (b"a1 ", BadCommand("a1", "missing command")),
        (b"a1  NOOP", BadCommand("a1", "missing command")),
        (b"a] NOOP", RawCommand("a]", "NOOP", (b"",))),  # "]" is an ASTRING-CHAR
        (b"a.b-c_9 noop", RawCommand("a.b-c_9", "NOOP", (b"",))),
    ],
)
def test_tag_validation(line: bytes, event: ReaderEvent) -> None:
    assert events(CommandReader(), line + b"\r\n") == [event]


def test_a_bad_tag_line_still_skips_its_non_synchronizing_literal() -> None:
    got = events(CommandReader(), b"* LOGIN {4+}\r\nb NO\r\nc NOOP\r\n")
    assert got == [BadCommand(None, "missing or invalid tag"), RawCommand("c", "NOOP", (b"",))]


def test_nesting_depth() -> None:
    reader = CommandReader(max_depth=3)
    assert events(reader, b"a SEARCH (((ALL)))\r\n") == [
        RawCommand("a", "SEARCH", (b" (((ALL)))",))
    ]
    assert events(reader, b"b SEARCH ((((ALL))))\r\n") == [BadCommand("b", "too deeply nested")]


def test_nesting_counts_across_literals_but_not_inside_quotes() -> None:
    reader = CommandReader(max_depth=2)
    assert events(reader, b'a SEARCH ((("(((" {1+}\r\nx)))\r\n') == [
        BadCommand("a", "too deeply nested")
    ]
    assert events(reader, b'b SEARCH (("(((((" {1+}\r\nx (y)))\r\n') == [
        BadCommand("b", "too deeply nested")
    ]
    assert events(reader, b'c SEARCH (("(((((" {1+}\r\n(x))\r\n') == [
        RawCommand("c", "SEARCH", (b' (("(((((" {1+}', b"(", b"x))"))  # literal "(" not counted
    ]


def test_deep_nesting_bomb_is_refused_in_linear_time() -> None:
    reader = CommandReader(max_line=100_000)
    assert events(reader, b"a SEARCH " + b"(" * 50_000 + b"\r\n") == [
        BadCommand("a", "too deeply nested")
    ]


def test_raw_lines_for_idle_and_authenticate() -> None:
    reader = CommandReader(max_line=16)
    assert events(reader, b"a IDLE\r\n") == [RawCommand("a", "IDLE", (b"",))]
    reader.feed(b"DONE\r\nb NOOP\r\n" + b"z" * 40 + b"\r\n")
    assert reader.next_line() == b"DONE"
    assert reader.next_event() == RawCommand("b", "NOOP", (b"",))
    assert reader.next_line() is TOO_LONG
    assert reader.next_line() is None


def test_discard_input_drops_pipelined_plaintext() -> None:
    reader = CommandReader()
    reader.feed(b"a STARTTLS\r\nb LOGIN evil {5}\r\npartial")
    assert reader.next_event() == RawCommand("a", "STARTTLS", (b"",))
    assert reader.discard_input() == len(b"b LOGIN evil {5}\r\npartial")
    assert reader.next_event() is None
    assert events(reader, b"c NOOP\r\n") == [RawCommand("c", "NOOP", (b"",))]


def test_discard_input_mid_literal_resets_the_command() -> None:
    reader = CommandReader()
    assert events(reader, b"a APPEND x {10}\r\n12345") == [NeedContinuation("a")]
    assert reader.discard_input() == 5
    assert events(reader, b"b NOOP\r\n") == [RawCommand("b", "NOOP", (b"",))]


def test_repr_hides_literal_data() -> None:
    (cmd,) = events(CommandReader(), b"a LOGIN alice {6+}\r\nsecret\r\n")
    assert "secret" not in repr(cmd) and "literals=[6]" in repr(cmd)
