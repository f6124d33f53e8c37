"""A message that got 250 survives ``kill -9`` of ``aionet run``; a restart leaves tmp/ clean."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from aionet.testing import serve

from .mail_helpers import mail_config, make_users, tmp_files

ROUNDS = 5


def config_text(tmp_path: Path) -> str:
    return (
        f"server: {{data_dir: {tmp_path / 'data'}}}\n"
        f"auth: {{users_file: {make_users(tmp_path)}}}\n"
        "listeners:\n"
        "  - {name: smtp, protocol: smtp, bind: 127.0.0.1:0, options: {hostname: mx.test}}\n"
    )


def reply(sock: socket.socket) -> bytes:
    """One complete SMTP reply (the last line has a space after the code)."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
        last = data.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
        if data.endswith(b"\r\n") and last[3:4] == b" ":
            return data


def send_then_kill(addr: Any, subject: bytes, kill: Any) -> bool:
    """Deliver one message; SIGKILL the server the moment its 250 arrives. True if acked."""
    with socket.create_connection(addr, timeout=10) as sock:
        reply(sock)
        for command in (b"EHLO d.test", b"MAIL FROM:<d@d.test>", b"RCPT TO:<alice@localhost>",
                        b"DATA"):  # fmt: skip
            sock.sendall(command + b"\r\n")
            assert reply(sock)[:1] in (b"2", b"3")
        # A second transaction pipelined behind the first may be mid-write when the kill lands.
        sock.sendall(
            b"Subject: " + subject + b"\r\n\r\nbody\r\n.\r\n"
            b"MAIL FROM:<d@d.test>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n"
            + b"Subject: unacked\r\n\r\n"
            + b"y" * 998
            + b"\r\n"
        )
        acked = reply(sock).startswith(b"250 ")
        kill()
    return acked


def subjects(data_dir: Path) -> list[bytes]:
    new = data_dir / "mail" / "localhost" / "alice" / "new"
    out = []
    for path in new.iterdir():
        for line in path.read_bytes().split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:])
    return out


def test_acknowledged_mail_survives_sigkill_and_restart_cleans_tmp(
    daemon: Any, tmp_path: Path
) -> None:
    config = config_text(tmp_path)
    data = tmp_path / "data"
    acked: list[bytes] = []
    planted: list[Path] = []
    for round_ in range(ROUNDS + 1):
        d = daemon(config)
        ready = d.wait_for("smtp_store_ready")
        # Every restart removed what the crashes before it left in tmp/.
        assert ready["stale_tmp_removed"] >= min(round_, 1)
        assert tmp_files(data) == [] and not any(p.exists() for p in planted)
        if round_ == ROUNDS:
            break
        subject = b"round-%d" % round_
        if send_then_kill(d.address("smtp"), subject, d.proc.kill):
            acked.append(subject)
        assert d.proc.wait(10) == -9
        # What a delivery cut short by the kill leaves: a tmp file named for the dead writer.
        tmp = data / "mail" / "localhost" / "alice" / "tmp"
        planted.append(tmp / f"{int(time.time())}.M1P{d.proc.pid}Q9Rdead.host")
        planted[-1].write_bytes(b"Subject: half")
    assert len(acked) == ROUNDS
    got = subjects(data)
    for subject in acked:
        assert got.count(subject) == 1, (subject, got)
    assert set(got) <= {*acked, b"unacked"}


async def test_group_commit_no_250_precedes_its_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent deliveries share the fsync of ``new/``, and every 250 arrives only after an
    fsync that began after that message was renamed into ``new/``."""
    import itertools
    import threading

    from aionet.storage import maildir

    order = itertools.count(1)
    lock = threading.Lock()
    fsyncs: list[tuple[int, int]] = []
    renames: dict[str, int] = {}
    real_fsync, real_rename = maildir.NEW_DIRS._fsync, os.rename

    def tick() -> int:
        with lock:
            return next(order)

    def slow_fsync(path: Any) -> None:
        began = tick()
        time.sleep(0.01)  # a disk's fsync: long enough for deliveries to pile up behind it
        real_fsync(path)
        fsyncs.append((began, tick()))

    def recording_rename(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        if "/new/" in str(dst):
            renames[Path(dst).name] = tick()

    sync = maildir.DirSync(slow_fsync)
    monkeypatch.setattr(maildir, "NEW_DIRS", sync)
    monkeypatch.setattr(maildir.os, "rename", recording_rename)
    acks: dict[str, int] = {}
    async with serve(mail_config(tmp_path), data_dir=tmp_path / "data") as server:
        host, port = server.address("smtp")[:2]

        async def client(c: int) -> None:
            async with aiosmtplib.SMTP(hostname=host, port=port, timeout=60) as smtp:
                for m in range(5):
                    subject = f"c{c}m{m}"
                    await smtp.sendmail("s@x.test", ["alice@localhost"],
                                        f"Subject: {subject}\r\n\r\nx\r\n")  # fmt: skip
                    acks[subject] = tick()  # the 250 is in

        await asyncio.gather(*(client(c) for c in range(16)))
    # Which file holds which subject, hence which rename each 250 followed.
    box = tmp_path / "data" / "mail" / "localhost" / "alice" / "new"
    renamed_at = {}
    for f in box.iterdir():
        subject = next(ln for ln in f.read_bytes().split(b"\r\n") if ln.startswith(b"Subject: "))
        renamed_at[subject[9:].decode()] = renames[f.name]
    assert len(renamed_at) == len(acks) == 80
    for subject, acked in acks.items():
        renamed = renamed_at[subject]
        assert any(renamed < began and ended < acked for began, ended in fsyncs), subject
    assert sync.calls == 80 and sync.fsyncs < 80  # shared: group commit happened
