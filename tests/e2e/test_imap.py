"""The imap listener with Python's ``imaplib`` (and raw sockets where imaplib cannot go),
reading what smtp delivered, on both loops."""

from __future__ import annotations

import asyncio
import imaplib
import re
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aionet.storage.maildir import Maildir, deliver_many
from aionet.testing import serve

from .conftest import Pki
from .mail_helpers import mail_config, without_received

PLAIN = {"auth_without_tls": True}
T = TypeVar("T")

MAIL = (
    b"From: Alice Example <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>, carol@example.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= plans\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.test>\r\n"
    b"\r\n"
    b"Hello Bob,\r\nlunch at noon?\r\n"
)


def put(data_dir: Path, *bodies: bytes, user: str = "alice") -> list[str]:
    box = Maildir(data_dir / "mail" / "localhost" / user)
    return [deliver_many([box], body)[0] for body in bodies]


@contextmanager
def imap(addr: Any, user: str = "alice", password: str = "alice-pw") -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4(*addr[:2], timeout=10)
    try:
        if user:
            client.login(user, password)
        yield client
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            client.shutdown()


async def in_thread(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)


def config(tmp_path: Path, pki: Pki | None = None, **imap_options: Any) -> dict[str, Any]:
    return mail_config(tmp_path, pki, imap={**PLAIN, **imap_options})


# -- round trip ----------------------------------------------------------------------------


async def test_smtp_delivery_read_back_byte_identical(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        smtp_addr, imap_addr = server.address("smtp"), server.address("imap")

        def run() -> tuple[Any, ...]:
            with smtplib.SMTP(*smtp_addr[:2]) as s:
                s.sendmail("alice@example.test", ["alice@localhost"], MAIL)
            with imap(imap_addr) as c:
                typ, data = c.select("INBOX")
                assert (typ, data) == ("OK", [b"1"])
                typ, fetched = c.fetch("1", "(RFC822.SIZE FLAGS BODY.PEEK[])")
                head = fetched[0][0]
                body = fetched[0][1]
                _, flags = c.fetch("1", "(FLAGS)")
                return head, body, flags

        head, body, flags = await in_thread(run)
        assert without_received(body) == MAIL
        size = int(re.search(rb"RFC822.SIZE (\d+)", head).group(1))  # type: ignore[union-attr]
        assert size == len(body)
        assert b"\\Seen" not in flags[0]  # PEEK does not set \Seen


async def test_fetch_sets_seen_and_flags_live_in_maildir_names(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL)
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> list[Any]:
            with imap(addr) as c:
                c.select("INBOX")
                _, data = c.fetch("1", "(BODY[TEXT])")
                assert data[0][1] == b"Hello Bob,\r\nlunch at noon?\r\n"
                c.store("1", "+FLAGS", "(\\Flagged $Forwarded)")
                _, flags = c.fetch("1", "(FLAGS)")
                return flags

        flags = await in_thread(run)
        assert b"\\Seen" in flags[0] and b"\\Flagged" in flags[0] and b"$Forwarded" in flags[0]
        names = [p.name for p in (tmp_path / "data/mail/localhost/alice/cur").iterdir()]
        # Maildir info letters in ASCII order: system flags, then keywords (a = $Forwarded).
        assert len(names) == 1 and names[0].endswith(":2,FSa"), names


async def test_envelope_and_bodystructure(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL)
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> bytes:
            with imap(addr) as c:
                c.select("INBOX", readonly=True)
                _, data = c.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
                return data[0]  # type: ignore[return-value]

        line = await in_thread(run)
        assert b'ENVELOPE ("Tue, 01 Dec 2026 10:00:00 +0000" "=?utf-8?q?caf=C3=A9?= plans"' in line
        assert b'(("Alice Example" NIL "alice" "example.test"))' in line
        assert b'(("Bob" NIL "bob" "example.test")(NIL NIL "carol" "example.test"))' in line
        assert b'"<m1@example.test>")' in line
        assert b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 28 2' in line


# -- login policy --------------------------------------------------------------------------


async def test_wrong_password_and_logindisabled_without_tls(tmp_path: Path, pki: Pki) -> None:
    cfg = mail_config(tmp_path, pki, imap={"starttls": "mail"})  # auth_without_tls: false
    async with serve(cfg, data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> tuple[Any, ...]:
            c = imaplib.IMAP4(*addr[:2], timeout=10)
            before = c.capabilities
            with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
                c.login("alice", "alice-pw")
            c.starttls(ssl_context=pki.client())
            after = c.capabilities
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                c.login("alice", "wrong")
            c.login("alice", "alice-pw")
            c.logout()
            return before, after

        before, after = await in_thread(run)
        assert "LOGINDISABLED" in before and "STARTTLS" in before and "AUTH=PLAIN" not in before
        assert "LOGINDISABLED" not in after and "STARTTLS" not in after and "AUTH=PLAIN" in after


async def test_authenticate_plain_with_and_without_initial_response(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]

        def run() -> list[bytes]:
            out = []
            with socket.create_connection((host, port), timeout=5) as sock:
                f = sock.makefile("rb")
                f.readline()
                sock.sendall(b"a AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXB3\r\n")  # SASL-IR
                out.append(f.readline())
            with socket.create_connection((host, port), timeout=5) as sock:
                f = sock.makefile("rb")
                f.readline()
                sock.sendall(b"a AUTHENTICATE PLAIN\r\n")
                out.append(f.readline())
                sock.sendall(b"AGFsaWNlAGFsaWNlLXB3\r\n")
                out.append(f.readline())
            return out

        ir, cont, done = await in_thread(run)
        assert ir.startswith(b"a OK ")
        assert cont == b"+ \r\n"
        assert done.startswith(b"a OK ")


# -- mailboxes -------------------------------------------------------------------------------


async def test_special_use_folders_list_create_rename_delete(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> dict[str, Any]:
            out: dict[str, Any] = {}
            with imap(addr) as c:
                out["first"] = c.list()[1]
                assert c.create("Projects/2026")[0] == "OK"
                assert c.create("Projects/2026")[0] == "NO"
                out["tree"] = c.list('""', "Projects*")[1]
                assert c.rename("Projects", "Work")[0] == "OK"
                out["renamed"] = c.list('""', "*")[1]
                assert c.delete("Work/2026")[0] == "OK"
                assert c.delete("INBOX")[0] == "NO"
                out["status"] = c.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
                c.subscribe("Work")
                out["lsub"] = c.lsub()[1]
            return out

        out = await in_thread(run)
        first = b"\n".join(out["first"])
        for name, attr in (
            (b"Sent", b"\\Sent"),
            (b"Drafts", b"\\Drafts"),
            (b"Trash", b"\\Trash"),
            (b"Junk", b"\\Junk"),
        ):
            assert re.search(rb"\(([^)]*)\) \"/\" \"?%s\"?" % name, first), first
            assert attr in first
        assert b'"/" INBOX' in first or b'"/" "INBOX"' in first
        tree = b"\n".join(out["tree"])
        assert b"\\HasChildren" in tree and b"Projects/2026" in tree
        renamed = b"\n".join(out["renamed"])
        assert b"Work/2026" in renamed and b"Projects" not in renamed
        assert out["status"][0] == "OK"
        assert re.search(rb"MESSAGES 0 UIDNEXT \d+ UIDVALIDITY \d+ UNSEEN 0", out["status"][1][0])
        assert any(b"Work" in line for line in out["lsub"])


@pytest.mark.parametrize(
    "name",
    ["../escape", "/etc", "a/../../b", "..", ".hidden", "a.b", "INBOX/../x", "tmp", "a//b"],
)
async def test_traversal_names_are_refused(tmp_path: Path, name: str) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> tuple[str, str]:
            with imap(addr) as c:
                created = c.create(f'"{name}"')[0]
                selected = c.select(f'"{name}"')[0]
                return created, selected

        created, selected = await in_thread(run)
        assert created == "NO" and selected == "NO"
    outside = {p.name for p in tmp_path.iterdir()}
    assert outside <= {"data", "users.yaml", ".users.yaml.lock"}, outside
    user_dir = tmp_path / "data/mail/localhost/alice"
    assert all(p.parent == user_dir for p in user_dir.glob("*")), list(user_dir.glob("*"))


# -- messages ------------------------------------------------------------------------------


async def test_append_copy_move_expunge_with_uidplus(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> dict[str, Any]:
            out: dict[str, Any] = {}
            with imap(addr) as c:
                date = imaplib.Time2Internaldate(time.mktime((2025, 1, 2, 3, 4, 5, 0, 0, -1)))
                out["append"] = c.append("INBOX", "(\\Seen)", date, MAIL)
                c.append("INBOX", None, None, MAIL.replace(b"lunch", b"dinner"))
                c.select("INBOX")
                out["internaldate"] = c.fetch("1", "(INTERNALDATE FLAGS)")[1]
                out["copy"] = c.uid("COPY", "1", "Trash")
                out["copyuid"] = c.response("COPYUID")
                out["move"] = c.uid("MOVE", "2", "Archive")  # no such mailbox
                out["move_ok"] = c.uid("MOVE", "2", "Drafts")
                out["after_move"] = c.select("INBOX")
                c.store("1", "+FLAGS", "\\Deleted")
                out["expunge"] = c.expunge()
                out["trash"] = c.select("Trash")
                c.select("Drafts")
                out["drafts"] = c.fetch("1", "(BODY.PEEK[TEXT])")[1]
            return out

        out = await in_thread(run)
        assert out["append"][0] == "OK" and b"APPENDUID" in out["append"][1][0]
        assert b'INTERNALDATE "02-Jan-2025 03:04:05' in out["internaldate"][0]
        assert b"\\Seen" in out["internaldate"][0]
        assert out["copy"][0] == "OK" and re.fullmatch(rb"\d+ 1 1", out["copyuid"][1][-1])
        assert out["move"][0] == "NO" and b"TRYCREATE" in out["move"][1][0]
        assert out["move_ok"][0] == "OK"
        assert out["after_move"] == ("OK", [b"1"])
        assert out["expunge"] == ("OK", [b"1"])
        assert out["trash"] == ("OK", [b"1"])
        assert out["drafts"][0][1] == b"Hello Bob,\r\ndinner at noon?\r\n"


async def test_search_keys(tmp_path: Path) -> None:
    put(
        tmp_path / "data",
        MAIL,
        b"From: zed@example.test\r\nSubject: invoice 42\r\nDate: Mon, 2 Nov 2026 08:00:00 +0000"
        b"\r\n\r\nplease pay\r\n",
        b"From: bob@example.test\r\nSubject: re: plans\r\n\r\n" + b"x" * 5000 + b"\r\n",
    )
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> dict[str, Any]:
            with imap(addr) as c:
                c.select("INBOX")
                c.store("2", "+FLAGS", "\\Flagged")
                q = {
                    "all": c.search(None, "ALL"),
                    "from": c.search(None, "FROM", "zed"),
                    "subject": c.search(None, "SUBJECT", "plans"),
                    "body": c.search(None, "BODY", "pay"),
                    "flagged": c.search(None, "FLAGGED"),
                    "or": c.search(None, "OR", "LARGER", "4000", "FLAGGED"),
                    "not": c.search(None, "NOT", "FLAGGED", "UNSEEN"),
                    "sent": c.search(None, "SENTBEFORE", "1-Dec-2026"),
                    "uid": c.uid("SEARCH", "UID", "2:*"),
                }
                c.literal = "café".encode()  # sent as a literal: 8-bit text
                q["utf8"] = c.search("UTF-8", "SUBJECT")
                q["charset"] = c.search("KOI8-R", "ALL")
                return q

        q = await in_thread(run)
        assert q["all"] == ("OK", [b"1 2 3"])
        assert q["from"] == ("OK", [b"2"])
        assert q["subject"] == ("OK", [b"1 3"])
        assert q["body"] == ("OK", [b"2"])
        assert q["flagged"] == ("OK", [b"2"])
        assert q["or"] == ("OK", [b"2 3"])
        assert q["not"] == ("OK", [b"1 3"])
        assert q["sent"] == ("OK", [b"2"])
        assert q["uid"][1][0].split() == [b"2", b"3"]
        assert q["utf8"] == ("OK", [b"1"])
        assert q["charset"][0] == "NO" and b"[BADCHARSET (UTF-8 US-ASCII)]" in q["charset"][1][0]


async def test_condstore_modseq_and_unchangedsince(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL, MAIL)
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> dict[str, Any]:
            with imap(addr) as c:
                out: dict[str, Any] = {"enable": c._simple_command("ENABLE", "CONDSTORE")}
                out["enabled"] = c.untagged_responses.pop("ENABLED", None)
                out["select"] = c.select("INBOX")
                out["highest"] = c.untagged_responses.get("HIGHESTMODSEQ")
                _, before = c.fetch("1:2", "(MODSEQ)")
                c.store("1", "+FLAGS", "\\Answered")
                _, after = c.fetch("1:2", "(MODSEQ)")
                out["before"], out["after"] = before, after
                m1 = int(re.search(rb"MODSEQ \((\d+)\)", after[0]).group(1))  # type: ignore[union-attr]
                out["conditional"] = c._simple_command(
                    "STORE", "1", f"(UNCHANGEDSINCE {m1 - 1})", "+FLAGS", "\\Flagged"
                )
                out["changed"] = c.fetch("1:2", f"(FLAGS) (CHANGEDSINCE {m1 - 1})")[1]
            return out

        out = await in_thread(run)
        assert out["enabled"] == [b"CONDSTORE"]
        mod = [int(re.search(rb"MODSEQ \((\d+)\)", x).group(1)) for x in out["before"]]  # type: ignore[union-attr]
        mod2 = [int(re.search(rb"MODSEQ \((\d+)\)", x).group(1)) for x in out["after"]]  # type: ignore[union-attr]
        assert mod2[0] > mod[0] and mod2[1] == mod[1]
        assert out["conditional"][0] == "OK"
        assert out["changed"] and all(b"1 (" in x or b"1 (F" in x for x in out["changed"])


# -- sessions see each other ---------------------------------------------------------------


async def test_two_sessions_observe_each_other(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL, MAIL)
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")

        def run() -> dict[str, Any]:
            with imap(addr) as a, imap(addr) as b:
                a.select("INBOX")
                b.select("INBOX")
                a.store("1", "+FLAGS", "\\Deleted")
                a.expunge()
                a.append("INBOX", None, None, MAIL)
                b.noop()
                return dict(b.untagged_responses)

        seen = await in_thread(run)
        assert seen.get("EXPUNGE") == [b"1"]
        assert seen.get("EXISTS", [])[-1] == b"2"


async def test_idle_sees_a_message_smtp_delivers(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        smtp_addr, (host, port) = server.address("smtp"), server.address("imap")[:2]

        def run() -> tuple[bytes, float, bytes]:
            with socket.create_connection((host, port), timeout=10) as sock:
                f = sock.makefile("rb")
                f.readline()
                sock.sendall(b"a LOGIN alice alice-pw\r\nb SELECT INBOX\r\n")
                while not f.readline().startswith(b"b OK"):
                    pass
                sock.sendall(b"c IDLE\r\n")
                assert f.readline().startswith(b"+ ")
                with smtplib.SMTP(*smtp_addr[:2]) as s:
                    s.sendmail("x@example.test", ["alice@localhost"], MAIL)
                sent = time.monotonic()
                exists = f.readline()
                waited = time.monotonic() - sent
                sock.sendall(b"DONE\r\n")
                done = f.readline()
                while not done.startswith(b"c "):
                    done = f.readline()
                return exists, waited, done

        exists, waited, done = await in_thread(run)
        assert exists.startswith(b"* 1 EXISTS")
        assert waited < 3.0
        assert done.startswith(b"c OK")


# -- bad input -----------------------------------------------------------------------------


async def test_literal_bombs_bad_commands_and_too_long_lines(tmp_path: Path) -> None:
    async with serve(config(tmp_path, max_bad_commands=5), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]

        def run() -> list[bytes]:
            out = []
            with socket.create_connection((host, port), timeout=10) as sock:
                f = sock.makefile("rb")
                f.readline()
                sock.sendall(b"a LOGIN alice alice-pw\r\n")
                f.readline()
                sock.sendall(b"b APPEND INBOX {2147483648}\r\n")
                out.append(f.readline())  # refused before a byte is sent: [TOOBIG]
                sock.sendall(b"c BOGUS\r\n")
                out.append(f.readline())
                sock.sendall(b"d NOOP " + b"x" * 20000 + b"\r\n")
                out.append(f.readline())
                sock.sendall(b"e NOOP\r\n")
                out.append(f.readline())
            return out

        toobig, bogus, long_line, alive = await in_thread(run)
        assert toobig.startswith(b"b ") and b"TOOBIG" in toobig
        assert bogus.startswith(b"c BAD")
        assert b"BAD" in long_line
        assert alive.startswith(b"e OK")


async def test_too_many_bad_commands_end_the_session(tmp_path: Path) -> None:
    async with serve(config(tmp_path, max_bad_commands=3), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]

        def run() -> bytes:
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(b"a X\r\nb X\r\nc X\r\n")
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                return data

        data = await in_thread(run)
        assert data.count(b" BAD ") == 3 and b"* BYE" in data


async def test_nonsync_literal_bomb_costs_no_memory(tmp_path: Path) -> None:
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]

        def run() -> bytes:
            with socket.create_connection((host, port), timeout=20) as sock:
                f = sock.makefile("rb")
                f.readline()
                sock.sendall(b"a LOGIN alice alice-pw\r\n")
                f.readline()
                size = 64 * 1024 * 1024  # twice max_literal, streamed
                sock.sendall(b"b APPEND INBOX {%d+}\r\n" % size)
                chunk = b"x" * (1 << 20)
                for _ in range(size // len(chunk)):
                    sock.sendall(chunk)
                sock.sendall(b"\r\nc NOOP\r\n")
                reply = f.readline()
                return reply + f.readline()

        replies = await in_thread(run)
        assert replies.startswith(b"b BAD") and b"TOOBIG" in replies
        assert b"\r\nc OK" in replies


async def test_starttls_discards_pipelined_commands(tmp_path: Path, pki: Pki) -> None:
    cfg = mail_config(tmp_path, pki, imap={"starttls": "mail", "auth_without_tls": False})
    async with serve(cfg, data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]

        def run() -> bytes:
            with socket.create_connection((host, port), timeout=10) as raw:
                f = raw.makefile("rb")
                f.readline()
                raw.sendall(b"a STARTTLS\r\nb LOGIN alice alice-pw\r\n")
                assert f.readline().startswith(b"a OK")
                tls = pki.client().wrap_socket(raw, server_hostname="localhost")
                tls.sendall(b"c NOOP\r\n")
                data = b""
                while b"c OK" not in data:
                    data += tls.recv(4096)
                tls.close()
                return data

        data = await in_thread(run)
        assert b"b OK" not in data and b"b NO" not in data and data.startswith(b"c OK")


def dialog(host: str, port: int, lines: list[bytes]) -> list[bytes]:
    """Send each command line and collect the responses up to its tagged answer."""
    out: list[bytes] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        f = sock.makefile("rb")
        out.append(f.readline())
        for line in lines:
            tag = line.split(b" ", 1)[0]
            try:
                sock.sendall(line + b"\r\n")
                while not (got := f.readline()).startswith(tag + b" "):
                    if not got:
                        return out  # closed by the server
                    out.append(got)
                out.append(got)
            except ConnectionResetError:
                return out
    return out


async def test_imap4rev2_enable_esearch_searchres_and_no_recent(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL, MAIL, MAIL)
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]
        out = await in_thread(
            lambda: dialog(
                host,
                port,
                [
                    b"a LOGIN alice alice-pw",
                    b"b ENABLE IMAP4rev2",
                    b"c SELECT INBOX",
                    b"d STORE 2 +FLAGS (\\Flagged)",
                    b"e UID SEARCH RETURN (SAVE MIN COUNT) FLAGGED",
                    b"f UID FETCH $ (FLAGS)",
                    b"g SEARCH UNFLAGGED",
                    b"h SEARCH RETURN () ALL",
                ],
            )
        )
    text = b"".join(out)
    assert b"* ENABLED IMAP4rev2\r\n" in text
    assert b"RECENT" not in text  # IMAP4rev2 has no \Recent
    assert b'* LIST () "/" INBOX\r\n' in text
    assert b'* ESEARCH (TAG "e") UID MIN 2 COUNT 1\r\n' in text
    assert b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n" in text
    assert b'* ESEARCH (TAG "g") ALL 1,3\r\n' in text
    assert b'* ESEARCH (TAG "h") ALL 1:3\r\n' in text


async def test_examine_is_read_only_and_close_expunges(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL, MAIL)
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]
        out = await in_thread(
            lambda: dialog(
                host,
                port,
                [
                    b"a LOGIN alice alice-pw",
                    b"b EXAMINE INBOX",
                    b"c STORE 1 +FLAGS (\\Deleted)",
                    b"d FETCH 1 BODY[TEXT]",
                    b"e SELECT INBOX",
                    b"f STORE 1 +FLAGS.SILENT (\\Deleted)",
                    b"g CLOSE",
                    b"h STATUS INBOX (MESSAGES UNSEEN)",
                    b"i UNSELECT",
                ],
            )
        )
    text = b"".join(out)
    assert b"b OK [READ-ONLY]" in text and b"c NO [READ-ONLY]" in text
    assert b"\\Seen" not in text.split(b"d OK")[0].split(b"c NO")[1]  # EXAMINE: no \Seen
    assert b"f OK" in text and b"* 1 FETCH" not in text.split(b"f OK")[0].split(b"e OK")[1]
    assert b"g OK" in text and b"EXPUNGE" not in text  # CLOSE expunges silently
    assert b"* STATUS INBOX (MESSAGES 1 UNSEEN 1)" in text
    assert b"i BAD" in text  # nothing selected any more


async def test_idle_in_one_session_sees_another_sessions_store_at_once(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL)
    async with serve(config(tmp_path, idle_poll=30), data_dir=tmp_path / "data") as server:
        addr = server.address("imap")
        host, port = addr[:2]

        def run() -> tuple[bytes, float]:
            with socket.create_connection((host, port), timeout=10) as sock:
                f = sock.makefile("rb")
                f.readline()
                sock.sendall(b"a LOGIN alice alice-pw\r\nb SELECT INBOX\r\nc IDLE\r\n")
                while not f.readline().startswith(b"+ "):
                    pass
                with imap(addr) as other:
                    other.select("INBOX")
                    t0 = time.monotonic()
                    other.store("1", "+FLAGS", "\\Answered")
                    line = f.readline()
                    waited = time.monotonic() - t0
                sock.sendall(b"DONE\r\n")
                return line, waited

        line, waited = await in_thread(run)
    assert line.startswith(b"* 1 FETCH (") and b"\\Answered" in line
    assert waited < 5  # woken by the hub, not by idle_poll (30 s)


async def test_move_tells_copyuid_then_expunge(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL, MAIL, MAIL)
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]
        out = await in_thread(
            lambda: dialog(
                host, port, [b"a LOGIN alice alice-pw", b"b SELECT INBOX", b"c MOVE 2:3 Trash"]
            )
        )
    tail = out[out.index(next(x for x in out if x.startswith(b"b OK"))) + 1 :]
    assert re.match(rb"\* OK \[COPYUID \d+ 2:3 1:2\]", tail[0]), tail
    assert tail[1:3] == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert tail[3].startswith(b"c OK")


async def test_more_commands_id_namespace_list_extended_status_binary_multiappend(
    tmp_path: Path,
) -> None:
    put(tmp_path / "data", b"Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n")
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]
        out = await in_thread(
            lambda: dialog(
                host,
                port,
                [
                    b'a ID ("name" "test")',
                    b"b LOGIN alice alice-pw",
                    b"c NAMESPACE",
                    b"d CREATE Archive (USE (\\Archive))",
                    b'e LIST (SPECIAL-USE) "" "*"',
                    b'f LIST "" "*" RETURN (STATUS (MESSAGES SIZE))',
                    b"g APPEND Archive {5+}\r\nhello {5+}\r\nworld",
                    b"h STATUS Archive (MESSAGES UIDNEXT SIZE DELETED)",
                    b"i SELECT INBOX",
                    b"j FETCH 1 (BINARY[1] BINARY.SIZE[1])",
                    b"k UID EXPUNGE 1",
                    b"l RENAME INBOX Old",
                    b"m STATUS Old (MESSAGES)",
                    b"n LOGOUT",
                ],
            )
        )
    text = b"".join(out)
    assert b'* ID ("name" "aionet" "version" ' in text and b"a OK" in text
    assert b'* NAMESPACE (("" "/")) NIL NIL' in text
    special = text.split(b"e OK")[0].split(b"d OK")[1]
    assert b"\\Archive" in special and b"\\Sent" in special and b"INBOX" not in special
    assert re.search(rb"\* STATUS INBOX \(MESSAGES 1 SIZE \d+\)", text)
    assert b"g OK [APPENDUID " in text and b" 1:2] " in text  # MULTIAPPEND: two UIDs
    assert b"* STATUS Archive (MESSAGES 2 UIDNEXT 3 SIZE 10 DELETED 0)" in text
    assert b"BINARY[1] {5}\r\nhello BINARY.SIZE[1] 5" in text
    between = text.split(b"k OK")[0].split(b"j OK")[1]
    assert b"EXPUNGE" not in between  # UID EXPUNGE of a message without \Deleted: nothing
    # RENAME INBOX moves its messages out (RFC 9051 §6.3.6): the selected INBOX is told.
    assert b"* 1 EXPUNGE" in text.split(b"l OK")[0].split(b"k OK")[1]
    assert b"* STATUS Old (MESSAGES 1)" in text
    assert b"* BYE" in text and b"n OK" in text


async def test_uids_and_uidvalidity_survive_a_restart(tmp_path: Path) -> None:
    put(tmp_path / "data", MAIL, MAIL, MAIL)

    def snapshot(addr: Any) -> tuple[bytes, list[bytes]]:
        with imap(addr) as c:
            c.select("INBOX")
            validity = c.response("UIDVALIDITY")[1][0]
            c.store("2", "+FLAGS", "\\Deleted")
            c.expunge()
            _, data = c.fetch("1:*", "(UID FLAGS MODSEQ)")
            return validity, data  # type: ignore[return-value]

    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:
        first = await in_thread(lambda: snapshot(server.address("imap")))
    async with serve(config(tmp_path), data_dir=tmp_path / "data") as server:

        def again(addr: Any) -> tuple[bytes, list[bytes]]:
            with imap(addr) as c:
                c.select("INBOX")
                validity = c.response("UIDVALIDITY")[1][0]
                _, data = c.fetch("1:*", "(UID FLAGS MODSEQ)")
                return validity, data  # type: ignore[return-value]

        second = await in_thread(lambda: again(server.address("imap")))
    assert first[0] == second[0]
    assert [re.sub(rb"\\Recent ?", b"", x) for x in first[1]] == [
        re.sub(rb"\\Recent ?", b"", x) for x in second[1]
    ]
    assert [re.search(rb"UID (\d+)", x).group(1) for x in second[1]] == [b"1", b"3"]  # type: ignore[union-attr]


async def test_pop3_and_imap_on_one_mailbox(tmp_path: Path) -> None:
    import poplib

    put(tmp_path / "data", MAIL, MAIL.replace(b"lunch", b"tea"), MAIL.replace(b"lunch", b"cake"))
    cfg = mail_config(tmp_path, pop3=PLAIN, imap=PLAIN)
    async with serve(cfg, data_dir=tmp_path / "data") as server:
        imap_addr, pop_addr = server.address("imap"), server.address("pop3")

        def run() -> tuple[Any, ...]:
            with imap(imap_addr) as c:
                c.select("INBOX")
                p = poplib.POP3(*pop_addr[:2], timeout=10)
                p.user("alice")
                p.pass_("alice-pw")
                # IMAP renames message 1's file (flags) while POP3 holds the listing.
                c.store("1", "+FLAGS", "(\\Seen \\Flagged)")
                first = b"\r\n".join(p.retr(1)[1])
                p.dele(1)
                p.quit()  # the deletion is applied by unique name, whatever the file is called
                c.noop()
                expunged = c.untagged_responses.get("EXPUNGE")
                _, left = c.fetch("1:*", "(BODY.PEEK[TEXT])")
            return first, expunged, [x[1] for x in left if isinstance(x, tuple)]

        first, expunged, left = await in_thread(run)
    assert b"lunch" in first
    assert expunged == [b"1"]
    assert left == [b"Hello Bob,\r\ntea at noon?\r\n", b"Hello Bob,\r\ncake at noon?\r\n"]


async def test_failed_logins_close_the_session_and_metrics_count(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from aionet.admin.app import hash_token

    cfg = config(tmp_path, max_auth_failures=2)
    cfg["listeners"].append(
        {"name": "admin", "protocol": "admin", "bind": "127.0.0.1:0",
         "options": {"tokens": [{"name": "v", "role": "viewer", "sha256": hash_token("t" * 24)}]}}
    )  # fmt: skip
    async with serve(cfg, data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]
        out = await in_thread(
            lambda: dialog(host, port, [b"a LOGIN alice no", b"b LOGIN alice no", b"c NOOP"])
        )
        await in_thread(lambda: dialog(host, port, [b"a LOGIN alice alice-pw", b"b NOOP"]))
        import httpx

        admin = "http://{}:{}".format(*server.address("admin")[:2])
        async with httpx.AsyncClient(base_url=admin) as client:
            auth = {"Authorization": "Bearer " + "t" * 24}
            text = (await client.get("/metrics", headers=auth)).text
    text_out = b"".join(out)
    assert text_out.count(b"NO [AUTHENTICATIONFAILED]") == 2 and b"* BYE" in text_out
    assert b"c OK" not in text_out  # closed before
    samples = {
        (s.name, *sorted(v for k, v in s.labels.items() if k != "listener")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.labels.get("listener") == "imap"
    }
    assert samples[("aionet_imap_logins_total", "failed")] == 2
    assert samples[("aionet_imap_logins_total", "succeeded")] == 1
    assert samples[("aionet_imap_commands_total", "NOOP", "ok")] == 1


async def test_imaps_partial_fetch_and_flag_removal(tmp_path: Path, pki: Pki) -> None:
    put(tmp_path / "data", MAIL)
    cfg = mail_config(tmp_path, pki, imap={}, implicit=True)  # imaps: TLS from the first byte
    async with serve(cfg, data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]

        def run() -> tuple[Any, ...]:
            c = imaplib.IMAP4_SSL(host, port, ssl_context=pki.client(), timeout=10)
            try:
                assert "LOGINDISABLED" not in c.capabilities  # TLS already: logins allowed
                c.login("alice", "alice-pw")
                c.select("INBOX")
                _, part = c.fetch("1", "(BODY.PEEK[TEXT]<6.3>)")
                c.store("1", "+FLAGS", "(\\Seen \\Flagged)")
                c.store("1", "-FLAGS.SILENT", "(\\Seen)")
                _, flags = c.fetch("1", "(FLAGS)")
                return part, flags
            finally:
                c.logout()

        part, flags = await in_thread(run)
    assert part[0][0].endswith(b"BODY[TEXT]<6> {3}") and part[0][1] == b"Bob"
    assert b"\\Flagged" in flags[0] and b"\\Seen" not in flags[0]


async def test_many_idle_sessions_outlive_the_idle_sweep_and_all_see_a_delivery(
    tmp_path: Path,
) -> None:
    # The connection manager closes a connection silent for idle_timeout (1 s here); IDLE is
    # activity (its own autologout applies). One poll of the mailbox serves every idler.
    put(tmp_path / "data", MAIL)
    options = config(tmp_path, idle_poll=0.2)
    options["server"] = {"limits": {"idle_timeout": "1s"}}
    async with serve(options, data_dir=tmp_path / "data") as server:
        host, port = server.address("imap")[:2]
        count = 20

        async def until(reader: asyncio.StreamReader, prefix: bytes) -> None:
            while not (line := await reader.readline()).startswith(prefix):
                assert line, "the server closed the connection"

        async def idle_session() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection(host, port)
            await reader.readline()
            writer.write(b"a LOGIN alice alice-pw\r\nb SELECT INBOX\r\nc IDLE\r\n")
            await until(reader, b"+ ")
            return reader, writer

        sessions = [await idle_session() for _ in range(count)]
        # Past the idle sweep's 1 s several times, and past the 2 s in which a mailbox just
        # changed is re-read on every look (its mtime may hide a change): seconds in which
        # nothing wakes the sessions.
        await asyncio.sleep(4.5)
        await asyncio.to_thread(put, tmp_path / "data", MAIL)  # "another process" delivers
        lines = await asyncio.wait_for(
            asyncio.gather(*(reader.readline() for reader, _ in sessions)), 10
        )
        assert lines == [b"* 2 EXISTS\r\n"] * count
        for reader, writer in sessions:
            writer.write(b"DONE\r\n")
            await until(reader, b"c OK")
            writer.close()
