"""ENVELOPE, BODY/BODYSTRUCTURE and sections of stored messages (tier 1).

Expected strings are written by hand from RFC 3501 §7.4.2 / RFC 9051 §7.5.2 and from what
Dovecot answers (lower-case defaults, types and parameters as written, a default charset on
text/*, sizes of the stored CRLF bytes, lines counted as LFs).
"""

from __future__ import annotations

import base64
from datetime import date

import pytest

from aionet.proto.imap import MAX_MIME_DEPTH, MAX_PARTS, MessageInfo, Section


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# -- RFC 3501 §7.4.2: the FETCH example's message -----------------------------------------------

RFC_HEADER = """\
Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII
Content-Transfer-Encoding: 7BIT

"""
RFC_BODY = ("x" * 31 + "\n") * 91 + "y" * 23 + "\n"  # 92 lines, 3028 octets in CRLF
RFC_MESSAGE = crlf(RFC_HEADER + RFC_BODY)


def test_rfc3501_fetch_example() -> None:
    assert len(crlf(RFC_BODY)) == 3028
    info = MessageInfo.parse(RFC_MESSAGE)
    assert info.envelope() == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )
    assert info.body_structure(extended=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    )
    assert info.body_structure() == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)'
    )


def test_a_message_without_mime_headers_is_us_ascii_text() -> None:
    info = MessageInfo.parse(b"Subject: hi\r\n\r\nbody\r\n")
    assert info.body_structure() == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'
    )


# -- multipart/alternative ---------------------------------------------------------------------

ALTERNATIVE = crlf("""\
From: Bob <bob@example.net>
To: alice@example.org
Subject: Lunch?
Date: Tue, 2 Jan 2024 12:00:00 +0000
Message-ID: <alt@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 at noon?

--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Caf=C3=A9 at <b>noon</b>?</p>
--b1--
""")


def test_multipart_alternative() -> None:
    info = MessageInfo.parse(ALTERNATIVE)
    assert info.body_structure() == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 20 1 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 32 0 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "b1") NIL NIL NIL)'
    )
    assert info.body_structure(extended=False) == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 20 1)'
        b'("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 32 0) "alternative")'
    )
    assert info.envelope() == (
        b'("Tue, 2 Jan 2024 12:00:00 +0000" "Lunch?" (("Bob" NIL "bob" "example.net")) '
        b'(("Bob" NIL "bob" "example.net")) (("Bob" NIL "bob" "example.net")) '
        b'((NIL NIL "alice" "example.org")) NIL NIL NIL "<alt@example.net>")'
    )
    assert info.section(Section((1,))) == b"Caf=C3=A9 at noon?\r\n"
    assert info.section(Section((2,))) == b"<p>Caf=C3=A9 at <b>noon</b>?</p>"
    assert info.binary(Section((1,))) == "Café at noon?\r\n".encode()
    assert "café at noon" in info.text().casefold()


# -- multipart/mixed with an attachment and a forwarded message ----------------------------------

PNG_B64 = (  # one line of base64, as some mailers send it
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5E"
    "rkJggg=="
)
INNER = """\
From: carol@example.com
Subject: inner
Date: Sun, 31 Dec 2023 23:59:59 +0000
Content-Type: text/plain

Inner body.
"""
MIXED = crlf(f"""\
From: "Alice Example" <alice@example.org>
To: Bob <bob@example.net>, undisclosed-recipients:;
Subject: =?utf-8?q?R=C3=A9sum=C3=A9?= and photo
Date: Mon, 1 Jan 2024 10:00:00 +0100
Message-ID: <mixed@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is a multi-part message in MIME format.
--outer
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Voil=C3=A0 my r=C3=A9sum=C3=A9.

--outer
Content-Type: image/png; name="dot.png"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="dot.png"

{PNG_B64}

--outer
Content-Type: message/rfc822
Content-Description: forwarded

{INNER}
--outer--
epilogue
""")
INNER_ENVELOPE = (
    b'("Sun, 31 Dec 2023 23:59:59 +0000" "inner" ((NIL NIL "carol" "example.com")) '
    b'((NIL NIL "carol" "example.com")) ((NIL NIL "carol" "example.com")) NIL NIL NIL NIL NIL)'
)


def test_multipart_mixed_with_attachment_and_message() -> None:
    assert (len(PNG_B64) + 2, len(crlf(INNER))) == (98, 121)
    info = MessageInfo.parse(MIXED)
    assert info.body_structure() == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 33 1 NIL NIL NIL NIL)'
        b'("image" "png" ("name" "dot.png") NIL NIL "base64" 98 NIL'
        b' ("attachment" ("filename" "dot.png")) NIL NIL)'
        b'("message" "rfc822" NIL NIL "forwarded" "7bit" 121 ' + INNER_ENVELOPE + b" "
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 NIL NIL NIL NIL)'
        b" 6 NIL NIL NIL NIL)"
        b' "mixed" ("boundary" "outer") NIL NIL NIL)'
    )
    assert info.body_structure(extended=False) == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 33 1)'
        b'("image" "png" ("name" "dot.png") NIL NIL "base64" 98)'
        b'("message" "rfc822" NIL NIL "forwarded" "7bit" 121 ' + INNER_ENVELOPE + b" "
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1) 6) "mixed")'
    )
    assert info.envelope() == (
        b'("Mon, 1 Jan 2024 10:00:00 +0100" "=?utf-8?q?R=C3=A9sum=C3=A9?= and photo" '
        b'(("Alice Example" NIL "alice" "example.org")) '
        b'(("Alice Example" NIL "alice" "example.org")) '
        b'(("Alice Example" NIL "alice" "example.org")) '
        b'(("Bob" NIL "bob" "example.net")(NIL NIL "undisclosed-recipients" NIL)'
        b"(NIL NIL NIL NIL)) NIL NIL NIL "
        b'"<mixed@example.org>")'
    )


def test_mixed_sections_and_binary() -> None:
    info = MessageInfo.parse(MIXED)
    assert info.section(Section()) == MIXED
    assert info.section(Section((3,))) == crlf(INNER)  # the whole message inside
    assert info.section(Section((3,), "HEADER")) == crlf(INNER.split("\n\n")[0] + "\n\n")
    assert info.section(Section((3,), "TEXT")) == b"Inner body.\r\n"
    assert info.section(Section((3, 1))) == b"Inner body.\r\n"  # single part: its body
    assert info.section(Section((3,), "MIME")) == (
        b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    )
    assert info.section(Section((2,), "MIME")).startswith(b"Content-Type: image/png;")
    assert info.section(Section((2,))) == PNG_B64.encode() + b"\r\n"
    assert info.binary(Section((2,))) == base64.b64decode(PNG_B64)
    assert info.binary(Section((1,))) == "Voilà my résumé.\r\n".encode()
    assert info.binary(Section((3,))) == crlf(INNER)
    assert info.binary(Section((9,))) == b""
    assert info.section(Section((1,), "HEADER")) == b""  # not a message/rfc822 part
    assert info.section(Section((4,))) == b""
    assert info.section(Section((1, 1))) == b""


def test_search_texts_are_decoded() -> None:
    info = MessageInfo.parse(MIXED)
    assert info.header_text("Subject") == ["Résumé and photo"]
    assert info.header_text("x-absent") == []
    text = info.text()
    assert "Voilà my résumé." in text and "Inner body." in text
    assert PNG_B64[:20] not in text  # attachments of other types are not searched
    assert "Subject: Résumé and photo" in info.header_block()
    assert info.sent_date() == date(2024, 1, 1)


# -- RFC 3501 §6.4.5: part numbering ----------------------------------------------------------

NUMBERING = crlf("""\
Subject: numbering
Content-Type: MULTIPART/MIXED; boundary=o

--o
Content-Type: text/plain

part 1
--o
Content-Type: application/octet-stream

part 2
--o
Content-Type: message/rfc822

Subject: part 3
Content-Type: multipart/mixed; boundary=m3

--m3
Content-Type: text/plain

part 3.1
--m3
Content-Type: application/octet-stream

part 3.2
--m3--
--o
Content-Type: multipart/mixed; boundary=m4

--m4
Content-Type: image/gif

part 4.1
--m4
Content-Type: message/rfc822

Subject: part 4.2
Content-Type: multipart/mixed; boundary=m42

--m42
Content-Type: text/plain

part 4.2.1
--m42
Content-Type: multipart/alternative; boundary=m422

--m422
Content-Type: text/plain

part 4.2.2.1
--m422
Content-Type: text/richtext

part 4.2.2.2
--m422--
--m42--
--m4--
--o--
""")


@pytest.mark.parametrize(
    "part",
    [(1,), (2,), (3, 1), (3, 2), (4, 1), (4, 2, 1), (4, 2, 2, 1), (4, 2, 2, 2)],
)
def test_rfc3501_part_numbers(part: tuple[int, ...]) -> None:
    info = MessageInfo.parse(NUMBERING)
    assert info.section(Section(part)) == b"part " + ".".join(map(str, part)).encode()


def test_rfc3501_part_specifiers() -> None:
    info = MessageInfo.parse(NUMBERING)
    assert info.section(Section((), "HEADER")) == (
        b"Subject: numbering\r\nContent-Type: MULTIPART/MIXED; boundary=o\r\n\r\n"
    )
    assert info.section(Section((), "TEXT")).startswith(b"--o\r\nContent-Type: text/plain")
    assert info.section(Section((3,), "HEADER")) == (
        b"Subject: part 3\r\nContent-Type: multipart/mixed; boundary=m3\r\n\r\n"
    )
    assert info.section(Section((3,), "TEXT")).startswith(b"--m3\r\n")
    assert info.section(Section((3,), "TEXT")).endswith(b"part 3.2\r\n--m3--")
    assert info.section(Section((4, 1), "MIME")) == b"Content-Type: image/gif\r\n\r\n"
    assert info.section(Section((4, 2), "HEADER")).startswith(b"Subject: part 4.2\r\n")
    assert info.section(Section((4, 2), "HEADER.FIELDS", ("SUBJECT",))) == (
        b"Subject: part 4.2\r\n\r\n"
    )
    assert info.section(Section((4,))).startswith(b"--m4\r\n")  # a multipart: its body
    for missing in [(5,), (1, 1), (4, 3), (4, 2, 3), (4, 2, 2, 3), (3, 3)]:
        assert info.section(Section(missing)) == b""


# -- header sections and partials ---------------------------------------------------------------


def test_header_fields_subsets() -> None:
    info = MessageInfo.parse(RFC_MESSAGE)
    assert info.section(Section((), "HEADER.FIELDS", ("FROM", "CC"))) == (
        b"From: Terry Gray <gray@cac.washington.edu>\r\n"
        b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\r\n"
    )
    assert info.section(Section((), "HEADER.FIELDS", ("X-NONE",))) == b"\r\n"
    kept = info.section(Section((), "HEADER.FIELDS.NOT", ("DATE", "FROM", "SUBJECT", "TO")))
    assert kept == (
        b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
        b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
        b"Content-Transfer-Encoding: 7BIT\r\n\r\n"
    )
    assert info.section(Section((), "HEADER")) == crlf(RFC_HEADER)
    assert info.section(Section((), "TEXT")) == crlf(RFC_BODY)


def test_folded_fields_are_returned_whole() -> None:
    data = b"Subject: a\r\n long\r\n\tsubject\r\nTo: x@y\r\n\r\nbody"
    info = MessageInfo.parse(data)
    assert info.section(Section((), "HEADER.FIELDS", ("SUBJECT",))) == (
        b"Subject: a\r\n long\r\n\tsubject\r\n\r\n"
    )
    assert info.envelope().startswith(b'(NIL "a long\tsubject" NIL NIL NIL ((NIL NIL "x" "y"))')


@pytest.mark.parametrize(
    ("partial", "expected"),
    [((0, 5), b"Date:"), ((6, 3), b"Wed"), ((len(RFC_MESSAGE) - 3, 10), b"y\n"), ((10**9, 4), b"")],
)
def test_partials_slice_the_section(partial: tuple[int, int], expected: bytes) -> None:
    info = MessageInfo.parse(RFC_MESSAGE)
    assert info.section(Section(), partial) == expected.replace(b"\n", b"\r\n")[: partial[1]]


def test_sections_are_byte_identical_with_bare_lf_and_odd_bytes() -> None:
    data = b"Content-Type: multipart/mixed; boundary=z\n\n--z\n\n\x00\xff\r\x00raw\n--z--\n"
    info = MessageInfo.parse(data)
    assert info.section(Section()) == data
    assert info.section(Section((1,))) == b"\x00\xff\r\x00raw"
    assert info.section(Section((1,), "MIME")) == b"\n"


# -- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b'"Doe, John" <john@example.com>', b'(("Doe, John" NIL "john" "example.com"))'),
        (b"undisclosed-recipients:;", b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'),
        (
            b'group: a@b.c, "Q" <q@r.s>;, d@e.f',
            b'((NIL NIL "group" NIL)(NIL NIL "a" "b.c")("Q" NIL "q" "r.s")(NIL NIL NIL NIL)'
            b'(NIL NIL "d" "e.f"))',
        ),
        (b"<@route1,@route2:user@host>", b'((NIL "@route1,@route2" "user" "host"))'),
        (b"user@host (Comment Name)", b'(("Comment Name" NIL "user" "host"))'),
        (b"localonly", b'((NIL NIL "localonly" "MISSING_DOMAIN"))'),
        (b'"john doe"@example.com', b'((NIL NIL "john doe" "example.com"))'),
        (b"user@[192.0.2.1]", b'((NIL NIL "user" "[192.0.2.1]"))'),
        (b"=?utf-8?q?J=C3=B6rg?= <j@x.de>", b'(("=?utf-8?q?J=C3=B6rg?=" NIL "j" "x.de"))'),
        (b"John Q. Public <jqp@x.org>", b'(("John Q. Public" NIL "jqp" "x.org"))'),
        (b"Broken <oops@", b'(("Broken" NIL "oops" "SYNTAX_ERROR"))'),
        (b"", b"NIL"),
        (b" , ,", b"NIL"),
        ("Jörg <j@x.de>".encode(), b'(({5}\r\nJ\xc3\xb6rg NIL "j" "x.de"))'),
    ],
)
def test_envelope_addresses(header: bytes, expected: bytes) -> None:
    info = MessageInfo.parse(b"To: " + header + b"\r\n\r\n")
    env = info.envelope()
    assert env == b"(NIL NIL NIL NIL NIL " + expected + b" NIL NIL NIL NIL)"


def test_sender_and_reply_to_default_to_from() -> None:
    data = b"From: a@b\r\nSender: s@b\r\nReply-To:\r\nIn-Reply-To: <x@y>\r\n\r\n"
    env = MessageInfo.parse(data).envelope()
    assert env == (
        b'(NIL NIL ((NIL NIL "a" "b")) ((NIL NIL "s" "b")) ((NIL NIL "a" "b")) '
        b'NIL NIL NIL "<x@y>" NIL)'
    )


def test_eight_bit_header_text_becomes_a_literal() -> None:
    env = MessageInfo.parse("Subject: Grüße\r\n\r\n".encode()).envelope()
    assert env == b"(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe NIL NIL NIL NIL NIL NIL NIL NIL)"


# -- MIME details -------------------------------------------------------------------------------


def test_parameters_rfc2231_and_defaults() -> None:
    data = crlf("""\
Content-Type: multipart/mixed; boundary="q"

--q
Content-Type: application/x-thing;
 title*0="long ";
 title*1="name";
 name*=utf-8''%E2%82%AC (comment)
Content-ID: <id@x>
Content-Language: en-GB (english), fr
Content-Location: http://example.com/a

data
--q
Content-Type: text/plain; format=flowed
Content-Disposition: inline

x
--q
Content-Type: garbage

y
--q--
""")
    info = MessageInfo.parse(data)
    assert info.body_structure() == (
        b'(("application" "x-thing" ("title" "long name" "name*" "utf-8\'\'%E2%82%AC")'
        b' "<id@x>" NIL "7bit" 4 NIL NIL ("en-GB" "fr") "http://example.com/a")'
        b'("text" "plain" ("format" "flowed" "charset" "us-ascii") NIL NIL "7bit" 1 0'
        b' NIL ("inline" NIL) NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "q") NIL NIL NIL)'
    )


def test_digest_parts_default_to_message_rfc822() -> None:
    data = crlf("""\
Content-Type: multipart/digest; boundary=d

--d

Subject: one

1
--d--
""")
    assert MessageInfo.parse(data).body_structure(extended=False) == (
        b'(("message" "rfc822" NIL NIL NIL "7bit" 17 (NIL "one" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0) 2) "digest")'
    )


def test_empty_multipart_shows_one_empty_part_as_dovecot_does() -> None:
    info = MessageInfo.parse(b'Content-Type: multipart/mixed; boundary="foo"\r\n\r\n')
    assert info.body_structure() == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "foo") NIL NIL NIL)'
    )
    assert info.body_structure(extended=False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    )


def test_boundary_prefixes_are_not_delimiters() -> None:
    data = crlf("""\
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: multipart/mixed; boundary=b-inner

--b-inner

in
--b-inner--
--bx
--b--
""")
    info = MessageInfo.parse(data)
    assert info.section(Section((1, 1))) == b"in"
    assert info.section(Section((1,))).endswith(b"--b-inner--\r\n--bx")


def test_unknown_transfer_encoding_has_no_binary() -> None:
    data = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    info = MessageInfo.parse(data)
    assert info.binary(Section((1,))) is None
    assert info.binary(Section(())) == data


def test_base64_is_decoded_leniently() -> None:
    data = b"Content-Transfer-Encoding: BASE64\r\n\r\naGVs\r\nbG*8h\r\nIQ"  # junk, no padding
    assert MessageInfo.parse(data).binary(Section((1,))) == b"hello!!"


def test_sent_date_and_its_absence() -> None:
    assert MessageInfo.parse(b"Date: 2 Feb 2021 23:59:00 -1200\r\n\r\n").sent_date() == date(
        2021, 2, 2
    )
    assert MessageInfo.parse(b"Date: not a date\r\n\r\n").sent_date() is None
    assert MessageInfo.parse(b"\r\n").sent_date() is None


# -- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n",
        b"no header at all",
        b":\r\n\r\n",
        b"\x00\xff\xfe" * 100,
        b'From: <<<@@@>>>,,,;;;:::\r\nTo: (((\r\nCc: "\r\n\r\n',
        b"Content-Type: multipart/mixed\r\n\r\n--\r\n",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA",
        b'Content-Type: text/plain; charset="\r\n\r\nx',
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n\xff",
        b"Content-Type: text/plain; charset=idna\r\n\r\n\xff..",
        b"Subject: =?x-bogus?q?a?= =?utf-8?b?!!!?=\r\n\r\n",
        b"Date: Mon, 99 Foo 99999 99:99:99\r\n\r\n",
        b"From user@x Mon Jan  1 00:00:00 2024\nSubject: mbox\n\nbody\n",
    ],
)
def test_garbage_never_raises(data: bytes) -> None:
    info = MessageInfo.parse(data)
    info.envelope()
    info.body_structure()
    info.body_structure(extended=False)
    info.section(Section((1,)))
    info.section(Section((1,), "MIME"))
    info.binary(Section((1,)))
    info.text()
    info.header_block()
    info.header_text("subject")
    info.sent_date()


def test_deep_multipart_nesting_is_bounded() -> None:
    levels = 5000
    data = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(levels)
    )
    structure = MessageInfo.parse(data).body_structure()
    assert MAX_MIME_DEPTH <= structure.count(b"(") < 3 * MAX_MIME_DEPTH


def test_deep_message_nesting_is_bounded() -> None:
    data = b"Content-Type: message/rfc822\r\n\r\n" * 5000 + b"deep"
    info = MessageInfo.parse(data)
    assert info.body_structure(extended=False).count(b'"rfc822"') == MAX_MIME_DEPTH + 1
    assert 0 < info.text().count("message/rfc822") <= MAX_MIME_DEPTH + 1  # headers searched
    assert "deep" not in info.text()  # beyond the bound: not parsed


def test_many_parts_are_bounded() -> None:
    data = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + b"--p\r\n\r\nx\r\n" * 30_000
    info = MessageInfo.parse(data)
    structure = info.body_structure(extended=False)
    assert structure.count(b'"plain"') == MAX_PARTS - 1
    assert info.section(Section((MAX_PARTS - 1,))).startswith(b"x\r\n--p")  # runs to the end
    assert info.section(Section((MAX_PARTS,))) == b""


# -- Dovecot's own reference (src/lib-imap/test-imap-bodystructure.c), stored with CRLF ----------

DOVECOT = crlf("""\
From: user@domain.org
Date: Sat, 24 Mar 2007 23:00:00 +0200
Mime-Version: 1.0
Content-Type: multipart/mixed; boundary="foo
 bar"

Root MIME prologue

--foo bar
Content-Type: text/x-myown; charset=us-ascii; foo="quoted\\"string"
Content-ID: <foo@example.com>
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: inline; foo=bar
Content-Description: hellodescription
Content-Language: en, fi, se
Content-Location: http://example.com/test.txt

hello

--foo bar
Content-Type: message/rfc822

From: sub@domain.org
To: sub-to1@domain.org, sub-to2@domain.org
Date: Sun, 12 Aug 2012 12:34:56 +0300
Subject: submsg
Content-Type: multipart/alternative; boundary="sub1"

Sub MIME prologue
--sub1
Content-Type: text/html
Content-Transfer-Encoding: 8bit

<p>Hello world</p>

--sub1
Content-Type: text/plain
Content-Transfer-Encoding: ?invalid

Hello another world

--sub1--
Sub MIME epilogue

--foo bar--
Root MIME epilogue
""")
DOVECOT_SUB_ENVELOPE = (
    b'("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) '
    b'((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) '
    b'((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL)'
)


def test_dovecot_reference_bodystructure() -> None:
    info = MessageInfo.parse(DOVECOT)
    assert info.body_structure() == (
        b'(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") "<foo@example.com>"'
        b' "hellodescription" "7bit" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" ("foo" "bar"))'
        b' ("en" "fi" "se") "http://example.com/test.txt")'
        b'("message" "rfc822" NIL NIL NIL "7bit" 412 ' + DOVECOT_SUB_ENVELOPE + b" "
        b'(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "foo bar") NIL NIL NIL)'
    )
    assert info.body_structure(extended=False) == (
        b'(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") "<foo@example.com>"'
        b' "hellodescription" "7bit" 7 1)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 412 ' + DOVECOT_SUB_ENVELOPE + b" "
        b'(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1) "alternative") 21)'
        b' "mixed")'
    )
    assert info.section(Section((2, 2))) == b"Hello another world\r\n"
    assert info.binary(Section((2, 2))) == b"Hello another world\r\n"  # "?invalid" is 7bit
