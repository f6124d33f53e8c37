"""``aionet users`` in a subprocess: stdin passwords, list without hashes, exit codes 0/1/2.

Runs ``aionet.auth.cli.main`` (the ``users`` command alone) until ``aionet.cli`` wires it in.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aionet.auth import UserStore

RUN_USERS = "import sys; from aionet.auth.cli import main; sys.exit(main(sys.argv[1:]))"


def users(
    tmp_path: Path, *argv: str, stdin: str = "", file: str | None = "users.yaml"
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-c", RUN_USERS, "users", *argv]
    if file is not None:
        args += ["--file", file]
    return subprocess.run(
        args,
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


def verify(path: Path, name: str, password: str) -> bool:
    return UserStore.load(path, rehash_on_login=False).verify(name, password) is not None


def test_add_list_passwd_remove_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    added = users(tmp_path, "add", "alice", "--role", "admin", "--role", "mail", stdin="s3cret\n")
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout == "added user alice (roles: admin, mail)\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert users(tmp_path, "add", "bob", stdin="b0b\n").returncode == 0

    listed = users(tmp_path, "list")
    assert (listed.returncode, listed.stdout) == (0, "alice\tadmin,mail\nbob\t-\n")
    assert "argon2" not in listed.stdout + listed.stderr
    assert "s3cret" not in path.read_text()
    assert verify(path, "alice", "s3cret") and not verify(path, "alice", "s3cret\n")

    changed = users(tmp_path, "passwd", "alice", stdin="n3w\n")
    assert (changed.returncode, changed.stdout) == (0, "changed the password of alice\n")
    assert verify(path, "alice", "n3w") and not verify(path, "alice", "s3cret")
    assert users(tmp_path, "list").stdout.startswith("alice\tadmin,mail\n")  # roles kept

    before = path.read_bytes()
    refused = users(tmp_path, "add", "alice", "--role", "ftp", stdin="again\n")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "user 'alice' exists" in refused.stderr and "passwd alice" in refused.stderr
    assert path.read_bytes() == before
    readd = users(tmp_path, "add", "alice", "--force", "--role", "ftp", stdin="again\n")
    assert readd.stdout == "updated user alice (roles: ftp)\n"
    assert verify(path, "alice", "again")

    removed = users(tmp_path, "remove", "alice")
    assert (removed.returncode, removed.stdout) == (0, "removed user alice\n")
    assert users(tmp_path, "list").stdout == "bob\t-\n"


def test_stdin_password_keeps_spaces_and_drops_only_the_newline(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    assert users(tmp_path, "add", "alice", stdin="  two words \nignored\n").returncode == 0
    assert verify(path, "alice", "  two words ")
    assert not verify(path, "alice", "two words")


def test_unknown_user_is_a_runtime_failure_with_one_line(tmp_path: Path) -> None:
    assert users(tmp_path, "add", "alice", stdin="pw\n").returncode == 0
    before = (tmp_path / "users.yaml").read_bytes()
    for argv in (["passwd", "carol"], ["remove", "carol"]):
        result = users(tmp_path, *argv, stdin="pw\n")
        assert result.returncode == 1
        assert result.stderr == "aionet: no user 'carol' in users.yaml\n"
    assert (tmp_path / "users.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "file", "stdin", "stderr_has"),
    [
        pytest.param([], None, "", "required: ACTION", id="no-action"),
        pytest.param(["add"], "users.yaml", "pw\n", "required: name", id="no-name"),
        pytest.param(["list"], None, "", "required: -f/--file", id="no-file"),
        pytest.param(
            ["add", "alice", "--password", "pw"],
            "users.yaml",
            "",
            "unrecognized arguments: --password pw",
            id="no-password-option",
        ),
        pytest.param(["add", "bad name"], "users.yaml", "pw\n", "invalid user name", id="name"),
        pytest.param(
            ["add", "a", "--role", "x y"], "users.yaml", "pw\n", "invalid role", id="role"
        ),
        pytest.param(["add", "alice"], "users.yaml", "", "aionet: empty password", id="empty-pw"),
        pytest.param(["add", "alice"], "users.yaml", "\n", "aionet: empty password", id="blank-pw"),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(
    tmp_path: Path, argv: list[str], file: str | None, stdin: str, stderr_has: str
) -> None:
    result = users(tmp_path, *argv, stdin=stdin, file=file)
    assert result.returncode == 2
    assert stderr_has in result.stderr
    assert not (tmp_path / "users.yaml").exists()


def test_missing_file_for_list_is_a_config_error(tmp_path: Path) -> None:
    result = users(tmp_path, "list")
    assert result.returncode == 2
    assert result.stderr == "users.yaml:1:1: cannot read users file: no such file\n"


def test_corrupt_file_prints_positioned_issues_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text(
        "users:\n  alice:\n    password_hash: hunter2\n    roles: [a]\n    colour: red\n"
    )
    for argv in (["list"], ["add", "bob"], ["remove", "alice"]):
        result = users(tmp_path, *argv, stdin="pw\n")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "users.yaml:3:20: users.alice.password_hash: not an argon2 hash "
            "(set it with `aionet users passwd`)",
            "users.yaml:5:5: users.alice.colour: unknown key",
        ]
        assert "hunter2" in (tmp_path / "users.yaml").read_text()  # left alone
