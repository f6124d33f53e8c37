"""Parsing IMAP commands: the examples of RFC 3501 §6 and RFC 9051 §6 and of the extensions
(tier 1)."""

from __future__ import annotations

from datetime import date

import pytest

from aionet.proto.imap import (
    AllKey,
    AndKey,
    Append,
    AppendMessage,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    CommandReader,
    Copy,
    Create,
    DateKey,
    Delete,
    Enable,
    Expunge,
    Fetch,
    FetchItem,
    FlagKey,
    Id,
    Idle,
    ImapSyntaxError,
    List,
    Login,
    Logout,
    Lsub,
    ModSeqKey,
    Move,
    Namespace,
    Noop,
    NotKey,
    RawCommand,
    Rename,
    Search,
    Section,
    Select,
    SequenceKey,
    SequenceSet,
    StartTls,
    Status,
    Store,
    Subscribe,
    TextKey,
    UnknownCharset,
    Unselect,
    Unsubscribe,
    parse_command,
)


def raw(data: bytes) -> RawCommand:
    """The one command in ``data`` (a line, CRLF added, literals inline)."""
    reader = CommandReader()
    reader.feed(data + b"\r\n")
    commands = []
    while (event := reader.next_event()) is not None:
        assert not hasattr(event, "text"), event  # no BadCommand
        if isinstance(event, RawCommand):
            commands.append(event)
    assert len(commands) == 1
    return commands[0]


def parse(data: bytes, utf8: bool = False) -> Command:
    return parse_command(raw(data), utf8)


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


def item(name: str, section: Section | None = None) -> FetchItem:
    return FetchItem(name, section)


# -- any state ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"abcd CAPABILITY", Capability("abcd")),
        (b"a002 NOOP", Noop("a002")),
        (b"A023 LOGOUT", Logout("A023")),
        (b"a002 starttls", StartTls("a002")),
        (b"A002 IDLE", Idle("A002")),
        (b"A001 NAMESPACE", Namespace("A001")),
        (b"FXXZ CHECK", Check("FXXZ")),
        (b"A341 CLOSE", Close("A341")),
        (b"A342 UNSELECT", Unselect("A342")),
        (b"A202 EXPUNGE", Expunge("A202")),
        (b"A003 UID EXPUNGE 3000:3002", Expunge("A003", True, seq("3000:3002"))),
        (b"t2 ENABLE CONDSTORE x-good-idea", Enable("t2", ("CONDSTORE", "X-GOOD-IDEA"))),
    ],
)
def test_simple_commands(line: bytes, command: Command) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    "line",
    [
        b"a NOOP now",
        b"a NOOP ",
        b"a CAPABILITY (x)",
        b"a IDLE DONE",
        b"a EXPUNGE 1:3",
        b"a UID EXPUNGE",
        b"a ENABLE",
        b"a ENABLE (x)",
        b"a UID NOOP",
        b"a UID",
    ],
)
def test_simple_commands_refuse_extra_or_missing_arguments(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


def test_unknown_command() -> None:
    with pytest.raises(ImapSyntaxError, match=r"^unknown command$"):
        parse(b"a XYZZY")


# -- authentication -----------------------------------------------------------------------------


def test_authenticate_with_and_without_initial_response() -> None:
    assert parse(b"A001 AUTHENTICATE gssapi") == Authenticate("A001", "GSSAPI", None)
    # RFC 4959 §3
    assert parse(b"A01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=") == Authenticate(
        "A01", "PLAIN", b"dGVzdAB0ZXN0AHRlc3Q="
    )
    assert parse(b"A02 AUTHENTICATE EXTERNAL =") == Authenticate("A02", "EXTERNAL", b"")
    assert "dGVzd" not in repr(parse(b"A01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q="))


@pytest.mark.parametrize(
    "line",
    [
        b"a AUTHENTICATE",
        b"a AUTHENTICATE PLAIN abc",
        b"a AUTHENTICATE PLAIN a=b=",
        b"a AUTHENTICATE PLAIN x y",
    ],
)
def test_authenticate_refuses_bad_initial_responses(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


def test_login() -> None:
    assert parse(b"a001 LOGIN SMITH SESAME") == Login("a001", "SMITH", "SESAME")
    # RFC 3501 §6.2.3: literals
    assert parse(b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man") == Login(
        "A001", "FRED FOOBAR", "fat man"
    )
    assert parse(b'a LOGIN "j\\"oe" "p\\\\w d"') == Login("a", 'j"oe', "p\\w d")
    assert parse('a LOGIN "jörg" {6+}\r\npässw'.encode()) == Login("a", "jörg", "pässw")
    assert "SESAME" not in repr(parse(b"a001 LOGIN SMITH SESAME"))


@pytest.mark.parametrize(
    "line",
    [
        b"a LOGIN",
        b"a LOGIN smith",
        b"a LOGIN smith a b",
        b'a LOGIN "smith pw',
        b"a LOGIN (x) y",
        b"a LOGIN j\xc3\xb6rg pw",  # atoms are ASCII: 8-bit needs a quoted string or literal
    ],
)
def test_login_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


def test_login_refuses_invalid_utf8() -> None:
    with pytest.raises(ImapSyntaxError):
        parse(b"a LOGIN {1+}\r\n\xff pw")


# -- mailboxes ----------------------------------------------------------------------------------


def test_select_and_examine() -> None:
    assert parse(b"A142 SELECT INBOX") == Select("A142", "INBOX", False, False)
    assert parse(b"A142 select inBox") == Select("A142", "INBOX", False, False)
    assert parse(b"A932 EXAMINE blurdybloop") == Select("A932", "blurdybloop", True, False)
    # RFC 7162 §3.1.8
    assert parse(b"A142 SELECT INBOX (CONDSTORE)") == Select("A142", "INBOX", False, True)
    assert parse(b'a SELECT "~peter/mail/&U,BTFw-/&ZeVnLIqe-"') == Select(
        "a", "~peter/mail/台北/日本語"
    )


@pytest.mark.parametrize(
    "line",
    [
        b"a SELECT",
        b"a SELECT INBOX ()",
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        b"a SELECT INBOX (FOO)",
        b"a SELECT &U,BTFw",
        b"a SELECT a b",
    ],
)
def test_select_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


def test_mailbox_names_in_utf8_mode() -> None:
    assert parse(b'a SELECT "Entw\xc3\xbcrfe"', utf8=True) == Select("a", "Entwürfe")
    assert parse(b"a SELECT &-", utf8=True) == Select("a", "&-")
    with pytest.raises(ImapSyntaxError):
        parse(b'a SELECT "Entw\xc3\xbcrfe"')  # 8-bit is not modified UTF-7


def test_create_delete_rename_subscribe() -> None:
    assert parse(b"A003 CREATE owatagusiam/") == Create("A003", "owatagusiam/")
    # RFC 6154 §5.2
    assert parse(b"t1 CREATE MySpecial (USE (\\drafts \\Sent))") == Create(
        "t1", "MySpecial", ("\\Drafts", "\\Sent")
    )
    assert parse(b"t1 CREATE x (USE ())") == Create("t1", "x", ())
    assert parse(b"t1 CREATE x (USE (\\Important))") == Create("t1", "x", ("\\Important",))
    assert parse(b"A683 DELETE blurdybloop") == Delete("A683", "blurdybloop")
    assert parse(b"A683 RENAME blurdybloop sarasoop") == Rename("A683", "blurdybloop", "sarasoop")
    assert parse(b"A684 RENAME inbox old-mail") == Rename("A684", "INBOX", "old-mail")
    assert parse(b"A002 SUBSCRIBE #news.comp.mail.mime") == Subscribe(
        "A002", "#news.comp.mail.mime"
    )
    assert parse(b"A002 UNSUBSCRIBE {4+}\r\na b)") == Unsubscribe("A002", "a b)")


@pytest.mark.parametrize(
    "line",
    [
        b"a CREATE",
        b"a CREATE x (USE (Sent))",
        b"a CREATE x (FOO (\\Sent))",
        b"a CREATE x (USE (\\Sent)",
        b"a RENAME x",
        b"a DELETE x y",
        b"a DELETE %",
        b"a SUBSCRIBE",
    ],
)
def test_mailbox_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


# -- LIST / LSUB / STATUS -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b'A101 LIST "" ""', List("A101", "", ("",))),
        (b'A682 LIST "/usr/staff/jones" ""', List("A682", "/usr/staff/jones", ("",))),
        (b"A202 LIST ~/Mail/ %", List("A202", "~/Mail/", ("%",))),
        (b'A102 LIST #news.comp.mail.misc ""', List("A102", "#news.comp.mail.misc", ("",))),
        (b"a LIST &Jjo- *&Jjo-*", List("a", "☺", ("*☺*",))),
        # RFC 5258 §5
        (b'A02 LIST (SUBSCRIBED) "" "*"', List("A02", "", ("*",), ("SUBSCRIBED",))),
        (
            b'A03 LIST () "" "%" RETURN (CHILDREN)',
            List("A03", "", ("%",), (), ("CHILDREN",)),
        ),
        (
            b'A04 LIST (REMOTE) "" "%" RETURN (CHILDREN)',
            List("A04", "", ("%",), ("REMOTE",), ("CHILDREN",)),
        ),
        (
            b'A05 LIST (subscribed RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
            List("A05", "", ("%",), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN",)),
        ),
        (
            b'A06 LIST "" ("INBOX" "Drafts" Sent/%)',
            List("A06", "", ("INBOX", "Drafts", "Sent/%")),
        ),
        (b'A07 LIST "" % RETURN ()', List("A07", "", ("%",))),
        # RFC 5819 §3
        (
            b'A08 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
            List("A08", "", ("%",), (), ("STATUS",), ("MESSAGES", "UNSEEN")),
        ),
        # RFC 6154 §2.3
        (b't1 LIST (SPECIAL-USE) "" "*"', List("t1", "", ("*",), ("SPECIAL-USE",))),
        (
            b't3 LIST "" "%" RETURN (SPECIAL-USE subscribed)',
            List("t3", "", ("%",), (), ("SPECIAL-USE", "SUBSCRIBED")),
        ),
    ],
)
def test_list(line: bytes, command: Command) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    "line",
    [
        b'a LIST ""',
        b'a LIST (RECURSIVEMATCH) "" "*"',  # RFC 5258 §3: needs another selection option
        b'a LIST (REMOTE RECURSIVEMATCH) "" "*"',
        b'a LIST (FOO) "" "*"',
        b'a LIST "" "*" RETURN (FOO)',
        b'a LIST "" "*" RETURN (STATUS ())',
        b'a LIST "" "*" RETURN (STATUS (BOGUS))',
        b'a LIST "" "*" RETURN CHILDREN',
        b'a LIST "" "*" CHILDREN',
        b'a LIST "" ()',
        b'a LIST "" ("a" )',
    ],
)
def test_list_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


def test_lsub_and_status() -> None:
    assert parse(b'A002 LSUB "#news." "comp.mail.*"') == Lsub("A002", "#news.", "comp.mail.*")
    assert parse(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)") == Status(
        "A042", "blurdybloop", ("UIDNEXT", "MESSAGES")
    )
    assert parse(
        b"a STATUS inbox (messages uidnext uidvalidity unseen deleted size recent highestmodseq)"
    ) == Status(
        "a",
        "INBOX",
        (
            "MESSAGES",
            "UIDNEXT",
            "UIDVALIDITY",
            "UNSEEN",
            "DELETED",
            "SIZE",
            "RECENT",
            "HIGHESTMODSEQ",
        ),
    )
    for bad in (b"a STATUS x ()", b"a STATUS x (FOO)", b"a STATUS x MESSAGES", b"a STATUS (x)"):
        with pytest.raises(ImapSyntaxError):
            parse(bad)


# -- APPEND -------------------------------------------------------------------------------------


def test_append() -> None:
    assert parse(b"A003 APPEND saved-messages (\\Seen) {5}\r\nhello") == Append(
        "A003", "saved-messages", (AppendMessage(("\\Seen",), None, b"hello"),)
    )
    # RFC 9051 §6.3.12 with a date-time (zone applied: 02:44:25 -0700 is 09:44:25 UTC)
    cmd = parse(b'A003 APPEND saved (\\Seen $Forwarded) "17-Jul-1996 02:44:25 -0700" {2+}\r\nhi')
    assert cmd == Append(
        "A003", "saved", (AppendMessage(("\\Seen", "$Forwarded"), 837596665.0, b"hi"),)
    )
    assert parse(b'a APPEND x " 1-Jan-2024 00:00:00 +0000" {0}\r\n') == Append(
        "a", "x", (AppendMessage((), 1704067200.0, b""),)
    )
    assert parse(b"a APPEND x () ~{3+}\r\n\x00\x01\x02") == Append(
        "a", "x", (AppendMessage((), None, b"\x00\x01\x02"),)
    )


def test_multiappend() -> None:
    # RFC 3502 §6, shortened messages
    cmd = parse(
        b"A003 APPEND saved-messages (\\Seen) {5}\r\nfirst"
        b' (\\Seen) " 1-Jul-2002 16:21:00 -0400" {6}\r\nsecond {5+}\r\nthird'
    )
    assert cmd == Append(
        "A003",
        "saved-messages",
        (
            AppendMessage(("\\Seen",), None, b"first"),
            AppendMessage(("\\Seen",), 1025554860.0, b"second"),
            AppendMessage((), None, b"third"),
        ),
    )
    assert "second" not in repr(cmd)


@pytest.mark.parametrize(
    "line",
    [
        b"a APPEND x",
        b'a APPEND x "hello"',
        b"a APPEND x (\\Recent) {1+}\r\nx",
        b"a APPEND x (\\Foo) {1+}\r\nx",
        b'a APPEND x "31-Feb-2024 00:00:00 +0000" {1+}\r\nx',
        b'a APPEND x "1-Foo-2024 00:00:00 +0000" {1+}\r\nx',
        b'a APPEND x "01-Jan-2024 25:00:00 +0000" {1+}\r\nx',
        b'a APPEND x "01-Jan-2024 00:00:00 +0060" {1+}\r\nx',
        b'a APPEND x "01-Jan-2024 00:00:00" {1+}\r\nx',
        b"a APPEND x {1+}\r\nx extra",
        b"a APPEND x {1+}\r\nx ",
    ],
)
def test_append_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


# -- FETCH --------------------------------------------------------------------------------------


def test_fetch_rfc_examples() -> None:
    header_fields = Section((), "HEADER.FIELDS", ("DATE", "FROM"))
    assert parse(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])") == Fetch(
        "A654", False, seq("2:4"), (item("FLAGS"), item("BODY", section=header_fields))
    )
    assert parse(b"A003 FETCH 12 (BODY[HEADER])") == Fetch(
        "A003", False, seq("12"), (item("BODY", section=Section((), "HEADER")),)
    )
    assert parse(b"A999 UID FETCH 4827313:4828442 FLAGS") == Fetch(
        "A999", True, seq("4827313:4828442"), (item("UID"), item("FLAGS"))
    )


@pytest.mark.parametrize(
    ("macro", "names"),
    [
        (b"ALL", ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")),
        (b"fast", ("FLAGS", "INTERNALDATE", "RFC822.SIZE")),
        (b"FULL", ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")),
    ],
)
def test_fetch_macros_expand(macro: bytes, names: tuple[str, ...]) -> None:
    cmd = parse(b"a FETCH 1:* " + macro)
    assert isinstance(cmd, Fetch) and cmd.items == tuple(FetchItem(n) for n in names)


def test_fetch_items_and_response_names() -> None:
    cmd = parse(
        b"a UID FETCH 1,3:* (flags uid INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE"
        b" RFC822 RFC822.HEADER RFC822.TEXT MODSEQ BODY[] BODY.PEEK[1.2.MIME]<10.20>"
        b' body[1.HEADER.FIELDS.NOT (x-a "X B")] BODY[TEXT]<0.1> BINARY.PEEK[1.2]'
        b" BINARY[]<5.6> BINARY.SIZE[3] FLAGS)"
    )
    assert isinstance(cmd, Fetch) and cmd.uid
    assert [i.response_name() for i in cmd.items] == [
        b"FLAGS",  # UID was asked for: not added again; the duplicate FLAGS is dropped
        b"UID",
        b"INTERNALDATE",
        b"RFC822.SIZE",
        b"ENVELOPE",
        b"BODY",
        b"BODYSTRUCTURE",
        b"RFC822",
        b"RFC822.HEADER",
        b"RFC822.TEXT",
        b"MODSEQ",
        b"BODY[]",
        b"BODY[1.2.MIME]<10>",
        b'BODY[1.HEADER.FIELDS.NOT (X-A "X B")]',
        b"BODY[TEXT]<0>",
        b"BINARY[1.2]",
        b"BINARY[]<5>",
        b"BINARY.SIZE[3]",
    ]
    peeks = [i for i in cmd.items if i.peek]
    assert peeks == [
        FetchItem("BODY", Section((1, 2), "MIME"), (10, 20), peek=True),
        FetchItem("BINARY", Section((1, 2)), None, peek=True),
    ]
    assert FetchItem("BODY") in cmd.items and FetchItem("BODY", Section()) in cmd.items


def test_fetch_condstore_modifier_adds_modseq() -> None:
    # RFC 7162 §3.1.4.2
    assert parse(b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)") == Fetch(
        "s100", True, seq("1:*"), (item("UID"), item("FLAGS"), item("MODSEQ")), 12345
    )
    assert parse(b"a FETCH 1 (MODSEQ FLAGS) (CHANGEDSINCE 0)") == Fetch(
        "a", False, seq("1"), (item("MODSEQ"), item("FLAGS")), 0
    )


@pytest.mark.parametrize(
    "line",
    [
        b"a FETCH",
        b"a FETCH 1",
        b"a FETCH 0 FLAGS",
        b"a FETCH 1 ()",
        b"a FETCH 1 (FLAGS",
        b"a FETCH 1 (ALL)",  # macros stand alone
        b"a FETCH 1 BOGUS",
        b"a FETCH 1 BODY.PEEK",
        b"a FETCH 1 BODY[",
        b"a FETCH 1 BODY[0]",
        b"a FETCH 1 BODY[1.]",
        b"a FETCH 1 BODY[MIME]",  # MIME needs a part
        b"a FETCH 1 BODY[HEADER.FIELDS]",
        b"a FETCH 1 BODY[HEADER.FIELDS ()]",
        b"a FETCH 1 BODY[FOO]",
        b"a FETCH 1 BODY[]<1>",
        b"a FETCH 1 BODY[]<1.0>",
        b"a FETCH 1 BINARY[HEADER]",
        b"a FETCH 1 BINARY.SIZE[1]<0.1>",
        b"a FETCH 1 BINARY",
        b"a FETCH 1 FLAGS (CHANGEDSINCE)",
        b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)",  # QRESYNC is not offered
        b"a FETCH 1 FLAGS ()",
        b"a FETCH 1 FLAGS (CHANGEDSINCE 99999999999999999999)",
        b"a FETCH 1 FLAGS extra",
    ],
)
def test_fetch_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


# -- STORE / COPY / MOVE ------------------------------------------------------------------------


def test_store() -> None:
    assert parse(b"A003 STORE 2:4 +FLAGS (\\Deleted)") == Store(
        "A003", False, seq("2:4"), "add", False, ("\\Deleted",)
    )
    assert parse(b"a STORE 1 -FLAGS.SILENT (\\seen $Junk)") == Store(
        "a", False, seq("1"), "remove", True, ("\\Seen", "$Junk")
    )
    assert parse(b"a STORE 1 FLAGS \\Seen \\Flagged") == Store(
        "a", False, seq("1"), "set", False, ("\\Seen", "\\Flagged")
    )
    assert parse(b"a STORE $ FLAGS ()") == Store("a", False, seq("$"), "set", False, ())
    # RFC 7162 §3.1.3
    assert parse(
        b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)"
    ) == (Store("a103", True, seq("6,4,8"), "add", True, ("\\Deleted",), 12121230045))


@pytest.mark.parametrize(
    "line",
    [
        b"a STORE 1 +FLAGS (\\Recent)",
        b"a STORE 1 FLAGS \\Recent",
        b"a STORE 1 FLAGS (\\Bogus)",
        b"a STORE 1 FLAGS",
        b"a STORE 1 +FLAG (\\Seen)",
        b"a STORE 1 *FLAGS (\\Seen)",
        b"a STORE 1 (UNCHANGEDSINCE) FLAGS ()",
        b"a STORE 1 (FOO 1) FLAGS ()",
        b"a STORE 1 FLAGS (\\Seen",
        b"a STORE 1 FLAGS (a]b)",
        b"a STORE x FLAGS ()",
    ],
)
def test_store_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


def test_copy_and_move() -> None:
    assert parse(b"A003 COPY 2:4 MEETING") == Copy("A003", False, seq("2:4"), "MEETING")
    assert parse(b"a UID COPY 1:* inbox") == Copy("a", True, seq("1:*"), "INBOX")
    assert parse(b"a MOVE 1 Trash") == Move("a", False, seq("1"), "Trash")
    assert parse(b'a UID MOVE 42:69 "foo bar"') == Move("a", True, seq("42:69"), "foo bar")
    for bad in (b"a COPY 1", b"a MOVE x y", b"a UID MOVE 1", b"a COPY 1 a b"):
        with pytest.raises(ImapSyntaxError):
            parse(bad)


# -- SEARCH -------------------------------------------------------------------------------------


def test_search_rfc_examples() -> None:
    assert parse(b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"') == Search(
        "A282",
        False,
        None,
        AndKey(
            (
                FlagKey("\\Flagged"),
                DateKey("internal", "since", date(1994, 2, 1)),
                NotKey(TextKey("header", "Smith", "from")),
            )
        ),
    )
    assert parse(b'A283 SEARCH TEXT "string not in mailbox"') == Search(
        "A283", False, None, TextKey("text", "string not in mailbox")
    )
    # RFC 3501 §6.4.4: a literal search string in the given charset
    word = "\u0442\u0435\u0441\u0442"  # Russian "test"
    assert parse(b"A284 SEARCH CHARSET utf-8 TEXT {8}\r\n" + word.encode()) == Search(
        "A284", False, "UTF-8", TextKey("text", word)
    )
    assert parse(b"a UID SEARCH 1:* NOT DELETED") == Search(
        "a", True, None, AndKey((SequenceKey(seq("1:*")), NotKey(FlagKey("\\Deleted"))))
    )


def test_esearch_return_options() -> None:
    # RFC 4731 §3.1
    cmd = parse(b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert isinstance(cmd, Search) and cmd.return_options == ("MIN", "COUNT")
    cmd = parse(b"A283 SEARCH RETURN () FLAGGED")
    assert isinstance(cmd, Search) and cmd.return_options == ("ALL",)  # "()" means ALL
    cmd = parse(b"A284 UID SEARCH RETURN (save all max) CHARSET US-ASCII ALL")
    assert cmd == Search("A284", True, "US-ASCII", AllKey(), ("SAVE", "ALL", "MAX"))
    cmd = parse(b"a SEARCH UNSEEN")
    assert isinstance(cmd, Search) and cmd.return_options == ()


def test_search_modseq_and_saved_result() -> None:
    # RFC 7162 §3.1.5
    cmd = parse(b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338')
    assert cmd == Search("a", False, None, ModSeqKey(620162338))
    assert parse(b"a SEARCH MODSEQ 0") == Search("a", False, None, ModSeqKey(0))
    cmd = parse(b"a UID SEARCH UID $")
    assert cmd == Search("a", True, None, SequenceKey(seq("$"), uid=True))


def test_unknown_charset_is_its_own_error() -> None:
    with pytest.raises(UnknownCharset):
        parse(b"a SEARCH CHARSET ISO-8859-1 TEXT x")
    assert issubclass(UnknownCharset, ImapSyntaxError)


@pytest.mark.parametrize(
    "line",
    [
        b"a SEARCH",
        b"a SEARCH RETURN (MIN)",
        b"a SEARCH RETURN (PARTIAL 1:10) ALL",
        b"a SEARCH RETURN MIN ALL",
        b"a SEARCH CHARSET",
        b"a SEARCH BOGUS",
        b"a SEARCH ALL ",
        b"a SEARCH (ALL",
        b"a SEARCH ()",
        b"a SEARCH OR ALL",
        b"a SEARCH NOT",
        b"a SEARCH SINCE 1-Feb",
        b"a SEARCH SINCE 30-Feb-2024",
        b"a SEARCH SINCE 1-Feb-1994-",
        b"a SEARCH LARGER x",
        b"a SEARCH KEYWORD \\Seen",
        b"a SEARCH HEADER Subject",
        b"a SEARCH UID",
        b'a SEARCH MODSEQ "/flags/x" bogus 5',
        b"a SEARCH SUBJECT {1+}\r\n\xff",
    ],
)
def test_search_syntax_errors(line: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        parse(line)


def test_search_keys_nest_boundedly() -> None:
    assert isinstance(parse(b"a SEARCH " + b"NOT " * 60 + b"ALL"), Search)
    with pytest.raises(ImapSyntaxError, match="too deeply nested"):
        parse(b"a SEARCH " + b"NOT " * 2000 + b"ALL")
    with pytest.raises(ImapSyntaxError, match="too deeply nested"):
        parse(b"a SEARCH " + b"OR ALL " * 1000 + b"ALL")


# -- ID -----------------------------------------------------------------------------------------


def test_id() -> None:
    # RFC 2971 §3.3
    assert parse(
        b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")'
    ) == Id("a023", {"name": "sodr", "version": "19.34", "vendor": "Pink Floyd Music Limited"})
    assert parse(b"a ID NIL") == Id("a", None)
    assert parse(b'a ID ("os" NIL)') == Id("a", {"os": None})
    too_many = b" ".join(b'"k%d" "v"' % i for i in range(31))
    for bad in (
        b"a ID",
        b"a ID ()",
        b'a ID ("name")',
        b"a ID (name x)",
        b"a ID (" + too_many + b")",
    ):
        with pytest.raises(ImapSyntaxError):
            parse(bad)
