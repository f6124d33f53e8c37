"""The IMAP index of a Maildir: UIDs, modseqs, flags, keywords, APPEND/COPY/MOVE/EXPUNGE."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aionet.storage import _core, _mailbox
from aionet.storage import maildir as md
from aionet.storage._records import IndexState, LogTail, read_log
from aionet.storage.index import (
    SYSTEM_FLAGS,
    KeywordLimit,
    MailboxIndex,
    NoSuchMailbox,
    Snapshot,
)
from aionet.storage.maildir import Maildir, deliver_many

LOG = "aionet-uidlist.log"


@pytest.fixture(autouse=True)
def _no_shared_state() -> Any:
    yield
    _core.forget_all()


@pytest.fixture
def box(tmp_path: Path) -> Maildir:
    maildir = Maildir(tmp_path / "alice")
    maildir.create()
    return maildir


def deliver(box: Maildir, n: int = 1) -> list[str]:
    return [deliver_many([box], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())[0] for i in range(n)]


def fresh(box: Maildir) -> MailboxIndex:
    """An index as a new process would build it: from the files alone."""
    _core.forget_all()
    return MailboxIndex(Maildir(box.path))


def age_dirs(box: Maildir, seconds: float = 60) -> None:
    """Make new/ and cur/ look untouched for a while (listings of them are then trusted)."""
    past = time.time() - seconds
    for sub in ("new", "cur"):
        os.utime(box.path / sub, (past, past))


def by_uid(snapshot: Snapshot) -> dict[int, Any]:
    return {m.uid: m for m in snapshot.messages}


# -- sync ------------------------------------------------------------------------------------


def test_sync_gives_uids_in_delivery_order_with_sizes_dates_and_modseqs(box: Maildir) -> None:
    names = deliver(box, 3)
    snap = MailboxIndex(box).sync()
    assert [(m.uid, m.unique) for m in snap.messages] == [
        (1, names[0]),
        (2, names[1]),
        (3, names[2]),
    ]
    assert snap.uidnext == 4
    for m in snap.messages:
        assert m.size == m.path.stat().st_size == len(m.path.read_bytes())
        assert m.internal_date == m.path.stat().st_mtime
        assert m.modseq >= 1 and m.flags == frozenset()
    modseqs = [m.modseq for m in snap.messages]
    assert modseqs == sorted(set(modseqs)) and snap.highest_modseq == modseqs[-1]
    assert snap.recent == {1, 2, 3}  # not claimed: still in new/, what EXAMINE shows
    assert all(m.path.parent.name == "new" for m in snap.messages)


def test_claiming_recent_moves_new_to_cur_once_for_everyone(box: Maildir) -> None:
    deliver(box, 2)
    first = MailboxIndex(box).sync(claim_recent=True)
    assert first.recent == {1, 2}
    assert all(m.path.parent.name == "cur" and m.path.exists() for m in first.messages)
    other = fresh(box)  # another session, another process
    assert other.sync(claim_recent=True).recent == frozenset()
    deliver(box)
    assert other.sync(claim_recent=True).recent == {3}
    again = by_uid(MailboxIndex(box).sync())
    assert [again[1].modseq, again[2].modseq] == [m.modseq for m in first.messages]


def test_an_unchanged_mailbox_syncs_with_stats_only(
    box: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(box, 3)
    age_dirs(box)
    index = MailboxIndex(box)
    first = index.sync()
    assert not index.changed(first.stamp)
    listings: list[str] = []
    real_listdir = os.listdir

    def counting(path: Any) -> list[str]:
        listings.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(_core.os, "listdir", counting)
    assert index.sync() is first
    assert listings == []
    deliver(box)
    assert index.changed(first.stamp)
    assert [m.uid for m in index.sync().messages] == [1, 2, 3, 4]
    assert listings  # the change was seen through a listing


def test_a_new_session_in_the_same_process_reuses_the_loaded_state(
    box: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(box, 3)
    age_dirs(box)
    first = MailboxIndex(box).sync()  # that session has logged out: nothing holds it now
    gc.collect()
    listings: list[str] = []
    real_listdir = os.listdir

    def counting(path: Any) -> list[str]:
        listings.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(_core.os, "listdir", counting)
    assert MailboxIndex(Maildir(box.path)).sync() is first
    assert listings == []


def test_a_directory_changed_within_the_mtime_window_is_not_trusted(box: Maildir) -> None:
    """A delivery in the same mtime tick as our listing would not change the mtime: so a
    snapshot taken while the directories are fresh always reports a possible change."""
    deliver(box)
    index = MailboxIndex(box)
    snap = index.sync()
    assert index.changed(snap.stamp)
    age_dirs(box)
    settled = index.sync()
    assert not index.changed(settled.stamp)
    assert index.changed(object())  # a stamp from elsewhere


def test_a_file_missing_from_one_listing_keeps_its_uid(
    box: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """readdir racing a rename can return neither name: look twice before expunging."""
    deliver(box, 2)
    index = MailboxIndex(box)
    index.sync(claim_recent=True)
    real_listdir = os.listdir
    calls = {"n": 0}

    def flaky(path: Any) -> list[str]:
        names = real_listdir(path)
        if str(path).endswith("cur"):
            calls["n"] += 1
            if calls["n"] == 1:
                return names[1:]
        return names

    monkeypatch.setattr(_core.os, "listdir", flaky)
    deliver(box)
    snap = index.sync()
    assert [m.uid for m in snap.messages] == [1, 2, 3]


# -- store -----------------------------------------------------------------------------------


def test_store_set_add_remove_raise_modseq_only_on_real_changes(box: Maildir) -> None:
    deliver(box, 2)
    index = MailboxIndex(box)
    before = by_uid(index.sync(claim_recent=True))
    result = index.store([1, 99], "add", ["\\Seen", "\\Recent"])
    assert [m.uid for m in result.changed] == [1] and result.modified == ()
    [seen] = result.changed
    assert seen.flags == {"\\Seen"} and seen.modseq > before[2].modseq
    assert seen.path.name.endswith(":2,S") and seen.path.exists()
    assert index.store([1], "add", ["\\seen"]).changed == ()  # no change, no new modseq
    result = index.store([1, 2], "set", ["\\Flagged", "\\Answered", "\\Draft", "\\Deleted"])
    assert {m.uid: m.path.name.rsplit(",", 1)[1] for m in result.changed} == {1: "DFRT", 2: "DFRT"}
    result = index.store([1, 2], "remove", ["\\Deleted", "\\Draft"])
    assert all(m.flags == {"\\Flagged", "\\Answered"} for m in result.changed)
    snap = index.sync()
    assert snap.highest_modseq == max(m.modseq for m in snap.messages)
    assert {m.uid: m.modseq for m in snap.messages} == {m.uid: m.modseq for m in result.changed}


def test_store_persists_and_keeps_letters_it_does_not_manage(box: Maildir) -> None:
    [name] = deliver(box)
    os.rename(box.path / "new" / name, box.path / "cur" / f"{name}:2,PS")  # P: Maildir "passed"
    index = MailboxIndex(box)
    index.sync()
    [m] = index.store([1], "set", ["\\Flagged"]).changed
    assert m.path.name == f"{name}:2,FP" and m.flags == {"\\Flagged"}
    again = fresh(box).sync()
    assert [(x.uid, x.flags, x.modseq) for x in again.messages] == [(1, m.flags, m.modseq)]


def test_unchanged_since_refuses_messages_modified_after_it(box: Maildir) -> None:
    deliver(box, 2)
    index = MailboxIndex(box)
    index.sync()
    [first] = index.store([1], "add", ["\\Seen"]).changed
    limit = first.modseq - 1  # message 1 changed after `limit`, message 2 did not
    result = index.store([1, 2], "add", ["\\Flagged"], unchanged_since=limit)
    assert result.modified == (1,)
    assert [m.uid for m in result.changed] == [2]
    assert by_uid(index.sync())[1].flags == {"\\Seen"}
    assert index.store([2], "add", ["\\Draft"], unchanged_since=0).modified == (2,)


def test_a_rename_by_a_maildir_tool_gets_a_new_modseq(box: Maildir) -> None:
    deliver(box, 2)
    index = MailboxIndex(box)
    before = by_uid(index.sync(claim_recent=True))
    path = before[1].path
    os.rename(path, path.with_name(f"{before[1].unique}:2,FS"))
    after = index.sync()
    changed = by_uid(after)[1]
    assert changed.flags == {"\\Flagged", "\\Seen"}
    assert changed.modseq > before[2].modseq and after.highest_modseq == changed.modseq
    assert by_uid(after)[2].modseq == before[2].modseq
    # Persisted: a new process neither loses nor repeats the change.
    assert by_uid(fresh(box).sync())[1].modseq == changed.modseq


def test_a_rename_while_no_one_was_running_is_seen_after_restart(box: Maildir) -> None:
    deliver(box)
    snap = MailboxIndex(box).sync(claim_recent=True)
    [m] = snap.messages
    _core.forget_all()  # the server stops
    os.rename(m.path, m.path.with_name(f"{m.unique}:2,T"))
    [after] = fresh(box).sync().messages
    assert after.flags == {"\\Deleted"} and after.modseq > m.modseq


def test_store_never_overwrites_a_change_it_has_not_seen(box: Maildir) -> None:
    deliver(box)
    index = MailboxIndex(box)
    [m] = index.sync(claim_recent=True).messages
    os.rename(m.path, m.path.with_name(f"{m.unique}:2,F"))  # a tool flags it, unseen
    [stored] = index.store([1], "add", ["\\Seen"]).changed
    assert stored.flags == {"\\Flagged", "\\Seen"}
    assert stored.modseq == m.modseq + 2  # the tool's change has its own modseq


def test_a_store_racing_a_tool_lists_the_mailbox_at_most_once(
    box: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(box, 5)
    index = MailboxIndex(box)
    index.sync(claim_recent=True)
    listings = []
    real_list = _core.Core._list

    def counting(self: _core.Core) -> Any:
        listings.append(1)
        return real_list(self)

    def always_gone(src: Any, dst: Any) -> None:  # every file moves again before we get to it
        raise FileNotFoundError(src)

    monkeypatch.setattr(_core.Core, "_list", counting)
    monkeypatch.setattr(_mailbox.os, "rename", always_gone)
    result = index.store([1, 2, 3, 4, 5], "add", ["\\Seen"])
    assert result.changed == () and len(listings) == 1
    monkeypatch.undo()
    assert all(m.flags == frozenset() for m in index.sync().messages)


def test_keywords_round_trip_case_insensitively_and_persist(box: Maildir) -> None:
    deliver(box, 2)
    index = MailboxIndex(box)
    index.sync()
    index.store([1], "add", ["$Forwarded", "Work"])
    index.store([2], "add", ["$forwarded"])  # the same keyword
    assert (box.path / "aionet-keywords").read_text() == "0 $Forwarded\n1 Work\n"
    snap = fresh(box).sync()
    assert by_uid(snap)[1].flags == {"$Forwarded", "Work"}
    assert by_uid(snap)[2].flags == {"$Forwarded"}
    assert by_uid(snap)[1].path.name.endswith(":2,ab")
    assert snap.keywords == ("$Forwarded", "Work")
    index = MailboxIndex(box)
    index.store([1], "remove", ["WORK", "NeverDefined"])
    assert by_uid(index.sync())[1].flags == {"$Forwarded"}
    with pytest.raises(ValueError, match="keyword"):
        index.store([1], "add", ["bad keyword"])
    with pytest.raises(ValueError, match="system flag"):
        index.store([1], "add", ["\\Important"])


def test_a_27th_keyword_raises_and_changes_nothing(box: Maildir) -> None:
    deliver(box)
    index = MailboxIndex(box)
    index.sync()
    index.store([1], "add", [f"k{i}" for i in range(26)])
    [m] = index.sync().messages
    assert len(m.flags) == 26 and m.path.name.endswith(":2,abcdefghijklmnopqrstuvwxyz")
    keywords = (box.path / "aionet-keywords").read_bytes()
    index.store([1], "set", [])
    with pytest.raises(KeywordLimit):
        index.store([1], "add", ["\\Seen", "one-too-many"])
    with pytest.raises(KeywordLimit):
        index.append(b"x\r\n", ["one-too-many"])
    assert (box.path / "aionet-keywords").read_bytes() == keywords
    [after] = index.sync().messages
    assert after.flags == frozenset() and after.uid == 1  # neither \Seen nor a new message


# -- append ----------------------------------------------------------------------------------


def test_append_is_durable_in_cur_with_flags_and_internal_date(
    box: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = MailboxIndex(box)
    deliver(box)
    index.sync()
    log: list[str] = []
    real_fsync, real_rename, real_open = os.fsync, os.rename, os.open
    fds: dict[int, str] = {}

    def opening(path: Any, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        p = Path(path)
        fds[fd] = "root" if p == box.path else p.name if p.name in ("cur", LOG) else p.parent.name
        return fd

    def fsync(fd: int) -> None:
        log.append(f"fsync {fds.get(fd, '?')}")
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        log.append(f"rename {Path(src).parent.name}->{Path(dst).parent.name}")
        real_rename(src, dst)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    data = b"From: a@b\r\n\r\nhello\r\n"
    uid = index.append(data, ["\\Seen", "\\Draft"], internal_date=1_000_000_000.0)
    assert uid == 2
    # file fsynced before it enters cur/; cur/ fsynced before the index records it; the new
    # log's directory entry fsynced too.
    assert log == ["fsync tmp", "rename tmp->cur", "fsync cur", f"fsync {LOG}", "fsync root"]
    [m] = [x for x in index.sync().messages if x.uid == uid]
    assert m.path.parent.name == "cur" and m.path.read_bytes() == data
    assert m.path.stat().st_mtime == m.internal_date == 1_000_000_000.0
    assert m.flags == {"\\Seen", "\\Draft"} and m.path.name.endswith(":2,DS")
    assert m.size == len(data)
    assert list((box.path / "tmp").iterdir()) == []


def test_a_failed_append_leaves_nothing(box: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    index = MailboxIndex(box)
    index.sync()

    def broken(*args: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(_mailbox, "fsync_dir", broken)
    with pytest.raises(OSError, match="I/O"):
        index.append(b"x\r\n")
    monkeypatch.undo()
    assert [p for sub in ("tmp", "new", "cur") for p in (box.path / sub).iterdir()] == []
    assert index.sync().messages == ()


# -- copy, move, expunge ---------------------------------------------------------------------


def two_boxes(tmp_path: Path) -> tuple[MailboxIndex, MailboxIndex]:
    a, b = Maildir(tmp_path / "a"), Maildir(tmp_path / "b")
    a.create()
    b.create()
    for i in range(4):
        deliver_many([a], f"m{i}\r\n".encode())
    source, target = MailboxIndex(a), MailboxIndex(b)
    source.sync()
    target.append(b"already here\r\n", ["Other"])  # target's letter a is "Other"
    source.store([2], "add", ["\\Answered", "Work"])  # source's letter a is "Work"
    return source, target


def test_copy_keeps_flags_dates_and_bytes_and_maps_uids(tmp_path: Path) -> None:
    source, target = two_boxes(tmp_path)
    src = by_uid(source.sync())
    pairs = source.copy_to([4, 2, 77, 2], target)
    assert pairs == [(2, 2), (4, 3)]
    dst = by_uid(target.sync())
    assert dst[2].flags == {"\\Answered", "Work"} and dst[2].path.name.endswith(":2,Rb")
    for s, d in pairs:
        assert dst[d].path.read_bytes() == src[s].path.read_bytes()
        assert dst[d].internal_date == src[s].internal_date == dst[d].path.stat().st_mtime
        assert dst[d].unique != src[s].unique
    assert [m.uid for m in source.sync().messages] == [1, 2, 3, 4]  # copy leaves the source


def test_copy_falls_back_to_bytes_when_hard_links_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = two_boxes(tmp_path)

    def no_link(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(_mailbox.os, "link", no_link)
    [(_, new)] = source.copy_to([3], target)
    copied = by_uid(target.sync())[new]
    original = by_uid(source.sync())[3]
    assert copied.path.stat().st_ino != original.path.stat().st_ino
    assert copied.path.read_bytes() == original.path.read_bytes()
    assert copied.internal_date == original.internal_date == copied.path.stat().st_mtime


def test_move_removes_the_sources_and_a_crash_leaves_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = two_boxes(tmp_path)
    assert source.move_to([1, 3], target) == [(1, 2), (3, 3)]
    assert [m.uid for m in source.sync().messages] == [2, 4]
    assert [m.uid for m in target.sync().messages] == [1, 2, 3]

    def crash(self: MailboxIndex, uids: Any) -> list[int]:
        raise OSError(errno.EIO, "crash before the expunge")

    monkeypatch.setattr(MailboxIndex, "expunge", crash)
    with pytest.raises(OSError, match="crash"):
        source.move_to([4], target)
    monkeypatch.undo()
    assert 4 in by_uid(source.sync())  # in both, never in neither
    assert [m.uid for m in target.sync().messages] == [1, 2, 3, 4]


def test_copy_to_the_same_mailbox(box: Maildir) -> None:
    deliver(box)
    index = MailboxIndex(box)
    index.sync()
    assert index.copy_to([1], index) == [(1, 2)]
    assert [m.uid for m in index.sync().messages] == [1, 2]


def test_expunge_removes_files_and_uids_are_never_reused(box: Maildir) -> None:
    deliver(box, 3)
    index = MailboxIndex(box)
    index.sync(claim_recent=True)
    before = index.sync().highest_modseq
    assert index.expunge([3, 1, 42]) == [1, 3]
    assert index.expunge([]) == []
    snap = index.sync()
    assert [m.uid for m in snap.messages] == [2] and snap.highest_modseq > before
    assert len(list((box.path / "cur").iterdir())) == 1
    assert not (box.path / md.EXPUNGE_JOURNAL).exists()
    deliver(box)
    assert [m.uid for m in fresh(box).sync().messages] == [2, 4]


def test_an_expunge_interrupted_after_the_journal_finishes_on_the_next_sync(
    box: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(box, 3)
    index = MailboxIndex(box)
    index.sync()
    real_unlink = os.unlink
    calls = {"n": 0}

    def dying(path: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, "power cut")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(_mailbox.os, "unlink", dying)
    with pytest.raises(OSError, match="power cut"):
        index.expunge([1, 3])
    monkeypatch.undo()
    assert (box.path / md.EXPUNGE_JOURNAL).exists()  # half done: one file gone, one not
    assert [m.uid for m in fresh(box).sync().messages] == [2]
    assert not (box.path / md.EXPUNGE_JOURNAL).exists()


def test_a_journal_left_by_a_crash_is_replayed(box: Maildir) -> None:
    a, b, c = deliver(box, 3)
    MailboxIndex(box).sync()
    (box.path / md.EXPUNGE_JOURNAL).write_text(f"{a}\n{c}\n")
    assert [m.unique for m in fresh(box).sync().messages] == [b]
    assert not (box.path / md.EXPUNGE_JOURNAL).exists()


def test_read_follows_a_rename(box: Maildir) -> None:
    deliver(box)
    index = MailboxIndex(box)
    [m] = index.sync().messages
    os.rename(m.path, box.path / "cur" / f"{m.unique}:2,S")
    assert not m.path.exists()
    assert index.read(1) == (box.path / "cur" / f"{m.unique}:2,S").read_bytes()
    assert index.read(9) is None


# -- persistence and POP3 ---------------------------------------------------------------------


def test_pop3_sync_after_imap_use_keeps_modseqs_and_flags(box: Maildir) -> None:
    deliver(box, 2)
    index = MailboxIndex(box)
    index.sync()
    index.store([2], "add", ["\\Seen", "Work"])
    imap = by_uid(index.sync())
    deliver(box)
    pop3 = box.sync()  # POP3's login
    assert [(m.uid, m.flags) for m in pop3] == [(1, ""), (2, "Sa"), (3, "")]
    after = by_uid(fresh(box).sync())
    assert {u: (m.modseq, m.flags) for u, m in after.items() if u < 3} == {
        u: (m.modseq, m.flags) for u, m in imap.items()
    }
    assert after[3].modseq > imap[2].modseq
    box.expunge([imap[1].unique])  # POP3's QUIT
    assert [m.uid for m in index.sync().messages] == [2, 3]
    assert box.uidvalidity() == index.sync().uidvalidity


def test_the_pop3_era_uidlist_still_loads(box: Maildir) -> None:
    a, b = deliver(box, 2)
    os.rename(box.path / "new" / b, box.path / "cur" / f"{b}:2,S")
    (box.path / "aionet-uidlist").write_text(f"V1234 N9\n3 {a}\n7 {b}\n")
    snap = MailboxIndex(box).sync()
    assert snap.uidvalidity == 1234 and snap.uidnext == 9
    assert [(m.uid, m.flags) for m in snap.messages] == [(3, frozenset()), (7, {"\\Seen"})]
    assert all(m.modseq >= 1 and m.size > 0 for m in snap.messages)
    header = (box.path / "aionet-uidlist").read_text().splitlines()[0]
    assert header.startswith("V1234 N9 M")  # upgraded in place
    assert [(m.uid, m.unique) for m in box.sync()] == [(3, a), (7, b)]
    assert md.UidList.parse((box.path / "aionet-uidlist").read_text()).uids == {a: 3, b: 7}


def test_the_log_is_folded_into_the_checkpoint(box: Maildir) -> None:
    deliver(box, 3)
    index = MailboxIndex(box)
    index.sync()
    for i in range(70):  # the threshold for 3 messages is 64 records
        index.store([1 + i % 3], "set", ["\\Seen"] if i % 2 else [])
    assert len((box.path / LOG).read_text().splitlines()) < 20
    expected = [(m.uid, m.modseq, m.flags) for m in index.sync().messages]
    assert [(m.uid, m.modseq, m.flags) for m in fresh(box).sync().messages] == expected


def test_a_torn_log_tail_is_ignored_then_cut(box: Maildir) -> None:
    deliver(box, 2)
    index = MailboxIndex(box)
    index.sync()
    index.store([1], "add", ["\\Seen"])
    with open(box.path / LOG, "ab") as f:
        f.write(b"=2 99")  # a crash in the middle of an append
    snap = fresh(box).sync()
    assert by_uid(snap)[2].flags == frozenset() and snap.highest_modseq < 99
    [stored] = MailboxIndex(box).store([2], "add", ["\\Flagged"]).changed
    lines = (box.path / LOG).read_text().splitlines()
    assert lines[-1] == f"=2 {stored.modseq} F"  # the torn bytes were cut, not glued to it
    again = by_uid(fresh(box).sync())[2]
    assert (again.flags, again.modseq) == ({"\\Flagged"}, stored.modseq)


def test_a_log_outliving_its_checkpoint_is_not_replayed_twice(box: Maildir) -> None:
    """A crash after a checkpoint is written and before the log is unlinked leaves a log whose
    records the checkpoint already holds: they must not roll flags back."""
    deliver(box, 2)
    index = MailboxIndex(box)
    index.sync()
    for i in range(200):
        stale_log = (box.path / LOG).read_bytes() if (box.path / LOG).exists() else b""
        index.store([1 + i % 2], "set", ["\\Seen"] if i % 4 < 2 else ["\\Draft"])
        if stale_log and not (box.path / LOG).exists():
            break  # this store folded the log into a new checkpoint
    else:
        pytest.fail("the log was never folded")
    expected = [(m.uid, m.modseq, m.flags) for m in index.sync().messages]
    (box.path / LOG).write_bytes(stale_log)  # as if the unlink had not reached the disk
    assert [(m.uid, m.modseq, m.flags) for m in fresh(box).sync().messages] == expected


def test_replaying_a_log_onto_a_checkpoint_that_holds_it_changes_nothing(box: Maildir) -> None:
    deliver(box, 3)
    index = MailboxIndex(box)
    index.sync()
    index.store([1, 2], "add", ["\\Seen"])
    index.store([1], "remove", ["\\Seen"])
    index.expunge([3])
    index.append(b"x\r\n", ["\\Flagged"])
    log = str(box.path / LOG)
    state = IndexState.parse((box.path / "aionet-uidlist").read_bytes())
    _, touched = read_log(log, state, LogTail())
    assert touched == {1, 2, 3, 4}
    checkpoint = state.render()
    again = IndexState.parse(checkpoint)
    _, touched = read_log(log, again, LogTail())
    assert touched == set() and again.render() == checkpoint


def test_a_damaged_uidlist_is_rebuilt_with_a_new_uidvalidity(box: Maildir) -> None:
    deliver(box, 2)
    old = MailboxIndex(box).sync().uidvalidity
    (box.path / "aionet-uidlist").write_text(f"V{old} N3 M5\n1 garbage\n")
    snap = fresh(box).sync()
    assert snap.uidvalidity > old and len(snap.messages) == 2


def test_a_mailbox_removed_underneath_is_reported_and_not_recreated(tmp_path: Path) -> None:
    folder = Maildir(tmp_path / ".Old")
    folder.create()
    index = MailboxIndex(folder)
    index.sync()
    os.rename(folder.path, tmp_path / "elsewhere")
    with pytest.raises(NoSuchMailbox):
        index.sync()
    with pytest.raises(NoSuchMailbox):
        index.store([1], "add", ["\\Seen"])
    assert not folder.path.exists()


def test_system_flags_are_the_maildir_letters() -> None:
    assert SYSTEM_FLAGS == {
        "\\Seen": "S",
        "\\Answered": "R",
        "\\Flagged": "F",
        "\\Deleted": "T",
        "\\Draft": "D",
    }


# -- concurrency -------------------------------------------------------------------------------

WORKER = """
import sys
from pathlib import Path
from aionet.storage.index import MailboxIndex
from aionet.storage.maildir import Maildir
index = MailboxIndex(Maildir(Path(sys.argv[1])))
index.sync()
for i in range(int(sys.argv[3])):
    index.store([int(sys.argv[2])], "set", ["\\\\Seen"] if i % 2 else ["\\\\Flagged"])
    index.append(b"from the worker\\r\\n", ["\\\\Draft"])
"""


def test_two_processes_share_one_history(box: Maildir) -> None:
    deliver(box, 2)
    index = MailboxIndex(box)
    base = index.sync()
    rounds = 15
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(box.path), "2", str(rounds)])
    for i in range(rounds):
        index.store([1], "set", ["\\Answered"] if i % 2 else ["\\Deleted"])
        index.sync()
    assert worker.wait(timeout=60) == 0
    assert index.changed(base.stamp)
    snap = index.sync()
    # Every change got its own modseq: 2 arrivals + 2*rounds stores + rounds appends.
    assert snap.highest_modseq == base.highest_modseq + 3 * rounds
    assert len(snap.messages) == 2 + rounds
    assert [m.uid for m in snap.messages] == list(range(1, 3 + rounds))
    assert by_uid(snap)[1].flags == {"\\Deleted"} and by_uid(snap)[2].flags == {"\\Flagged"}
    again = fresh(box).sync()
    assert [(m.uid, m.modseq, m.flags) for m in again.messages] == [
        (m.uid, m.modseq, m.flags) for m in snap.messages
    ]


def test_threads_sharing_a_mailbox_lose_nothing(box: Maildir) -> None:
    deliver(box, 4)
    MailboxIndex(box).sync()
    errors: list[BaseException] = []

    def work(uid: int) -> None:
        index = MailboxIndex(box)  # each session its own object, one shared state
        try:
            for i in range(10):
                index.store([uid], "add" if i % 2 else "remove", ["\\Seen"])
                index.append(b"x\r\n")
                index.sync()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    snap = fresh(box).sync()
    assert len(snap.messages) == 44 and snap.uidnext == 45
    assert len({m.modseq for m in snap.messages}) == len(snap.messages)
