"""A user's folder tree: validated names, Maildir++ on disk, CREATE/DELETE/RENAME/SUBSCRIBE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aionet.storage import _core
from aionet.storage.index import (
    Account,
    MailboxEntry,
    MailboxExists,
    MailboxHasChildren,
    MailboxNameError,
    NoSuchMailbox,
    UnsupportedSpecialUse,
    canonical,
)
from aionet.storage.maildir import Maildir, deliver_many


@pytest.fixture(autouse=True)
def _no_shared_state() -> Any:
    yield
    _core.forget_all()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """tmp_path/home/alice is the Maildir; tmp_path/victim and tmp_path/home/bob must stay
    untouched whatever name alice uses."""
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "secret").write_text("keep")
    bob = Maildir(tmp_path / "home" / "bob")
    bob.create()
    (tmp_path / "home" / "alice").mkdir()
    return tmp_path


@pytest.fixture
def account(home: Path) -> Account:
    return Account(Maildir(home / "home" / "alice"))


def outside(home: Path) -> dict[str, tuple[int, int]]:
    """Everything under the temp dir but outside alice's Maildir, with sizes and mtimes."""
    alice = home / "home" / "alice"
    found = {}
    for path in home.rglob("*"):
        if path == alice or alice in path.parents:
            continue
        st = path.lstat()
        found[str(path.relative_to(home))] = (st.st_size, st.st_mtime_ns)
    return found


def names(account: Account) -> dict[str, set[str]]:
    return {e.name: set(e.attributes) for e in account.mailboxes()}


# -- names -------------------------------------------------------------------------------------

TRAVERSALS = [
    "../x",
    "/etc",
    "/",
    "a/../../b",
    "a\x00b",
    "..",
    ".",
    ".hidden",
    "INBOX/../x",
    "inbox/x",
    "%2e%2e",
    "*",
    "a%",
    "",
    "a//b",
    "a/",
    "a/./b",
    "..victim",
    "../victim/secret",
    "../../victim",
    "x" * 300,
    "a\nb",
    "a\rb",
    "a\x7fb",
    "a\x85b",  # C1 control
    "tmp",
    "a/new",
    "cur",
    "\u2024\u2024",  # ONE DOT LEADER twice: NFKC ".."
    "\uff0e\uff0e/x",  # FULLWIDTH FULL STOP: NFKC "."
    "a\uff0fb",  # FULLWIDTH SOLIDUS: NFKC "/"
    "a\udc80b",  # a lone surrogate (undecodable bytes)
    "../home/bob",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_bad_names_are_refused_and_touch_nothing_outside(
    account: Account, home: Path, name: str
) -> None:
    before = outside(home)
    calls = [
        lambda: account.create(name),
        lambda: account.index(name),
        lambda: account.exists(name),
        lambda: account.delete(name),
        lambda: account.rename("Sent", name),
        lambda: account.rename(name, "Elsewhere"),
        lambda: account.subscribe(name),
        lambda: account.unsubscribe(name),
    ]
    account.create("Sent")
    for call in calls:
        with pytest.raises(MailboxNameError):
            call()
    assert outside(home) == before
    alice = home / "home" / "alice"
    assert sorted(p.name for p in alice.iterdir() if p.name.startswith(".")) == [".Sent"]
    assert account.exists("Sent") and not account.exists("Elsewhere")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".hidden", "separator"),
        ("a.b", "separator"),
        ("..", "may not be"),
        ("a/./b", "may not be"),
        ("a//b", "empty level"),
        ("\u2024x", "stands for"),
        ("a\uff0fb", "stands for"),
        ("Trash/*", "wildcard"),
        ("a\tb", "control"),
        ("INBOX/x", "INBOX"),
        ("new", "Maildir directory"),
    ],
)
def test_each_rule_says_why(name: str, reason: str) -> None:
    with pytest.raises(MailboxNameError, match=reason):
        canonical(name)


def test_what_is_in_the_way_on_disk(account: Account, home: Path) -> None:
    alice = home / "home" / "alice"
    account.create("Sent")
    (alice / ".Blocked").write_text("a file, not a folder")
    with pytest.raises(MailboxExists, match="in the way"):
        account.create("Blocked")
    (alice / ".Half").mkdir()  # a CREATE by some tool that died before making cur/
    account.create("Half")
    assert account.exists("Half") and (alice / ".Blocked").read_text() == "a file, not a folder"
    assert not [p for p in alice.iterdir() if p.name.startswith("aionet-creating")]


def test_names_are_nfc_and_inbox_is_any_case(account: Account, home: Path) -> None:
    assert canonical("inBox") == "INBOX"
    assert canonical("\u0131nbox") == "\u0131nbox"  # dotless i upper-cases to I: not INBOX
    account.create("Caf\u0065\u0301")  # decomposed
    assert account.exists("Caf\u00e9")  # composed: the same mailbox
    assert (home / "home" / "alice" / ".Caf\u00e9").is_dir()
    with pytest.raises(MailboxExists):
        account.create("Café")
    assert "Café" in names(account)


def test_the_longest_name_fits_one_directory_entry(account: Account) -> None:
    account.create("x" * 254)  # ".x...x": 255 bytes
    assert account.exists("x" * 254)
    with pytest.raises(MailboxNameError, match="too long"):
        account.create("x" * 255)
    with pytest.raises(MailboxNameError, match="too long"):
        account.create("é" * 128)  # 256 bytes of UTF-8 plus the dot


def test_a_symlinked_folder_is_never_followed(account: Account, home: Path) -> None:
    alice = home / "home" / "alice"
    account.create("Real")
    victim = home / "victim"
    Maildir(victim).create()
    os.symlink(victim, alice / ".Evil")
    assert not account.exists("Evil")
    with pytest.raises(NoSuchMailbox):
        account.index("Evil")
    with pytest.raises(NoSuchMailbox):
        account.delete("Evil")
    assert "Evil" not in names(account)
    assert (victim / "secret").read_text() == "keep" and (victim / "cur").is_dir()


# -- the tree ------------------------------------------------------------------------------------


def test_mailboxes_list_inbox_first_with_children_and_noselect_parents(account: Account) -> None:
    account.create("Archive/2024/Q1")
    account.create("Archive/2023")
    account.create("Work")
    assert names(account) == {
        "INBOX": {"\\HasNoChildren"},
        "Archive": {"\\Noselect", "\\HasChildren"},
        "Archive/2023": {"\\HasNoChildren"},
        "Archive/2024": {"\\Noselect", "\\HasChildren"},
        "Archive/2024/Q1": {"\\HasNoChildren"},
        "Work": {"\\HasNoChildren"},
    }
    listed = [e.name for e in account.mailboxes()]
    assert listed == ["INBOX", "Archive", "Archive/2023", "Archive/2024", "Archive/2024/Q1", "Work"]
    with pytest.raises(NoSuchMailbox):
        account.index("Archive")  # \Noselect
    account.create("Archive")
    assert names(account)["Archive"] == {"\\HasChildren"}
    with pytest.raises(MailboxExists):
        account.create("Archive")
    with pytest.raises(MailboxExists):
        account.create("inbox")


def test_folders_are_maildir_plus_plus_and_pop3_sees_them(account: Account, home: Path) -> None:
    account.create("Archive/2024")
    folder = home / "home" / "alice" / ".Archive.2024"
    assert all((folder / sub).is_dir() for sub in ("tmp", "new", "cur"))
    assert (folder / "maildirfolder").exists()
    assert Maildir(home / "home" / "alice").folders() == ["Archive.2024"]
    index = account.index("Archive/2024")
    uid = index.append(b"x\r\n", ["\\Seen"])
    assert [m.uid for m in Maildir(folder).sync()] == [uid]


def test_a_folder_created_again_gets_a_new_uidvalidity(account: Account) -> None:
    account.create("Tmp1")
    first = account.index("Tmp1").sync().uidvalidity
    account.delete("Tmp1")
    account.create("Tmp1")  # within the same second, most likely
    assert account.index("Tmp1").sync().uidvalidity > first


def test_delete_removes_messages_and_keeps_children(account: Account, home: Path) -> None:
    account.create("A")
    account.create("A/B")
    account.index("A").append(b"gone\r\n")
    account.index("A/B").append(b"kept\r\n")
    account.subscribe("A")
    account.delete("A")
    assert names(account)["A"] == {"\\Noselect", "\\HasChildren"}
    assert [m.path.read_bytes() for m in account.index("A/B").sync().messages] == [b"kept\r\n"]
    assert "A" in account.subscriptions()  # RFC 3501: deleting does not unsubscribe
    with pytest.raises(MailboxHasChildren):
        account.delete("A")
    with pytest.raises(NoSuchMailbox):
        account.delete("Nothing")
    with pytest.raises(MailboxNameError, match="INBOX"):
        account.delete("inbox")
    alice = home / "home" / "alice"
    assert not [p for p in alice.iterdir() if p.name.startswith("aionet-deleted")]


def test_a_selected_folder_deleted_by_another_session_stays_deleted(account: Account) -> None:
    account.create("Doomed")
    selected = account.index("Doomed")
    selected.append(b"x\r\n")
    account.delete("Doomed")
    with pytest.raises(NoSuchMailbox):
        selected.sync()
    assert not account.exists("Doomed")


def test_rename_moves_children_subscriptions_and_keeps_uids(account: Account) -> None:
    account.create("Old")
    account.create("Old/Child")
    account.create("Oldish")  # a prefix of the name, not a child
    uid = account.index("Old/Child").append(b"x\r\n", ["\\Flagged"])
    validity = account.index("Old/Child").sync().uidvalidity
    account.subscribe("Old/Child")
    account.subscribe("Oldish")
    account.rename("Old", "New/Place")
    assert set(names(account)) == {"INBOX", "New", "New/Place", "New/Place/Child", "Oldish"}
    snap = account.index("New/Place/Child").sync()
    assert [(m.uid, m.flags) for m in snap.messages] == [(uid, {"\\Flagged"})]
    assert snap.uidvalidity == validity
    assert account.subscriptions() == ["New/Place/Child", "Oldish"]


def test_rename_refusals(account: Account) -> None:
    account.create("A")
    account.create("B")
    account.create("C/D")
    with pytest.raises(MailboxExists):
        account.rename("A", "B")
    with pytest.raises(MailboxExists):
        account.rename("A", "INBOX")
    with pytest.raises(MailboxNameError, match="under itself"):
        account.rename("A", "A/Sub")
    with pytest.raises(NoSuchMailbox):
        account.rename("Nothing", "Z")
    account.create("Z/D")
    with pytest.raises(MailboxExists):
        account.rename("C", "Z")  # C/D would land on Z/D
    assert account.exists("C/D") and account.exists("A")
    account.rename("C", "Y")  # a \Noselect parent's children move
    assert account.exists("Y/D") and not account.exists("C/D")


def test_renaming_inbox_moves_its_messages_and_inbox_stays(account: Account) -> None:
    inbox = account.inbox
    for i in range(3):
        deliver_many([inbox], f"m{i}\r\n".encode())
    index = account.index("INBOX")
    index.sync()
    index.store([2], "add", ["\\Seen", "Work"])
    account.rename("INBOX", "Saved")
    assert account.index("INBOX").sync().messages == ()
    saved = account.index("Saved").sync()
    assert [(m.path.read_bytes(), m.flags) for m in saved.messages] == [
        (b"m0\r\n", frozenset()),
        (b"m1\r\n", {"\\Seen", "Work"}),
        (b"m2\r\n", frozenset()),
    ]
    with pytest.raises(MailboxExists):
        account.rename("INBOX", "Saved")


def test_subscriptions_allow_names_that_do_not_exist(account: Account, home: Path) -> None:
    account.subscribe("Later/Maybe")
    account.subscribe("later/maybe")  # names are case-sensitive apart from INBOX
    account.subscribe("inbox")
    account.subscribe("INBOX")
    path = home / "home" / "alice" / "aionet-subscriptions"
    assert path.read_text() == "INBOX\nLater/Maybe\nlater/maybe\n"
    account.unsubscribe("later/maybe")
    account.unsubscribe("never-subscribed")
    assert account.subscriptions() == ["INBOX", "Later/Maybe"]
    entries = {e.name: e for e in account.mailboxes()}
    assert entries["INBOX"].subscribed and "Later/Maybe" not in entries


def test_special_use_fixed_and_recorded(account: Account, home: Path) -> None:
    account.ensure_special_use()
    listed = {e.name: e for e in account.mailboxes()}
    for name, use in Account.SPECIAL_USE.items():
        assert listed[name] == MailboxEntry(name, frozenset({use, "\\HasNoChildren"}), True)
    account.create("Archive", special_use=["\\archive"])
    account.create("Old Sent", special_use=["\\Sent"])
    with pytest.raises(UnsupportedSpecialUse):
        account.create("Everything", special_use=["\\All"])
    assert not account.exists("Everything")
    assert names(account)["Archive"] == {"\\Archive", "\\HasNoChildren"}
    account.rename("Archive", "Attic")
    assert names(account)["Attic"] == {"\\Archive", "\\HasNoChildren"}
    account.delete("Old Sent")
    account.create("Old Sent")
    assert names(account)["Old Sent"] == {"\\HasNoChildren"}
    path = home / "home" / "alice" / "aionet-special-use"
    assert path.read_text() == "\\Archive Attic\n"


def test_ensure_special_use_is_idempotent_and_cheap_once_done(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.ensure_special_use()
    account.unsubscribe("Junk")
    opened: list[str] = []
    real_open = os.open

    def spying(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spying)
    account.ensure_special_use()
    assert opened == []  # no lock, no write: four stats
    monkeypatch.undo()
    assert "Junk" not in account.subscriptions()  # the user's choice stands


def test_crash_leftovers_are_swept_and_never_listed(account: Account, home: Path) -> None:
    alice = home / "home" / "alice"
    account.create("Kept")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    for leftover in ("aionet-deleted.abc", f"aionet-creating.{dead.stdout.strip()}.abc"):
        Maildir(alice / leftover).create()
    live = alice / f"aionet-creating.{os.getpid()}.mine"
    live.mkdir()
    assert set(names(account)) == {"INBOX", "Kept"}
    assert sorted(p.name for p in alice.iterdir() if p.name.startswith("aionet-c")) == [live.name]
    assert not (alice / "aionet-deleted.abc").exists()


def test_concurrent_creates_from_two_processes_make_one_folder(account: Account) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from aionet.storage.index import Account, MailboxExists\n"
        "from aionet.storage.maildir import Maildir\n"
        "try:\n"
        "    Account(Maildir(Path(sys.argv[1]))).create('Race')\n"
        "    print('made')\n"
        "except MailboxExists:\n"
        "    print('exists')\n"
    )
    root = str(account.root)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, root], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["exists", "exists", "exists", "made"]
    assert account.exists("Race")
