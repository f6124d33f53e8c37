"""The durable Maildir store: delivery, all-or-nothing, UIDs, flags, expunge, tmp cleanup."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aionet.storage import maildir as md
from aionet.storage.maildir import (
    DeliveryError,
    MailboxBusy,
    Maildir,
    MailStore,
    deliver_many,
    unique_name,
)


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def test_delivery_lands_in_new_byte_for_byte_and_leaves_no_tmp(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "alice")
    data = b"Subject: x\r\n\r\n\x00\xff binary\r\n"
    [name] = deliver_many([box], data)
    assert files(box.path / "new") == [name]
    assert (box.path / "new" / name).read_bytes() == data
    assert files(box.path / "tmp") == []


def test_multi_recipient_delivery_is_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boxes = [Maildir(tmp_path / n) for n in ("a", "b", "c")]
    real_rename = os.rename
    calls = []

    def failing_rename(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.EIO, "I/O error")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(md.os, "rename", failing_rename)
    with pytest.raises(DeliveryError) as info:
        deliver_many(boxes, b"hello\r\n")
    assert not info.value.storage_full
    for box in boxes:  # the two renamed copies were taken back; no tmp file is left
        assert files(box.path / "new") == [] and files(box.path / "tmp") == []


def test_disk_full_is_reported_as_storage_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(md.os, "write", full)
    with pytest.raises(DeliveryError) as info:
        deliver_many([Maildir(tmp_path / "a")], b"x")
    assert info.value.storage_full
    assert files(tmp_path / "a" / "tmp") == []


def test_unique_names_follow_the_spec_and_do_not_repeat() -> None:
    names = {unique_name() for _ in range(2000)}
    assert len(names) == 2000
    sample = next(iter(names))
    assert f"P{os.getpid()}Q" in sample and "/" not in sample and ":" not in sample


def test_uids_are_strictly_increasing_durable_and_never_reused(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "u")
    names = [deliver_many([box], f"m{i}\r\n".encode())[0] for i in range(3)]
    first = box.sync()
    assert [(m.uid, m.unique) for m in first] == [(1, names[0]), (2, names[1]), (3, names[2])]
    validity = box.uidvalidity()
    box.expunge([names[2]])
    [fourth] = deliver_many([box], b"m3\r\n")
    again = Maildir(tmp_path / "u").sync()  # a fresh object reads the uidlist file
    assert [(m.uid, m.unique) for m in again] == [(1, names[0]), (2, names[1]), (4, fourth)]
    assert Maildir(tmp_path / "u").uidvalidity() == validity


def test_flags_move_to_cur_and_keep_the_uid(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "f")
    deliver_many([box], b"x\r\n")
    [msg] = box.sync()
    target = box.set_flags(msg, "SR")
    assert target.name == f"{msg.unique}:2,RS" and target.parent.name == "cur"
    [after] = box.sync()
    assert (after.uid, after.unique, after.flags) == (msg.uid, msg.unique, "RS")


def test_an_interrupted_expunge_is_finished_on_the_next_sync(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "e")
    a, b, c = (deliver_many([box], b"x\r\n")[0] for _ in range(3))
    (box.path / md.EXPUNGE_JOURNAL).write_text(f"{a}\n{c}\n")  # the crash came after the journal
    assert [m.unique for m in box.sync()] == [b]
    assert not (box.path / md.EXPUNGE_JOURNAL).exists()


def test_cleanup_removes_tmp_files_of_dead_writers_and_old_ones(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "t")
    box.create()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    (box.path / "tmp" / f"1.M1P{dead_pid}Q1R00.host").write_bytes(b"half")
    mine = box.path / "tmp" / unique_name()
    mine.write_bytes(b"in flight")
    old = box.path / "tmp" / f"1.M1P{os.getpid()}Q99R00.host"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 40 * 3600,) * 2)
    assert box.cleanup_tmp() == 2
    assert files(box.path / "tmp") == [mine.name]


def test_the_session_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "l")
    with box.exclusive(), pytest.raises(MailboxBusy), Maildir(tmp_path / "l").exclusive():
        pass
    with box.exclusive():  # released: free again
        pass


def test_folders_are_maildir_plus_plus_subdirectories(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "p")
    box.create()
    box.folder("Sent").create()
    box.folder("Archive.2024").create()
    assert box.folders() == ["Archive.2024", "Sent"]
    assert (box.path / ".Sent" / "cur").is_dir()
    with pytest.raises(ValueError, match="bad folder"):
        box.folder("../x")


def test_store_paths_and_async_delivery(tmp_path: Path) -> None:
    store = MailStore(tmp_path / "mail")
    box = store.mailbox("LocalHost", "bob")
    assert box.path == tmp_path / "mail" / "localhost" / "bob"
    with pytest.raises(ValueError, match="bad mailbox"):
        store.mailbox("localhost", "../root")
    try:
        names = asyncio.run(store.deliver([box, store.outbound()], b"x\r\n"))
    finally:
        store.close()
    assert len(names) == 2
    assert files(tmp_path / "mail" / ".outbound" / "new") == [names[1]]


def test_fsyncs_come_in_the_durable_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """File fsync before its rename into new/; new/ itself fsynced after every rename."""
    log: list[str] = []
    real_fsync, real_rename, real_open = os.fsync, os.rename, os.open
    fds: dict[int, str] = {}

    def opening(path: Any, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        fds[fd] = Path(path).parent.name if flags & os.O_CREAT else Path(path).name
        return fd

    def fsync(fd: int) -> None:
        log.append(f"fsync {fds[fd]}")
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        log.append("rename")
        real_rename(src, dst)

    monkeypatch.setattr(md.os, "open", opening)
    monkeypatch.setattr(md.os, "fsync", fsync)
    monkeypatch.setattr(md.os, "rename", rename)
    deliver_many([Maildir(tmp_path / "a"), Maildir(tmp_path / "b")], b"x")
    assert log == ["fsync tmp", "fsync tmp", "rename", "rename", "fsync new", "fsync new"]
