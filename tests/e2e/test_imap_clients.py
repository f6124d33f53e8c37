"""The imap listener with real IMAP clients nobody here wrote: curl, mbsync (isync),
offlineimap3 and getmail6 — each syncing or fetching what smtp delivered."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from aionet.testing import serve

from .mail_helpers import mail_config, without_received

PLAIN = {"auth_without_tls": True}
MESSAGES = [
    b"From: a@example.test\r\nTo: alice@localhost\r\nSubject: one\r\n"
    b"Message-ID: <1@example.test>\r\n\r\nfirst body\r\n",
    b"From: b@example.test\r\nTo: alice@localhost\r\nSubject: two\r\n"
    b"Message-ID: <2@example.test>\r\n\r\nsecond body\r\n.\r\n..dots\r\n",
]


def deliver(addr: Any) -> None:
    with smtplib.SMTP(*addr[:2]) as s:
        for body in MESSAGES:
            s.sendmail("x@example.test", ["alice@localhost"], body)


def maildir_bodies(root: Path) -> list[bytes]:
    return sorted(p.read_bytes() for sub in ("cur", "new") for p in (root / sub).glob("*"))


def local_copy(data: bytes) -> bytes:
    """A message as a client stored it locally, back in our terms: CRLF line ends (mbsync and
    offlineimap write LF), without our Received: header and mbsync's X-TUID: marker."""
    data = re.sub(rb"(?m)^X-TUID: .*\n", b"", data.replace(b"\r\n", b"\n"))
    return without_received(data.replace(b"\n", b"\r\n"))


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)
    assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
    return done


@pytest.mark.tool("curl")
async def test_curl_lists_and_fetches_byte_identical(tmp_path: Path) -> None:
    async with serve(mail_config(tmp_path, imap=PLAIN), data_dir=tmp_path / "data") as server:
        await asyncio.to_thread(deliver, server.address("smtp"))
        host, port = server.address("imap")[:2]
        url = f"imap://{host}:{port}"
        listing = await asyncio.to_thread(run, ["curl", "-sS", "-u", "alice:alice-pw", f"{url}/"])
        fetched = await asyncio.to_thread(
            subprocess.run,
            ["curl", "-sS", "-u", "alice:alice-pw", f"{url}/INBOX;UID=2"],
            capture_output=True,
            timeout=30,
        )
    assert '"/" INBOX' in listing.stdout or '"/" "INBOX"' in listing.stdout, listing.stdout
    assert fetched.returncode == 0, fetched.stderr
    assert without_received(fetched.stdout) == MESSAGES[1]


@pytest.mark.tool("mbsync")
async def test_mbsync_syncs_both_ways(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    async with serve(mail_config(tmp_path, imap=PLAIN), data_dir=tmp_path / "data") as server:
        await asyncio.to_thread(deliver, server.address("smtp"))
        host, port = server.address("imap")[:2]
        rc = tmp_path / "mbsyncrc"
        rc.write_text(f"""
IMAPAccount aionet
Host {host}
Port {port}
User alice
Pass alice-pw
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account aionet

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
        argv = ["mbsync", "-c", str(rc), "-a"]
        await asyncio.to_thread(run, argv)
        pulled = maildir_bodies(local / "INBOX")
        # A message written locally goes up with the next sync (APPEND).
        note = b"From: me@example.test\r\nSubject: local\r\n\r\nwritten offline\r\n"
        (local / "INBOX" / "cur" / "1700000000.local.host:2,S").write_bytes(note)
        await asyncio.to_thread(run, argv)

        def remote() -> list[bytes]:
            c = imaplib.IMAP4(host, port, timeout=10)
            c.login("alice", "alice-pw")
            c.select("INBOX", readonly=True)
            _, data = c.fetch("1:*", "(BODY.PEEK[])")
            c.logout()
            return [item[1] for item in data if isinstance(item, tuple)]

        up = await asyncio.to_thread(remote)
    assert sorted(local_copy(b) for b in pulled) == sorted(MESSAGES)
    assert note in [re.sub(rb"X-TUID: .*\r\n", b"", m) for m in up] and len(up) == 3


@pytest.mark.tool("offlineimap")
async def test_offlineimap_retrieves(tmp_path: Path) -> None:
    local = tmp_path / "local"
    async with serve(mail_config(tmp_path, imap=PLAIN), data_dir=tmp_path / "data") as server:
        await asyncio.to_thread(deliver, server.address("smtp"))
        host, port = server.address("imap")[:2]
        rc = tmp_path / "offlineimaprc"
        rc.write_text(f"""
[general]
accounts = A
metadata = {tmp_path}/offlineimap-meta

[Account A]
localrepository = L
remoterepository = R

[Repository L]
type = Maildir
localfolders = {local}

[Repository R]
type = IMAP
remotehost = {host}
remoteport = {port}
remoteuser = alice
remotepass = alice-pw
ssl = no
starttls = no
folderfilter = lambda name: name == "INBOX"
""")
        await asyncio.to_thread(run, ["offlineimap", "-c", str(rc), "-o", "-u", "quiet"])
    got = maildir_bodies(local / "INBOX")
    assert sorted(local_copy(b) for b in got) == sorted(MESSAGES)


@pytest.mark.tool("getmail")
async def test_getmail_retrieves(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # getmail refuses to deliver as root: then it delivers as nobody, into a directory nobody
    # can reach (pytest's tmp_path is private to us).
    dest = Path(tempfile.mkdtemp(prefix="aionet-getmail-"))
    dest.chmod(0o777)
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir()
        (dest / sub).chmod(0o777)
    request.addfinalizer(lambda: shutil.rmtree(dest, ignore_errors=True))
    async with serve(mail_config(tmp_path, imap=PLAIN), data_dir=tmp_path / "data") as server:
        await asyncio.to_thread(deliver, server.address("smtp"))
        host, port = server.address("imap")[:2]
        rc = tmp_path / "getmailrc"
        rc.write_text(f"""
[retriever]
type = SimpleIMAPRetriever
server = {host}
port = {port}
username = alice
password = alice-pw
mailboxes = ("INBOX",)

[destination]
type = Maildir
path = {dest}/
{"user = nobody" if os.geteuid() == 0 else ""}

[options]
read_all = true
delete = false
verbose = 0
""")
        await asyncio.to_thread(
            run, ["getmail", "--rcfile", str(rc), "--getmaildir", str(tmp_path)]
        )
    marker = re.compile(rb"(?m)^X-getmail-retrieved-from-mailbox: .*\n")
    got = [
        marker.sub(b"", b.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
        for b in maildir_bodies(dest)
    ]
    # getmail adds Delivered-To:/Return-Path: above our headers and its own marker below them;
    # without the marker, the message as sent ends each copy.
    assert len(got) == 2
    for sent in MESSAGES:
        assert sum(copy.endswith(sent) for copy in got) == 1, (sent, got)


def test_tools_named_here_exist_in_ci() -> None:
    ci = (Path(__file__).parents[2] / ".ci" / "run").read_text()
    for package in ("isync", "offlineimap3", "getmail6"):
        assert package in ci, f".ci/run must install {package}"
