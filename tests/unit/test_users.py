"""The user store: round trip, atomic 0600 writes, positioned errors, reload, timing, rehash."""

from __future__ import annotations

import io
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.low_level import hash_secret
from structlog.testing import capture_logs

from aionet.auth import cli as users_cli
from aionet.auth.users import (
    UnknownUserError,
    User,
    UserStore,
    parse_users,
    render_users,
)
from aionet.errors import ConfigError


def cheap_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


CHEAP = cheap_hasher()
HASH = CHEAP.hash("pw")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "users.yaml"


@pytest.fixture
def store(path: Path) -> Iterator[UserStore]:
    store = UserStore.load(path, missing_ok=True, hasher=cheap_hasher())
    yield store
    store.close()


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_users(text, "u.yaml")
    return [str(i) for i in info.value.issues]


# -- round trip -----------------------------------------------------------------------------------


def test_round_trip_keeps_users_roles_and_verifies(store: UserStore, path: Path) -> None:
    store.add("alice", "s3cret", ("admin", "mail"))
    store.add("bob", "hunter2")
    again = UserStore.load(path, hasher=cheap_hasher())
    assert list(again.snapshot) == ["alice", "bob"]
    assert again.snapshot["alice"] == User("alice", ("admin", "mail"))
    assert again.snapshot["bob"].roles == ()
    assert again.verify("alice", "s3cret") == again.snapshot["alice"]
    assert again.verify("alice", "hunter2") is None
    assert again.verify("bob", "hunter2") is not None
    text = path.read_text()
    assert "s3cret" not in text and "hunter2" not in text
    assert text.count("$argon2id$") == 2


def test_replacing_a_user_keeps_hand_written_settings(store: UserStore, path: Path) -> None:
    text = (
        "users:\n"
        f"  alice:\n    password_hash: {HASH}\n    roles: [ftp]\n"
        "    settings:\n      home: /srv/ftp/alice\n      aliases: [postmaster@localhost]\n"
    )
    path.write_text(text)
    store.reload()
    user = store.add("alice", "new", ("mail",))
    assert user.roles == ("mail",)
    assert user.setting("home") == "/srv/ftp/alice"
    assert user.setting("aliases") == ("postmaster@localhost",)
    assert user.setting("quota", 5) == 5
    assert UserStore.load(path).snapshot["alice"].settings["home"] == "/srv/ftp/alice"


def test_users_and_their_settings_are_read_only(path: Path) -> None:
    path.write_text(f"users:\n  a:\n    password_hash: {HASH}\n    settings: {{x: {{y: [1]}}}}\n")
    user = UserStore.load(path).snapshot["a"]
    with pytest.raises(TypeError):
        user.settings["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        user.settings["x"]["y"] = 2
    assert user.settings["x"]["y"] == (1,)
    with pytest.raises(AttributeError):
        user.name = "b"  # type: ignore[misc]


def test_has_role_is_any_of() -> None:
    user = User("a", ("mail", "ftp"))
    assert user.has_role("ftp")
    assert user.has_role("admin", "mail")
    assert not user.has_role("admin")
    assert not user.has_role()


def test_dollar_signs_in_settings_survive_a_rewrite(
    store: UserStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIONET_TEST_HOME", "/interpolated")
    path.write_text(
        "users:\n"
        f"  a:\n    password_hash: {HASH}\n"
        '    settings: {tmpl: "$${AIONET_TEST_HOME}", price: "$$5", env: "${AIONET_TEST_HOME}"}\n'
    )
    store.reload()
    store.set_password("a", "again")
    settings = UserStore.load(path).snapshot["a"].settings
    assert settings == {"tmpl": "${AIONET_TEST_HOME}", "price": "$5", "env": "/interpolated"}


def test_two_stale_stores_do_not_lose_each_others_changes(path: Path) -> None:
    first = UserStore.load(path, missing_ok=True, hasher=cheap_hasher())
    second = UserStore.load(path, missing_ok=True, hasher=cheap_hasher())
    first.add("alice", "a")
    second.add("bob", "b")  # second never saw alice: it must re-read before writing
    assert list(UserStore.load(path).snapshot) == ["alice", "bob"]
    assert list(second.snapshot) == ["alice", "bob"]


def test_passwd_and_remove_of_an_unknown_user(store: UserStore, path: Path) -> None:
    store.add("alice", "a")
    before = path.read_bytes()
    with pytest.raises(UnknownUserError, match="no user 'bob'"):
        store.set_password("bob", "x")
    with pytest.raises(UnknownUserError, match="no user 'bob'"):
        store.remove("bob")
    assert path.read_bytes() == before
    store.remove("alice")
    assert len(UserStore.load(path).snapshot) == 0


@pytest.mark.parametrize(
    ("name", "roles", "match"),
    [
        ("bad name", (), "invalid user name 'bad name'"),
        ("", (), "invalid user name ''"),
        ("-x", (), "invalid user name"),
        ("a" * 65, (), "invalid user name"),
        ("ok", ("has space",), "invalid role 'has space'"),
    ],
)
def test_add_rejects_bad_names_and_roles(
    store: UserStore, path: Path, name: str, roles: tuple[str, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        store.add(name, "pw", roles)
    assert not path.exists()


# -- atomic writes --------------------------------------------------------------------------------


def test_written_file_is_0600_whatever_it_was(store: UserStore, path: Path) -> None:
    path.write_text("users: {}\n")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        store.add("alice", "a")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    leftovers = sorted(p.name for p in path.parent.iterdir())
    assert leftovers == [".users.yaml.lock", "users.yaml"]


def test_write_fsyncs_the_temp_file_before_replacing_then_the_directory(
    store: UserStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.add("alice", "a")
    assert events == ["fsync-file", "replace", "fsync-dir"]


def test_a_failed_write_leaves_the_old_file_and_snapshot(
    store: UserStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add("alice", "a")
    before = path.read_bytes()

    def replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        store.add("bob", "b")
    assert path.read_bytes() == before
    assert list(store.snapshot) == ["alice"]
    assert sorted(p.name for p in path.parent.iterdir()) == [".users.yaml.lock", "users.yaml"]


# -- corrupt files: every error positioned --------------------------------------------------------

ARGON2I = hash_secret(b"pw", b"saltsaltsalt", 1, 8192, 1, 16, Type.I).decode()
BCRYPT = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
TRUNCATED = "$argon2id$v=19$m=8192,t=1,p=1$c2E$aGFzaA"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "users:\n  alice: [\n",
            ["u.yaml:3:1: YAML syntax error: expected the node content, but found '<stream end>'"],
            id="yaml-syntax",
        ),
        pytest.param(
            "usres: {}\n",
            ["u.yaml:1:1: usres: unknown key (did you mean 'users'?)"],
            id="unknown-top-key",
        ),
        pytest.param(
            f"users:\n  alice:\n    password_hash: {HASH}\n    role: [a]\n",
            ["u.yaml:4:5: users.alice.role: unknown key (did you mean 'roles'?)"],
            id="unknown-user-key",
        ),
        pytest.param(
            f"users:\n  alice:\n    password_hash: {HASH}\n    roles: admin\n",
            ["u.yaml:4:12: users.alice.roles: expected a list of role names"],
            id="roles-not-a-list",
        ),
        pytest.param(
            f"users:\n  alice:\n    password_hash: {HASH}\n    roles: [ok, 'no way']\n",
            [
                "u.yaml:4:17: users.alice.roles[1]: invalid role 'no way': use 1-64 letters, "
                "digits and ._:- (starting with a letter or digit)"
            ],
            id="bad-role",
        ),
        pytest.param(
            f"users:\n  alice:\n    password_hash: {HASH}\n    settings: [home]\n",
            ["u.yaml:4:15: users.alice.settings: Input should be a valid dictionary"],
            id="settings-not-a-mapping",
        ),
        pytest.param(
            "users:\n  alice:\n    roles: [a]\n",
            ["u.yaml:3:5: users.alice.password_hash: required key is missing"],
            id="missing-hash",
        ),
        pytest.param(
            "users:\n  alice:\n    password_hash: plaintext\n",
            [
                "u.yaml:3:20: users.alice.password_hash: not an argon2 hash "
                "(set it with `aionet users passwd`)"
            ],
            id="not-a-hash",
        ),
        pytest.param(
            f"users:\n  alice:\n    password_hash: '{BCRYPT}'\n",
            [
                "u.yaml:3:20: users.alice.password_hash: not an argon2 hash "
                "(set it with `aionet users passwd`)"
            ],
            id="bcrypt",
        ),
        pytest.param(
            f"users:\n  alice:\n    password_hash: '{ARGON2I}'\n",
            ["u.yaml:3:20: users.alice.password_hash: argon2i hash: only argon2id is accepted"],
            id="argon2i",
        ),
        pytest.param(
            f"users:\n  alice:\n    password_hash: '{TRUNCATED}'\n",
            [
                "u.yaml:3:20: users.alice.password_hash: argon2id hash is truncated "
                "(salt or digest too short)"
            ],
            id="truncated-hash",
        ),
        pytest.param(
            f"users:\n  bad name:\n    password_hash: {HASH}\n",
            [
                "u.yaml:2:3: users.bad name: invalid user name 'bad name': use 1-64 letters, "
                "digits and ._@+- (starting with a letter or digit)"
            ],
            id="bad-name",
        ),
        pytest.param(
            f"users:\n  a:\n    password_hash: {HASH}\n  a:\n    password_hash: {HASH}\n",
            ["u.yaml:4:3: users.a: duplicate key"],
            id="duplicate-user",
        ),
        pytest.param(
            "users: [alice]\n",
            ["u.yaml:1:8: users: Input should be a valid dictionary"],
            id="users-not-a-mapping",
        ),
    ],
)
def test_corrupt_file_errors_are_positioned(text: str, expected: list[str]) -> None:
    assert issues_of(text) == expected


def test_every_issue_is_reported_at_once_in_file_order() -> None:
    text = (
        "users:\n"
        "  alice:\n    password_hash: nope\n    colour: red\n"
        f"  'b c':\n    password_hash: {HASH}\n"
        f"  carol:\n    password_hash: {HASH}\n    roles: 3\n"
    )
    assert [i.split(": ")[0] for i in issues_of(text)] == [
        "u.yaml:3:20",
        "u.yaml:4:5",
        "u.yaml:5:3",
        "u.yaml:9:12",
    ]


def test_an_empty_file_is_an_empty_store() -> None:
    assert parse_users("", "u.yaml").users == {}
    assert parse_users("users: {}\n", "u.yaml").users == {}


def test_missing_file(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        UserStore.load(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}:1:1: cannot read users file: no such file"
    ]
    assert len(UserStore.load(path, missing_ok=True).snapshot) == 0


def test_rendered_text_parses_back_to_the_same_data(store: UserStore) -> None:
    store.add("alice", "a", ("x", "y"))
    data = store.snapshot.file
    assert parse_users(render_users(data), "again.yaml") == data


# -- reload ---------------------------------------------------------------------------------------


def test_reload_keeps_the_old_snapshot_when_the_file_is_broken(
    store: UserStore, path: Path
) -> None:
    store.add("alice", "a")
    old = store.snapshot
    path.write_text("users:\n  alice:\n    password_hash: nope\n")
    with pytest.raises(ConfigError, match=r"users\.yaml:3:20: users\.alice\.password_hash"):
        store.reload()
    assert store.snapshot is old
    assert store.verify("alice", "a") is not None
    path.unlink()
    with pytest.raises(ConfigError, match="no such file"):
        store.reload()
    assert store.snapshot is old


def test_reload_picks_up_changes(path: Path) -> None:
    store = UserStore(path, hasher=cheap_hasher(), watch=False)
    store.add("alice", "a")
    other = UserStore.load(path, hasher=cheap_hasher())
    other.add("bob", "b", ("mail",))
    assert store.get("bob") is None  # not watching: the snapshot stays until reload()
    new = store.reload()
    assert store.snapshot is new
    assert store.get("bob") == User("bob", ("mail",))
    assert store.verify("bob", "b") is not None


def test_a_watching_store_sees_a_rewrite_at_the_next_lookup(store: UserStore, path: Path) -> None:
    store.add("alice", "a")
    UserStore.load(path, hasher=cheap_hasher()).add("bob", "b", ("mail",))  # `aionet users add`
    assert store.get("bob") == User("bob", ("mail",))
    assert store.verify("bob", "b") is not None
    UserStore.load(path, hasher=cheap_hasher()).remove("bob")
    assert store.verify("bob", "b") is None
    assert not store.refresh()  # nothing changed since: one stat, no read


def test_get_checks_the_file_for_an_unknown_name_and_a_known_one_once_a_second(
    store: UserStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aionet.auth.users as users_module

    now = [1000.0]
    monkeypatch.setattr(users_module.time, "monotonic", lambda: now[0])
    stats: list[str] = []
    real_stat = users_module.os.stat
    monkeypatch.setattr(
        users_module.os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k)
    )
    store.add("alice", "a")
    other = UserStore.load(path, hasher=cheap_hasher())
    other.add("bob", "b", ("mail",))  # `aionet users add`
    stats.clear()
    assert store.get("bob") == User("bob", ("mail",))  # unknown to the snapshot: checked
    assert stats
    stats.clear()
    for _ in range(5):
        assert store.get("bob") is not None and store.get("alice") is not None
    assert stats == []  # known names within the second: no stat at all
    assert store.get("carol") is None and stats  # an unknown name: checked each time
    stats.clear()
    assert store.find("bob@localhost", "bob") == ("bob", User("bob", ("mail",)))
    assert stats == []  # one of them known: no stat (RCPT tries user@domain first)
    other.remove("bob")
    now[0] += 0.5
    assert store.get("bob") is not None  # removed, but known and checked half a second ago
    now[0] += users_module.KNOWN_RECHECK
    assert store.get("bob") is None  # a second on: the file is checked again
    assert store.verify("alice", "a") is not None  # logins still check each time


def test_a_corrupt_rewrite_keeps_the_users_and_is_logged_once(store: UserStore, path: Path) -> None:
    store.add("alice", "a")
    text = path.read_text()
    with capture_logs() as logs:
        path.write_text(text + "  bob: {password_hash: nope}\n")  # half-edited by hand
        assert store.verify("alice", "a") is not None
        assert store.get("alice") is not None and store.get("bob") is None  # not logged again
    events = [e for e in logs if e["event"] == "users_file_invalid"]
    assert len(events) == 1 and events[0]["kept"] == 1
    assert any("not an argon2 hash" in error for error in events[0]["errors"])
    path.write_text(text + "# fixed\n")
    assert store.refresh()  # fixed: read again
    path.write_text(text)
    path.chmod(0o666)  # writable by others: refused, as at start
    assert not store.refresh() and store.get("alice") is not None


# -- verification -----------------------------------------------------------------------------


class RecordingHasher(PasswordHasher):
    """A cheap hasher that notes which thread each verification ran on."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8192, parallelism=1)
        self.threads: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.threads.append(threading.current_thread().name)
        return super().verify(hash, password)


async def test_verify_async_runs_argon2_off_the_event_loop(path: Path) -> None:
    hasher = RecordingHasher()
    store = UserStore.load(path, missing_ok=True, hasher=hasher)
    try:
        store.add("alice", "a")
        assert await store.verify_async("alice", "a") == store.snapshot["alice"]
        assert await store.verify_async("alice", "b") is None
        assert await store.verify_async("nobody", "a") is None
    finally:
        store.close()
    assert len(hasher.threads) == 3
    assert all(name.startswith("aionet-argon2") for name in hasher.threads)
    assert threading.current_thread().name not in hasher.threads


def test_unknown_user_is_checked_against_a_dummy_hash(path: Path) -> None:
    hasher = RecordingHasher()
    store = UserStore.load(path, missing_ok=True, hasher=hasher)
    store.add("alice", "a")
    assert store.verify("nobody", "a") is None
    assert len(hasher.threads) == 1  # one real argon2 verification for an unknown name


def _seconds(verify: Callable[[str, str], object], name: str, password: str) -> float:
    start = time.perf_counter()
    verify(name, password)
    return time.perf_counter() - start


def test_unknown_user_and_wrong_password_take_the_same_time(path: Path) -> None:
    # The users' hashes are costlier than the store's own hasher: the dummy hash must follow
    # the users' parameters, not the hasher's, or unknown names answer about 4x faster.
    costly = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    writer = UserStore.load(path, missing_ok=True, hasher=costly)
    for name in ("alice", "bob", "carol"):
        writer.add(name, f"{name}-pw")
    store = UserStore.load(path, hasher=cheap_hasher())
    store.verify("warm", "up")
    known: list[float] = []
    unknown: list[float] = []
    for i in range(40):  # interleaved, so drift in machine load hits both alike
        known.append(_seconds(store.verify, "alice", f"wrong{i}"))
        unknown.append(_seconds(store.verify, f"nobody{i}", "wrong"))
    # The fastest of each: the cost of the verification itself. Load on a shared machine only
    # ever adds time, so the minimum is stable where the median of 40 drifts with it.
    k, u = min(known), min(unknown)
    assert abs(k - u) / max(k, u) < 0.25, (k, u)


def test_common_parameters_follow_the_majority_of_users(path: Path) -> None:
    costly = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    writer = UserStore.load(path, missing_ok=True, hasher=costly)
    writer.add("a", "x")
    writer.add("b", "x")
    UserStore.load(path, hasher=CHEAP).add("c", "x")
    params = UserStore.load(path).snapshot.common_parameters
    assert params is not None
    assert (params.time_cost, params.memory_cost) == (2, 16384)


def test_login_rehashes_an_outdated_hash(path: Path) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    UserStore.load(path, missing_ok=True, hasher=old).add("alice", "pw")
    store = UserStore.load(path, hasher=cheap_hasher())
    assert store.verify("alice", "wrong") is None
    assert extract_parameters(_hash_on_disk(path, "alice")).time_cost == 2  # failures never write
    assert store.verify("alice", "pw") is not None
    assert extract_parameters(_hash_on_disk(path, "alice")).time_cost == 1
    assert UserStore.load(path).verify("alice", "pw") is not None


def test_rehash_is_skipped_when_the_password_changed_meanwhile(path: Path) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    UserStore.load(path, missing_ok=True, hasher=old).add("alice", "pw")
    stale = UserStore.load(path, hasher=cheap_hasher(), watch=False)
    UserStore.load(path, hasher=old).set_password("alice", "new")  # another process
    assert stale.verify("alice", "pw") is not None  # its snapshot still has the old hash
    fresh = UserStore.load(path, hasher=cheap_hasher(), rehash_on_login=False)
    assert fresh.verify("alice", "new") is not None
    assert fresh.verify("alice", "pw") is None


def test_no_rehash_when_disabled(path: Path) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    UserStore.load(path, missing_ok=True, hasher=old).add("alice", "pw")
    before = path.read_bytes()
    store = UserStore.load(path, hasher=cheap_hasher(), rehash_on_login=False)
    assert store.verify("alice", "pw") is not None
    assert path.read_bytes() == before


def _hash_on_disk(path: Path, name: str) -> str:
    found = UserStore.load(path).snapshot.password_hash(name)
    assert found is not None
    return found


# -- CLI password input (the subprocess round trip is in tests/e2e/test_users_cli.py) ----------


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def prompts(*answers: str) -> Any:
    queue = list(answers)
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return queue.pop(0)

    prompt.asked = asked  # type: ignore[attr-defined]
    return prompt


@pytest.mark.parametrize(
    ("stdin", "password"),
    [("pw\n", "pw"), ("pw", "pw"), (" p w \n", " p w "), ("pw\r\n", "pw"), ("a\nb\n", "a")],
)
def test_password_from_a_pipe_strips_only_the_line_ending(stdin: str, password: str) -> None:
    assert users_cli.read_password(io.StringIO(stdin)) == password


def test_password_from_a_tty_is_asked_twice() -> None:
    prompt = prompts("secret", "secret")
    assert users_cli.read_password(FakeTty(), prompt) == "secret"
    assert prompt.asked == ["Password: ", "Repeat password: "]


@pytest.mark.parametrize(
    ("stdin", "answers", "message"),
    [
        (FakeTty(), ("secret", "secrte"), "passwords do not match"),
        (FakeTty(), ("", ""), "empty password"),
        (io.StringIO("\n"), (), "empty password"),
        (io.StringIO(""), (), "empty password"),
    ],
)
def test_bad_password_input(stdin: io.StringIO, answers: tuple[str, ...], message: str) -> None:
    with pytest.raises(users_cli.PasswordInputError, match=message):
        users_cli.read_password(stdin, prompts(*answers))


def _args(*argv: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    users_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["users", *argv])


def test_cli_mismatched_prompts_exit_2_and_write_nothing(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = users_cli.cmd_users(
        _args("add", "--file", str(path), "alice"), stdin=FakeTty(), prompt=prompts("a", "b")
    )
    assert code == 2
    assert capsys.readouterr().err == "aionet: passwords do not match\n"
    assert not path.exists()


def test_cli_write_failure_exits_1_with_one_line(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", replace)
    code = users_cli.cmd_users(_args("add", "--file", str(path), "alice"), stdin=io.StringIO("x\n"))
    assert code == 1
    assert capsys.readouterr().err == f"aionet: cannot write {path}: Permission denied\n"


def test_cli_ctrl_c_at_the_prompt_exits_1_without_a_traceback(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(text: str) -> str:
        raise KeyboardInterrupt

    code = users_cli.cmd_users(
        _args("add", "--file", str(path), "alice"), stdin=FakeTty(), prompt=interrupted
    )
    assert code == 1
    assert capsys.readouterr().err == "\naionet: aborted\n"
    assert not path.exists()


def test_a_users_file_others_may_write_is_refused(path: Path) -> None:
    UserStore(path, hasher=CHEAP).add("alice", "pw")
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by others"):
        UserStore.load(path)
    path.chmod(0o602)
    with pytest.raises(ConfigError, match=r"mode 0602\); chmod 600"):
        UserStore.load(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_users_file_group_or_others_may_read_loads_with_a_warning(path: Path, mode: int) -> None:
    UserStore(path, hasher=CHEAP).add("alice", "pw")
    path.chmod(mode)
    with capture_logs() as logs:
        assert "alice" in UserStore.load(path).snapshot
    warned = [e for e in logs if e["event"] == "users_file_permissions"]
    assert len(warned) == 1 and warned[0]["mode"] == f"{mode:04o}"
    path.chmod(0o600)
    with capture_logs() as logs:
        UserStore.load(path)
    assert not [e for e in logs if e["event"] == "users_file_permissions"]
