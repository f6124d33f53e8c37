"""Privilege drop, the root policy and the pid file, on a real ``aionet run``.

The drop tests need root (CI runs as root) and a ``nobody`` account; they skip otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_aionet

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to bind and drop)")
NO_ROOT_ENV = {"AIONET_ALLOW_ROOT": ""}


def _nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' account")


def _free_privileged_port() -> int:
    for port in range(700, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory ``nobody`` can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="aionet-ops-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _status_ids(pid: int) -> dict[str, list[int]]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(v) for v in value.split()]
    return out


def _ask(addr: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(addr, timeout=5) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@ROOT_ONLY
def test_binds_a_privileged_port_as_root_then_serves_as_nobody(daemon: Any, open_dir: Path) -> None:
    nobody = _nobody()
    port = _free_privileged_port()
    data_dir = open_dir / "data"  # created by aionet, so chowned to the user
    config = open_dir / "aionet.yaml"  # readable by nobody: reloads re-read it
    text = f"""
server: {{data_dir: {data_dir}, user: nobody}}
listeners:
  - {{name: scribe, protocol: "tests.e2e.ops_handlers:Scribe", bind: "127.0.0.1:{port}"}}
  - {{name: web, protocol: http, bind: "127.0.0.1:0"}}
"""
    config.write_text(text)
    d = daemon(None, "-c", str(config), env=NO_ROOT_ENV)
    dropped = d.wait_for("privileges_dropped")
    assert (dropped["uid"], dropped["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    assert d.address("scribe") == ("127.0.0.1", port)
    ids = _status_ids(d.proc.pid)
    assert ids["Uid"] == [nobody.pw_uid] * 4  # real, effective, saved, filesystem
    assert ids["Gid"] == [nobody.pw_gid] * 4
    assert 0 not in ids["Groups"]
    # Handlers started after the drop: the file start() wrote belongs to nobody.
    started = data_dir / "started"
    assert started.read_text() == f"{nobody.pw_uid} {nobody.pw_gid}\n"
    assert started.stat().st_uid == nobody.pw_uid
    assert data_dir.stat().st_uid == nobody.pw_uid
    # It still serves, and writes its data files as nobody.
    assert _ask(("127.0.0.1", port), b"one\ntwo\n") == (
        f"ok {nobody.pw_uid} {nobody.pw_gid}\n".encode() * 2
    )
    assert (data_dir / "lines").read_bytes() == b"one\ntwo\n"
    assert (data_dir / "lines").stat().st_uid == nobody.pw_uid
    reply = _ask(d.address("web"), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")

    # A reload runs as nobody too: the changed listener's new handler starts as nobody, and a
    # listener added on a port below 1024 cannot bind any more (logged; the rest applies).
    started.unlink()
    other = _free_privileged_port()
    config.write_text(
        text.replace('Scribe",', 'Scribe", limits: {max_connections: 5},')
        + f"  - {{name: late, protocol: echo, bind: '127.0.0.1:{other}'}}\n"
    )
    d.send_signal(signal.SIGHUP)
    reloaded = d.wait_for("config_reloaded")
    assert (reloaded["changed"], reloaded["failed"]) == (["scribe"], ["late"])
    failed = d.wait_for("reload_listener_failed", listener="late")
    assert "Permission denied" in failed["error"]
    assert started.stat().st_uid == nobody.pw_uid
    assert _ask(("127.0.0.1", port), b"three\n") == f"ok {nobody.pw_uid} {nobody.pw_gid}\n".encode()
    d.send_signal(signal.SIGTERM)
    assert d.wait() == 0


@ROOT_ONLY
def test_existing_data_dir_keeps_its_owner(daemon: Any, open_dir: Path) -> None:
    _nobody()
    data_dir = open_dir / "data"
    data_dir.mkdir()
    data_dir.chmod(0o777)
    d = daemon(
        f"""
server: {{data_dir: {data_dir}, user: nobody, group: nogroup}}
listeners: [{{name: e, protocol: echo, bind: "127.0.0.1:0"}}]
""",
        env=NO_ROOT_ENV,
    )
    d.wait_for("privileges_dropped")
    d.wait_for("listener_started")
    assert data_dir.stat().st_uid == 0  # not ours to chown
    d.send_signal(signal.SIGTERM)
    assert d.wait() == 0


@ROOT_ONLY
def test_root_is_refused_without_user_or_allow_root(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text('listeners: [{name: e, protocol: echo, bind: "127.0.0.1:0"}]\n')
    result = run_aionet("run", "-c", str(config), cwd=tmp_path, env=NO_ROOT_ENV)
    assert result.returncode == 2
    assert result.stderr.startswith("aionet: refusing to serve as root: set server.user")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()  # refused before touching anything


@ROOT_ONLY
@pytest.mark.parametrize(
    ("server", "args"),
    [("{allow_root: true}", ()), ("{}", ("--allow-root",))],
    ids=["config", "flag"],
)
def test_root_when_allowed_warns(
    daemon: Any, tmp_path: Path, server: str, args: tuple[str, ...]
) -> None:
    d = daemon(
        f'server: {server}\nlisteners: [{{name: e, protocol: echo, bind: "127.0.0.1:0"}}]\n',
        *args,
        env=NO_ROOT_ENV,
    )
    d.wait_for("running_as_root")
    assert _ask(d.address("e"), b"hi\n") == b"hi\n"


def test_unknown_user_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "server: {user: no-such-user-aionet}\n"
        'listeners: [{name: e, protocol: echo, bind: "127.0.0.1:0"}]\n'
    )
    result = run_aionet("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "aionet: server.user: no such user 'no-such-user-aionet'\n"


# -- pid file ----------------------------------------------------------------------------------

PID_CONFIG = """
server: {{data_dir: ./var, pid_file: {pid_file}}}
listeners: [{{name: e, protocol: echo, bind: "127.0.0.1:0"}}]
"""


def test_pid_file_written_after_bind_and_removed_at_exit(daemon: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "aionet.pid"
    pid_file.parent.mkdir()
    d = daemon(PID_CONFIG.format(pid_file=pid_file))
    d.wait_for("listener_started")
    assert pid_file.read_text() == f"{d.proc.pid}\n"
    assert [p.name for p in pid_file.parent.iterdir()] == ["aionet.pid"]  # no temporary left
    d.send_signal(signal.SIGTERM)
    assert d.wait() == 0
    assert not pid_file.exists()


def test_pid_file_of_a_running_aionet_refuses_a_second_start(daemon: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "aionet.pid"
    first = daemon(PID_CONFIG.format(pid_file=pid_file))
    first.wait_for("listener_started")
    result = run_aionet("run", "-c", str(tmp_path / "aionet.yaml"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"aionet: server.pid_file: {pid_file} names running process {first.proc.pid}; "
        "is aionet already running? (remove the file if it is not)\n"
    )
    assert pid_file.read_text() == f"{first.proc.pid}\n"  # untouched


@pytest.mark.parametrize("stale", ["dead", "not-aionet", "garbage"])
def test_stale_pid_file_is_replaced(daemon: Any, tmp_path: Path, stale: str) -> None:
    pid_file = tmp_path / "aionet.pid"
    other: subprocess.Popen[bytes] | None = None
    if stale == "dead":
        done = subprocess.Popen(["true"])
        done.wait()
        pid_file.write_text(f"{done.pid}\n")
    elif stale == "not-aionet":  # a live process under a reused pid
        other = subprocess.Popen(["sleep", "30"])
        pid_file.write_text(f"{other.pid}\n")
    else:
        pid_file.write_text("not a pid\n")
    try:
        d = daemon(PID_CONFIG.format(pid_file=pid_file))
        d.wait_for("pid_file_stale_replaced")
        d.wait_for("listener_started")
        assert pid_file.read_text() == f"{d.proc.pid}\n"
    finally:
        if other is not None:
            other.kill()
            other.wait()


def test_pid_file_in_a_missing_directory_fails_to_start(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(PID_CONFIG.format(pid_file=tmp_path / "no" / "aionet.pid"))
    result = run_aionet("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "server.pid_file: cannot write" in result.stderr
    assert "No such file or directory" in result.stderr
