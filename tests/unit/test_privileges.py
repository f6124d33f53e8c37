"""The identity side of ``aionet run``: resolving accounts, the root policy, the drop itself."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aionet.config.models import Config
from aionet.core import privileges
from aionet.core.preflight import load_config_text
from aionet.core.privileges import Daemon, PidFile, PrivilegeError, resolve
from aionet.errors import ConfigError, StartupError


def _config(server: str) -> Config:
    return load_config_text(f"server: {server}\n", "c.yaml")


def test_resolve_by_name_and_by_number() -> None:
    nobody = pwd.getpwnam("nobody")
    by_name = resolve("nobody")
    assert (by_name.uid, by_name.gid) == (nobody.pw_uid, nobody.pw_gid)
    assert by_name.groups == tuple(sorted(set(os.getgrouplist("nobody", nobody.pw_gid))))
    assert resolve(nobody.pw_uid) == by_name
    assert resolve(str(nobody.pw_uid)) == by_name
    assert resolve("nobody", 4242).gid == 4242


def test_resolve_refusals() -> None:
    with pytest.raises(PrivilegeError, match="no such user 'no-such-aionet-user'"):
        resolve("no-such-aionet-user")
    with pytest.raises(PrivilegeError, match="no such group 'no-such-aionet-group'"):
        resolve("nobody", "no-such-aionet-group")
    with pytest.raises(PrivilegeError, match=r"uid 4242 has no passwd entry; set server\.group"):
        resolve(4242)
    assert resolve(4242, 4343).groups == (4343,)  # a bare uid: containers
    with pytest.raises(PrivilegeError, match="drops nothing"):
        resolve("root")


def test_config_shape() -> None:
    config = load_config_text("server: {user: 65534, group: nogroup, pid_file: /run/a.pid}\n")
    assert (config.server.user, config.server.group) == (65534, "nogroup")
    assert config.server.allow_root is False
    with pytest.raises(ConfigError, match=r"c.yaml:1:9: server: .*server.group needs server.user"):
        load_config_text("server: {group: nogroup}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"server\.user: .*must not be negative"):
        load_config_text("server: {user: -1}\n")


def test_switching_user_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(privileges.os, "getuid", lambda: 1000)
    with pytest.raises(PrivilegeError, match=r"switching to .nobody. needs root.*uid 1000"):
        Daemon.prepare(_config("{user: nobody}"))
    # Not root, no user: nothing to decide.
    assert Daemon.prepare(_config("{}")).identity is None


def test_already_the_configured_user_drops_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(privileges.os, "geteuid", lambda: nobody.pw_uid)
    monkeypatch.setattr(privileges.os, "getuid", lambda: nobody.pw_uid)
    monkeypatch.setattr(privileges.os, "getgid", lambda: nobody.pw_gid)
    assert Daemon.prepare(_config("{user: nobody}")).identity is None


def test_root_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 0)
    with pytest.raises(PrivilegeError, match="refusing to serve as root"):
        Daemon.prepare(_config("{}"))
    assert Daemon.prepare(_config("{allow_root: true}")).as_root
    assert Daemon.prepare(_config("{}"), allow_root=True).as_root
    assert Daemon.prepare(_config("{user: nobody}")).identity is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_drop_clears_supplementary_groups_and_root_cannot_come_back() -> None:
    code = textwrap.dedent("""
        import os
        from aionet.core.privileges import drop_privileges, resolve
        os.setgroups([0, 4, 27])
        ident = resolve("nobody")
        drop_privileges(ident)
        assert os.getresuid() == (ident.uid,) * 3, os.getresuid()
        assert os.getresgid() == (ident.gid,) * 3, os.getresgid()
        assert sorted(os.getgroups()) == sorted(ident.groups), os.getgroups()
        for regain in (lambda: os.setuid(0), lambda: os.seteuid(0), lambda: os.setgid(0),
                       lambda: os.setgroups([0])):
            try:
                regain()
            except PermissionError:
                continue
            raise SystemExit("regained root")
        print("dropped")
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd="/"
    )
    assert result.stdout == "dropped\n", result.stderr


def test_pid_file_check_write_remove(tmp_path: Path) -> None:
    path = tmp_path / "a.pid"
    pid_file = PidFile(path)
    pid_file.check()
    assert pid_file.stale is None
    pid_file.write()
    assert path.read_text() == f"{os.getpid()}\n"
    PidFile(path).check()  # our own pid (a container's pid 1 again) is stale, not live
    path.write_text("12345678\n")  # someone else's now: not ours to remove
    pid_file.remove()
    assert path.exists()
    pid_file.written = True
    path.write_text(f"{os.getpid()}\n")
    pid_file.remove()
    assert not path.exists()


def test_pid_file_unreadable_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "dir.pid").mkdir()
    with pytest.raises(StartupError, match="cannot read"):
        PidFile(tmp_path / "dir.pid").check()
