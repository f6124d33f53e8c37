"""Building IMAP responses (tier 1)."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from aionet.proto.imap import (
    astring,
    continuation,
    format_date_time,
    literal,
    nstring,
    plist,
    quoted,
    tagged,
    untagged,
)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("hello world", b'"hello world"'),
        ("", b'""'),
        ('say "hi" \\ bye', b'"say \\"hi\\" \\\\ bye"'),
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        (b"nul\x00", b"{4}\r\nnul\x00"),
        ("Entwürfe", b"{9}\r\nEntw\xc3\xbcrfe"),  # 8-bit: a literal without UTF-8
        (b"tab\there", b'"tab\there"'),
    ],
)
def test_quoted(value: str | bytes, wire: bytes) -> None:
    assert quoted(value) == wire


def test_quoted_utf8_when_enabled_and_valid() -> None:
    assert quoted("Entwürfe", utf8=True) == '"Entwürfe"'.encode()
    assert quoted(b"\xff\xfe", utf8=True) == b"{2}\r\n\xff\xfe"  # not UTF-8: a literal
    assert quoted("a\nb", utf8=True) == b"{3}\r\na\nb"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Sent/2024", b"Sent/2024"),
        ("&U,BTFw-", b"&U,BTFw-"),
        ("with space", b'"with space"'),
        ("", b'""'),
        ("NIL", b'"NIL"'),  # an atom NIL would read as nil
        ("nil", b'"nil"'),
        ("a%b", b'"a%b"'),
        ("a*", b'"a*"'),
        ("a]", b'"a]"'),
        ("(x)", b'"(x)"'),
        ("x{3}", b'"x{3}"'),
    ],
)
def test_astring_prefers_atoms(value: str, wire: bytes) -> None:
    assert astring(value) == wire


def test_nstring_and_literal() -> None:
    assert nstring(None) == b"NIL"
    assert nstring("NIL") == b'"NIL"'
    assert literal(b"") == b"{0}\r\n"
    assert literal(b"abc") == b"{3}\r\nabc"
    assert literal(b"\x00\x01", binary=True) == b"~{2}\r\n\x00\x01"


def test_plist() -> None:
    assert plist([]) == b"()"
    assert plist(["\\Seen", b"$Forwarded"]) == b"(\\Seen $Forwarded)"
    assert plist([b"UID 4", plist(["\\Seen"])]) == b"(UID 4 (\\Seen))"


def test_status_lines() -> None:
    assert tagged("a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert tagged("A003", "OK", "APPEND completed", code="APPENDUID 38505 3955") == (
        b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"
    )
    assert tagged(b"t", "NO", b"x", code=b"TRYCREATE") == b"t NO [TRYCREATE] x\r\n"
    assert untagged("5 EXISTS") == b"* 5 EXISTS\r\n"
    assert untagged(b"1 FETCH (BODY[] {2}\r\nhi)") == b"* 1 FETCH (BODY[] {2}\r\nhi)\r\n"
    assert continuation() == b"+ \r\n"
    assert continuation("Ready for literal data") == b"+ Ready for literal data\r\n"


def test_human_text_cannot_inject_a_line() -> None:
    assert tagged("a", "BAD", "oops\r\n* 1 EXISTS") == b"a BAD oops  * 1 EXISTS\r\n"
    assert tagged("a", "NO", "x", code="A\nB") == b"a NO [A B] x\r\n"
    assert continuation("x\ry") == b"+ x y\r\n"


def test_format_date_time() -> None:
    # RFC 3501 §7.4.2's example INTERNALDATE
    pdt = timezone(timedelta(hours=-7))
    assert format_date_time(837596665.0, pdt) == b'"17-Jul-1996 02:44:25 -0700"'
    assert format_date_time(837596665.0) == b'"17-Jul-1996 09:44:25 +0000"'
    assert format_date_time(0) == b'"01-Jan-1970 00:00:00 +0000"'
    india = timezone(timedelta(hours=5, minutes=30))
    assert format_date_time(1704067200, india) == b'"01-Jan-2024 05:30:00 +0530"'
    newfoundland = timezone(-timedelta(hours=3, minutes=30))
    assert format_date_time(1704067200, newfoundland) == b'"31-Dec-2023 20:30:00 -0330"'
