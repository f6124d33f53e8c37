"""SEARCH keys: every key parsed and evaluated against a message view (tier 1)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field

import pytest

from aionet.proto.imap import (
    MessageInfo,
    Scanner,
    SearchKey,
    SequenceSet,
    matches,
    parse_command,
    parse_search_key,
    replace_saved,
)
from aionet.proto.imap import Search as SearchCommand
from aionet.proto.imap._reader import RawCommand

MESSAGE = (
    b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>\r\n"
    b"To: Alice <alice@example.org>\r\n"
    b"Cc: carol@example.com\r\n"
    b"Bcc: dave@example.net\r\n"
    b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= aus Berlin\r\n"
    b"Date: Tue, 2 Jan 2024 23:30:00 -0800\r\n"
    b"X-Priority: 1\r\n"
    b"X-Empty:\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=x\r\n"
    b"\r\n"
    b"--x\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Sch=F6ne Gr=FC=DFe, bis Montag.\r\n"
    b"--x\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"PHA+QmlzIGJhbGQhPC9wPg==\r\n"
    b"--x\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"\r\n"
    b"secret-attachment-words\r\n"
    b"--x--\r\n"
)


def day(y: int, m: int, d: int, hour: int = 12) -> float:
    return float(calendar.timegm((y, m, d, hour, 0, 0)))


@dataclass
class View:
    """A SearchView that counts how often the message was parsed."""

    seq: int = 3
    uid: int = 42
    flags: frozenset[str] = frozenset({"\\Seen", "\\Flagged", "$Forwarded"})
    size: int = 2000
    internal_date: float = day(2024, 1, 5)
    modseq: int = 700
    recent: bool = False
    largest_seq: int = 10
    largest_uid: int = 90
    data: bytes = MESSAGE
    parsed: list[int] = field(default_factory=list)

    def info(self) -> MessageInfo:
        self.parsed.append(1)
        return MessageInfo.parse(self.data)


def key(text: str) -> SearchKey:
    cmd = parse_command(RawCommand("t", "SEARCH", (b" " + text.encode(),)))
    assert isinstance(cmd, SearchCommand)
    return cmd.key


CHEAP = [
    ("ALL", True),
    ("ANSWERED", False),
    ("UNANSWERED", True),
    ("DELETED", False),
    ("UNDELETED", True),
    ("DRAFT", False),
    ("UNDRAFT", True),
    ("FLAGGED", True),
    ("UNFLAGGED", False),
    ("SEEN", True),
    ("UNSEEN", False),
    ("KEYWORD $Forwarded", True),
    ("KEYWORD $forwarded", True),  # keywords compare case-insensitively
    ("KEYWORD Junk", False),
    ("UNKEYWORD Junk", True),
    ("UNKEYWORD $FORWARDED", False),
    ("RECENT", False),
    ("OLD", True),
    ("NEW", False),
    ("LARGER 1999", True),
    ("LARGER 2000", False),
    ("SMALLER 2001", True),
    ("SMALLER 2000", False),
    ("BEFORE 5-Jan-2024", False),
    ("BEFORE 6-Jan-2024", True),
    ("ON 5-Jan-2024", True),
    ('ON "05-Jan-2024"', True),
    ("ON 4-jan-2024", False),
    ("SINCE 5-Jan-2024", True),
    ("SINCE 6-Jan-2024", False),
    ("3", True),
    ("1:2,4:*", False),
    ("*", False),
    ("2:*", True),
    ("UID 42", True),
    ("UID 1:41,43:*", False),
    ("UID 90:*", False),
    ("UID $", False),  # SEARCHRES marker not substituted: nothing
    ("MODSEQ 700", True),
    ("MODSEQ 701", False),
    ('MODSEQ "/flags/\\\\seen" priv 1', True),
    ("NOT SEEN", False),
    ("NOT NOT SEEN", True),
    ("OR SEEN DELETED", True),
    ("OR DELETED DRAFT", False),
    ("(SEEN FLAGGED)", True),
    ("(SEEN (FLAGGED DELETED))", False),
    ("SEEN UID 42 NOT DELETED OR ANSWERED 3", True),
]


@pytest.mark.parametrize(("text", "expected"), CHEAP)
def test_cheap_keys_never_parse_the_message(text: str, expected: bool) -> None:
    view = View()
    assert matches(key(text), view) is expected
    assert view.parsed == []


def test_new_is_recent_and_unseen() -> None:
    assert matches(key("NEW"), View(recent=True, flags=frozenset()))
    assert not matches(key("NEW"), View(recent=True))
    assert matches(key("RECENT"), View(recent=True))


def test_star_follows_the_mailbox() -> None:
    assert matches(key("*"), View(seq=10))
    assert matches(key("UID *"), View(uid=90))
    assert matches(key("UID 100:*"), View(uid=90))  # RFC 9051 §6.4.9


TEXT = [
    ('FROM "jörg"', True),  # RFC 2047 decoded
    ("FROM JOERG@EXAMPLE", True),
    ("FROM alice", False),
    ("TO alice", True),
    ("CC CAROL", True),
    ("BCC dave@", True),
    ('SUBJECT "grüße"', True),  # ISO-8859-1 encoded word, case-insensitive
    ('SUBJECT "aus berlin"', True),
    ("SUBJECT Hamburg", False),
    ("HEADER X-Priority 1", True),
    ('HEADER x-priority ""', True),  # any message with the field
    ('HEADER X-Empty ""', True),
    ('HEADER X-Missing ""', False),
    ("HEADER X-Priority 2", False),
    ('BODY "schöne"', True),  # quoted-printable in ISO-8859-1
    ('BODY "bis bald"', True),  # base64 HTML part in UTF-8
    ("BODY secret-attachment", False),  # not a text part
    ("BODY Berlin", False),  # the body, not the header
    ("TEXT Berlin", True),  # header or body
    ("TEXT montag", True),
    ("TEXT nowhere", False),
    ("SENTON 2-Jan-2024", True),  # the Date header's day as written, zone ignored
    ("SENTBEFORE 3-Jan-2024", True),
    ("SENTBEFORE 2-Jan-2024", False),
    ("SENTSINCE 2-Jan-2024", True),
    ("SENTSINCE 3-Jan-2024", False),
]


@pytest.mark.parametrize(("text", "expected"), TEXT)
def test_text_and_sent_keys(text: str, expected: bool) -> None:
    view = View()
    assert matches(key(text), view) is expected
    assert view.parsed  # these keys do need the message


def test_sent_date_falls_back_to_the_internal_date() -> None:
    view = View(data=b"Subject: no date\r\n\r\n", internal_date=day(2020, 3, 1))
    assert matches(key("SENTON 1-Mar-2020"), view)


def test_cheap_keys_decide_first() -> None:
    view = View()
    assert not matches(key('BODY "schöne" DELETED'), view)
    assert view.parsed == []  # DELETED failed first: the body was never needed
    assert matches(key("OR BODY nothing SEEN"), view)
    assert view.parsed == []
    assert matches(key("OR SUBJECT Berlin DELETED"), view)
    assert view.parsed


def test_replace_saved_substitutes_the_saved_uids() -> None:
    saved = SequenceSet.parse("40:45")
    replaced = replace_saved(key("OR UID $ SEEN"), saved)
    assert matches(replaced, View(uid=42, flags=frozenset()))
    assert not matches(replaced, View(uid=50, flags=frozenset()))
    assert matches(replace_saved(key("NOT $"), saved), View(uid=50))
    assert not matches(replace_saved(key("(SEEN $)"), saved), View(uid=50))
    assert matches(replace_saved(key("(SEEN $)"), saved), View(uid=45))


def test_the_key_parser_reads_one_key_at_the_cursor() -> None:
    scanner = Scanner((b"OR SEEN (UNSEEN DELETED) rest",))
    parse_search_key(scanner)
    assert scanner.buf[scanner.pos :] == b" rest"
