"""The POP3 machine without sockets: bytes in, events out (tier 1)."""

from __future__ import annotations

from base64 import b64encode
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aionet.proto.pop3 import (
    COMMANDS,
    NEED_DATA,
    PAUSED,
    Authenticate,
    Close,
    Commit,
    Pop3Machine,
    Retrieve,
    Send,
    StartTls,
    State,
    dot_stuff,
    uidl_of,
)

MAILBOX = [("1700000000.M1P1Q1Rab.host", 120), ("1700000001.M1P1Q2Rcd.host", 80)]


def drain(m: Pop3Machine) -> list[Any]:
    """Every event up to NEED_DATA or PAUSED (the sentinel included)."""
    out: list[Any] = []
    while True:
        event = m.next_event()
        out.append(event)
        if event is NEED_DATA or event is PAUSED:
            return out


def said(events: list[Any]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def talk(m: Pop3Machine, data: bytes) -> list[Any]:
    m.receive_data(data)
    return drain(m)


def logged_in(**kw: Any) -> Pop3Machine:
    m = Pop3Machine(plaintext_auth=True, **kw)
    drain(m)
    events = talk(m, b"USER alice\r\nPASS s3cret pass\r\n")
    auth = next(e for e in events if isinstance(e, Authenticate))
    assert (auth.username, auth.password) == ("alice", "s3cret pass")
    assert events[-1] is PAUSED
    m.auth_succeeded(MAILBOX)
    assert said(drain(m)) == b"+OK maildrop locked and ready, 2 messages (200 octets)\r\n"
    return m


def test_greeting_and_capa_without_tls_hide_plaintext_auth() -> None:
    m = Pop3Machine(greeting="hi", stls=True)
    assert said(drain(m)) == b"+OK hi\r\n"
    capa = said(talk(m, b"CAPA\r\n"))
    assert capa.startswith(b"+OK") and capa.endswith(b"\r\n.\r\n")
    assert b"STLS\r\n" in capa and b"USER" not in capa and b"SASL" not in capa
    assert said(talk(m, b"USER alice\r\n")).startswith(b"-ERR [AUTH]")


def test_stls_discards_plaintext_sent_before_the_handshake() -> None:
    m = Pop3Machine(stls=True)
    drain(m)
    events = talk(m, b"STLS\r\nUSER injected\r\n")
    assert said(events) == b"+OK Begin TLS negotiation\r\n"
    assert any(isinstance(e, StartTls) for e in events) and events[-1] is PAUSED
    m.tls_started()
    assert drain(m) == [NEED_DATA]  # the injected line is gone
    capa = said(talk(m, b"CAPA\r\n"))
    assert b"USER\r\n" in capa and b"SASL PLAIN\r\n" in capa and b"STLS" not in capa
    assert said(talk(m, b"STLS\r\n")).startswith(b"-ERR")


def test_plaintext_waiting_for_the_handshake_is_counted_by_discard_input() -> None:
    m = Pop3Machine(stls=True)
    drain(m)
    talk(m, b"STLS\r\nUSER injected\r\n")
    m.receive_data(b"PASS more\r\n")  # arrived while the reply was being flushed
    assert drain(m) == [PAUSED]  # nothing runs while the upgrade is pending
    assert m.discard_input() == len(b"USER injected\r\nPASS more\r\n")
    assert m.discard_input() == 0
    m.tls_started()
    assert drain(m) == [NEED_DATA]


def test_transaction_commands() -> None:
    m = logged_in()
    assert said(talk(m, b"STAT\r\n")) == b"+OK 2 200\r\n"
    assert said(talk(m, b"LIST\r\n")) == b"+OK scan listing follows\r\n1 120\r\n2 80\r\n.\r\n"
    assert said(talk(m, b"LIST 2\r\n")) == b"+OK 2 80\r\n"
    assert said(talk(m, b"UIDL 1\r\n")) == f"+OK 1 {MAILBOX[0][0]}\r\n".encode()
    assert said(talk(m, b"LIST 3\r\n")) == b"-ERR no such message\r\n"
    assert said(talk(m, b"NOOP\r\n")) == b"+OK\r\n"


def test_retr_and_top_are_byte_stuffed() -> None:
    m = logged_in()
    events = talk(m, b"RETR 2\r\n")
    assert events[-2:] == [Retrieve(index=1, unique=MAILBOX[1][0], top=None), PAUSED]
    content = b"Subject: s\r\n\r\n.dot\r\nbody\r\n"
    m.message_content(content)
    assert said(drain(m)) == b"+OK 26 octets\r\nSubject: s\r\n\r\n..dot\r\nbody\r\n.\r\n"
    talk(m, b"TOP 1 1\r\n")
    m.message_content(content)
    assert said(drain(m)) == b"+OK top of message\r\nSubject: s\r\n\r\n..dot\r\n.\r\n"
    talk(m, b"RETR 1\r\n")
    m.message_content(None)
    assert said(drain(m)).startswith(b"-ERR [SYS/TEMP]")


@pytest.mark.parametrize(
    ("content", "wire"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),  # bare LF and no final newline
        (b".\r\n..\r\n", b"..\r\n...\r\n.\r\n"),
        (b"", b".\r\n"),
    ],
)
def test_dot_stuff(content: bytes, wire: bytes) -> None:
    assert dot_stuff(content) == wire


def test_deletions_apply_only_at_quit_and_rset_undoes_them() -> None:
    m = logged_in()
    assert said(talk(m, b"DELE 1\r\n")) == b"+OK message deleted\r\n"
    assert said(talk(m, b"DELE 1\r\n")) == b"-ERR no such message\r\n"
    assert said(talk(m, b"STAT\r\n")) == b"+OK 1 80\r\n"
    assert said(talk(m, b"RSET\r\n")).startswith(b"+OK maildrop has 2 messages")
    talk(m, b"DELE 2\r\n")
    events = talk(m, b"QUIT\r\n")
    assert events[-2:] == [Commit(delete=(MAILBOX[1][0],)), PAUSED]
    assert m.state is State.UPDATE
    m.committed(True)
    events = drain(m)
    assert said(events) == b"+OK bye\r\n" and any(isinstance(e, Close) for e in events)
    assert m.state is State.CLOSED


def test_a_failed_commit_says_nothing_was_removed() -> None:
    m = logged_in()
    talk(m, b"DELE 1\r\nQUIT\r\n")
    m.committed(False)
    assert said(drain(m)).startswith(b"-ERR [SYS/TEMP]")


def test_quit_in_authorization_commits_nothing() -> None:
    m = Pop3Machine()
    drain(m)
    events = talk(m, b"QUIT\r\n")
    assert said(events) == b"+OK bye\r\n" and not any(isinstance(e, Commit) for e in events)


def test_auth_plain_initial_response_and_continuation() -> None:
    m = Pop3Machine(tls=True)
    drain(m)
    blob = b64encode(b"\x00alice\x00pw").decode()
    events = talk(m, f"AUTH PLAIN {blob}\r\n".encode())
    assert Authenticate(username="alice", password="pw") in events
    m.auth_failed()
    assert said(drain(m)) == b"-ERR [AUTH] authentication failed\r\n"
    assert said(talk(m, b"AUTH PLAIN\r\n")) == b"+ \r\n"
    assert Authenticate(username="bob", password="x") in talk(
        m, b64encode(b"bob\x00bob\x00x") + b"\r\n"
    )
    m.mailbox_busy()
    events = drain(m)
    assert said(events) == b"-ERR [IN-USE] mailbox is locked by another session\r\n"
    assert isinstance(events[-2], Close)


def test_auth_plain_rejects_garbage_and_foreign_authzid() -> None:
    m = Pop3Machine(tls=True)
    drain(m)
    assert said(talk(m, b"AUTH PLAIN !!!\r\n")) == b"-ERR malformed SASL PLAIN response\r\n"
    foreign = b64encode(b"root\x00alice\x00pw")
    assert said(talk(m, b"AUTH PLAIN " + foreign + b"\r\n")).startswith(b"-ERR [AUTH]")
    assert said(talk(m, b"AUTH CRAM-MD5\r\n")) == b"-ERR unsupported SASL mechanism\r\n"
    assert said(talk(m, b"AUTH PLAIN\r\n*\r\n")) == b"+ \r\n-ERR authentication aborted\r\n"


def test_too_many_failed_logins_close() -> None:
    m = Pop3Machine(plaintext_auth=True, max_auth_failures=2)
    drain(m)
    for _ in range(2):
        talk(m, b"USER a\r\nPASS b\r\n")
        m.auth_failed()
    assert isinstance(drain(m)[-2], Close)


def test_bad_commands_get_err_then_close() -> None:
    m = Pop3Machine(max_bad=3)
    drain(m)
    assert said(talk(m, b"FROB\r\n")) == b"-ERR unknown command\r\n"
    assert said(talk(m, b"STAT\r\n")) == b"-ERR command not valid in this state\r\n"
    events = talk(m, b"\xff\xfe\r\nNOOP\r\n")
    assert said(events) == b"-ERR too many bad commands, closing\r\n"
    assert isinstance(events[-2], Close) and m.state is State.CLOSED


def test_an_over_long_line_is_refused_and_the_session_goes_on() -> None:
    m = Pop3Machine(max_line=64)
    drain(m)
    m.receive_data(b"X" * 50)
    assert drain(m) == [NEED_DATA]
    assert said(talk(m, b"Y" * 5000)) == b""  # bounded: discarded while it arrives
    assert said(talk(m, b"Z\r\nCAPA\r\n")).startswith(b"-ERR line too long\r\n+OK Capability")


def test_pipelined_commands_are_answered_in_order() -> None:
    m = logged_in()
    out = said(talk(m, b"STAT\r\nLIST 1\r\nNOOP\r\n"))
    assert out == b"+OK 2 200\r\n+OK 1 120\r\n+OK\r\n"


def test_completing_what_is_not_awaited_is_a_bug() -> None:
    m = Pop3Machine()
    drain(m)
    with pytest.raises(RuntimeError, match="not waiting"):
        m.message_content(b"x")


def test_uidl_of_long_or_odd_names_is_a_stable_digest() -> None:
    assert uidl_of("1.M2P3Q4R5.host") == "1.M2P3Q4R5.host"
    odd = "1.M2P3Q4R5." + "h" * 80
    assert uidl_of(odd) == uidl_of(odd) != odd and len(uidl_of(odd)) <= 70


def test_the_table_covers_every_rfc_1939_command_in_its_state() -> None:
    auth = {v for s, v in COMMANDS if s is State.AUTHORIZATION}
    trans = {v for s, v in COMMANDS if s is State.TRANSACTION}
    assert auth == {"CAPA", "USER", "PASS", "AUTH", "STLS", "QUIT"}
    assert trans == {"CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "QUIT"}
    assert not any(s in (State.UPDATE, State.CLOSED) for s, _ in COMMANDS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12), st.booleans())
def test_any_input_gets_well_formed_replies(chunks: list[bytes], log_in: bool) -> None:
    m = logged_in(max_line=128) if log_in else Pop3Machine(max_line=128)
    drain(m)
    for chunk in chunks:
        for event in talk(m, chunk):
            if isinstance(event, Send):
                assert event.data.startswith((b"+OK", b"-ERR", b"+ ")) and event.data.endswith(
                    b"\r\n"
                )
            elif isinstance(event, Authenticate):
                m.auth_failed()
            elif isinstance(event, Retrieve):
                m.message_content(b"x\r\n")
            elif isinstance(event, Commit):
                m.committed(True)
            elif isinstance(event, StartTls):
                m.tls_started()
        drain(m)


VERBS = sorted({verb for _, verb in COMMANDS} | {"APOP", "XTND", ""})
ARGS = ["", "1", "2", "3", "0", "1 0", "1 5", "x", "alice", "PLAIN", "PLAIN AGEAYg=="]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(VERBS), st.sampled_from(ARGS)), max_size=15),
       st.booleans(), st.booleans())  # fmt: skip
def test_every_command_in_every_state_answers_once(
    script: list[tuple[str, str]], log_in: bool, tls: bool
) -> None:
    """Each command line gets exactly one reply (after its completion, if it asked for one)."""
    m = logged_in(tls=tls) if log_in else Pop3Machine(tls=tls, stls=True)
    drain(m)
    for verb, arg in script:
        if m.state is State.CLOSED:
            break
        replies = 0
        for event in talk(m, f"{verb} {arg}".strip().encode() + b"\r\n"):
            if isinstance(event, Send):
                replies += event.data.startswith((b"+OK", b"-ERR", b"+ "))
            elif isinstance(event, Authenticate):
                m.auth_succeeded(MAILBOX)
                replies += len([e for e in drain(m) if isinstance(e, Send)])
            elif isinstance(event, Retrieve):
                m.message_content(b"a\r\n")
                replies += len([e for e in drain(m) if isinstance(e, Send)])
            elif isinstance(event, Commit):
                m.committed(True)
                replies += len([e for e in drain(m) if isinstance(e, Send)])
            elif isinstance(event, StartTls):
                m.tls_started()
        if m._sasl:  # "AUTH PLAIN" asked for a continuation: answer it
            replies += len([e for e in talk(m, b"*\r\n") if isinstance(e, Send)])
            assert replies == 2
        else:
            assert replies == 1, (verb, arg)
