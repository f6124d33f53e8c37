"""Properties over arbitrary input (hypothesis): the reader and parser never fail in an
undocumented way, every command gets exactly one answer, memory stays bounded, and
``MessageInfo`` never raises (tier 1)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aionet.proto.imap import (
    BadCommand,
    CommandReader,
    ImapSyntaxError,
    MessageInfo,
    NeedContinuation,
    RawCommand,
    ReaderEvent,
    Section,
    parse_command,
)

MAX_LINE = 128
MAX_LITERAL = 40

# Pieces of IMAP (valid and broken) so that generated input reaches the parsers' corners.
FRAGMENTS = [
    b"a1 ",
    b"* ",
    b"+ ",
    b"x] ",
    b"LOGIN ",
    b"UID ",
    b"FETCH ",
    b"STORE ",
    b"SEARCH ",
    b"APPEND ",
    b"LIST ",
    b"SELECT ",
    b"STATUS ",
    b"ID ",
    b"AUTHENTICATE ",
    b"CREATE ",
    b"ENABLE ",
    b"1:* ",
    b"$ ",
    b"0 ",
    b"4294967296 ",
    b"(",
    b")",
    b"((((",
    b"))))",
    b'"',
    b"\\",
    b'"a\\"b" ',
    b"{5}\r\n",
    b"{3+}\r\n",
    b"~{2}\r\n",
    b"{0}\r\n",
    b"{99+}\r\n",
    b"{2147483648+}\r\n",
    b"{99999999999999999999999}\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff\xfe",
    b" ",
    b"INBOX ",
    b"&U,BTFw- ",
    b"&- ",
    b"& ",
    b"(FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.5>) ",
    b"BODY[1.2.MIME] ",
    b"BINARY[1]<0.1> ",
    b"(CHANGEDSINCE 5) ",
    b"+FLAGS.SILENT (\\Seen \\Recent $x) ",
    b"(UNCHANGEDSINCE 7) ",
    b"RETURN (MIN ALL) ",
    b"CHARSET KOI8-R ",
    b"OR NOT (SEEN UID 1:5) ",
    b"SINCE 1-Feb-1994 ",
    b'"17-Jul-1996 02:44:25 -0700" ',
    b"HEADER x y ",
    b'MODSEQ "/flags/\\\\seen" all 3 ',
    b"NIL ",
    b'("name" "x") ',
    b"(SUBSCRIBED) ",
    b"RETURN (STATUS (MESSAGES)) ",
    b"(USE (\\Sent)) ",
    b"dGVzdA== ",
    b"= ",
    b"BOGUS ",
    b"BODY[",
    b"]",
    b"<1.2>",
    b".",
    b":",
    b",",
]

# Whole commands (RFC examples and friends), to be spliced with fragments and noise.
COMMANDS = [
    b"a1 CAPABILITY",
    b"a2 LOGIN {5}\r\nalice {6+}\r\nsecret",
    b'a3 LOGIN "smith" "p\\w"',
    b"a4 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
    b"a5 SELECT INBOX (CONDSTORE)",
    b"a6 EXAMINE &U,BTFw-",
    b"a7 CREATE x (USE (\\Sent))",
    b"a8 RENAME a b",
    b'a9 LIST (SUBSCRIBED) "" ("%" x/*) RETURN (CHILDREN STATUS (MESSAGES))',
    b'b1 LSUB "#news." "comp.*"',
    b"b2 STATUS INBOX (UIDNEXT MESSAGES HIGHESTMODSEQ)",
    b'b3 APPEND saved (\\Seen) "17-Jul-1996 02:44:25 -0700" {5+}\r\nhello (\\Draft) ~{2}\r\n\x00x',
    b"b4 UID EXPUNGE 1:3",
    b'b5 UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR NOT FROM "x" (SEEN UID 1:*) MODSEQ 5',
    b"b6 SEARCH SINCE 1-Feb-1994 HEADER X-Y {3+}\r\nabc LARGER 10",
    b"b7 FETCH 1:*,5 (UID FLAGS BODY.PEEK[1.HEADER.FIELDS (FROM)]<0.10> BINARY[2])",
    b"b8 UID FETCH $ FULL (CHANGEDSINCE 7)",
    b"b9 UID STORE 6,4,8 (UNCHANGEDSINCE 121) +FLAGS.SILENT (\\Deleted $Junk)",
    b"c1 MOVE 2:4 Trash",
    b'c2 ID ("name" "x" "os" NIL)',
    b"c3 ENABLE IMAP4rev2 UTF8=ACCEPT",
    b"c4 IDLE",
]


@st.composite
def command_line(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from(COMMANDS))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(line)))
        noise = draw(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=4)))
        line = line[:at] + noise + line[at:]
    return line + b"\r\n"


imap_bytes = st.lists(
    st.one_of(
        command_line(),
        command_line(),
        command_line(),
        st.sampled_from(FRAGMENTS),
        st.binary(max_size=12),
    ),
    max_size=30,
).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[start:p])
        start = p
    return pieces


def run(reader: CommandReader, chunks: list[bytes]) -> list[ReaderEvent]:
    out: list[ReaderEvent] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (event := reader.next_event()) is not None:
            out.append(event)
        # everything handed in is consumed; what is held is bounded
        assert len(reader) <= 4 * MAX_LINE + MAX_LINE + MAX_LITERAL
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(imap_bytes, st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_reader_and_parser_never_fail_and_ignore_chunking(
    data: bytes, cuts: list[int], utf8: bool
) -> None:
    whole = run(CommandReader(MAX_LINE, MAX_LITERAL, 8), [data])
    split = run(CommandReader(MAX_LINE, MAX_LITERAL, 8), chunked(data, cuts))
    assert split == whole
    answers = 0
    errors: list[str] = []
    for event in whole:
        assert isinstance(event, (NeedContinuation, RawCommand, BadCommand))
        if isinstance(event, RawCommand):
            try:
                parse_command(event, utf8)
            except ImapSyntaxError as error:  # the only exception parse_command raises
                errors.append(str(error))
        if not isinstance(event, NeedContinuation):
            answers += 1
    assert all(errors)  # a BAD text is never empty
    assert answers <= data.count(b"\n")  # at most one answer per line


line = st.lists(
    st.one_of(
        st.sampled_from([f for f in FRAGMENTS if b"\n" not in f and b"{" not in f]),
        st.binary(max_size=12).filter(lambda b: b"\n" not in b),
    ),
    max_size=12,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(line, max_size=12), st.lists(st.integers(min_value=0), max_size=8))
def test_every_line_without_literals_gets_exactly_one_answer(
    lines: list[bytes], cuts: list[int]
) -> None:
    lines = [ln for ln in lines if not ln.rstrip(b"\r").endswith(b"}")]
    data = b"".join(ln + b"\r\n" for ln in lines)
    events = run(CommandReader(MAX_LINE, MAX_LITERAL, 8), chunked(data, cuts))
    assert all(isinstance(e, (RawCommand, BadCommand)) for e in events)
    assert len(events) == len(lines)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=MAX_LITERAL), max_size=5), st.booleans())
def test_literals_arrive_intact(payloads: list[bytes], nonsync: bool) -> None:
    marker = b"{%d+}\r\n" if nonsync else b"{%d}\r\n"
    data = b"a SEARCH" + b"".join(b" " + marker % len(p) + p for p in payloads) + b" X\r\n"
    limit = MAX_LITERAL * max(len(payloads), 1)
    events = run(CommandReader(MAX_LINE, limit, 8), [data])
    raw = events[-1]
    assert isinstance(raw, RawCommand) and list(raw.pieces[1::2]) == payloads
    assert len(events) == 1 + (0 if nonsync else len(payloads))


mime_bytes = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Content-Type: multipart/mixed; boundary=b\r\n",
                b'Content-Type: multipart/alternative; boundary="b"\r\n',
                b"Content-Type: message/rfc822\r\n",
                b"Content-Type: text/plain; charset=x-bogus\r\n",
                b"Content-Type: multipart/digest; boundary=c\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b"Content-Transfer-Encoding: quoted-printable\r\n",
                b"Content-Disposition: attachment; filename*0=a; filename*1*=b\r\n",
                b'From: "x" <a@b>, g: c@d;\r\n',
                b"To: <@r:x@y>, (c) z\r\n",
                b"Subject: =?utf-8?b?w6k=?= =?x?q?=ZZ?=\r\n",
                b"Date: 1 Jan 2024 00:00 +0000\r\n",
                b" folded\r\n",
                b"\r\n",
                b"--b\r\n",
                b"--b--\r\n",
                b"--c\r\n",
                b"=C3=A9 =\r\n",
                b"aGVsbG8=\r\n",
            ]
        ),
        st.binary(max_size=16),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), mime_bytes))
def test_message_info_never_raises(data: bytes) -> None:
    info = MessageInfo.parse(data)
    assert info.envelope().startswith(b"(")
    structure = info.body_structure()
    assert structure.startswith(b"(") and structure.endswith(b")")
    assert info.body_structure(extended=False).startswith(b"(")
    assert info.section(Section()) == data
    for part in [(1,), (1, 1), (2,), (2, 1, 1)]:
        body = info.section(Section(part))
        assert body in data  # parts are slices of the stored bytes
        info.section(Section(part, "MIME"))
        info.section(Section(part, "HEADER"))
        info.section(Section(part, "HEADER.FIELDS", ("FROM",)))
        info.binary(Section(part))
    info.section(Section((), "TEXT"), (1, 5))
    info.text()
    info.header_block()
    info.header_text("subject")
    info.sent_date()
