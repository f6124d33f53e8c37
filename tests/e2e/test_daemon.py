"""``aionet run`` / ``check`` / ``version`` as subprocesses, the way README starts them."""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import EXAMPLES, run_aionet
from tests.waiting import poll_until

GREET_PATH = {"PYTHONPATH": str(EXAMPLES / "greet-plugin")}


def greet_config(shutdown_timeout: str = "5s", extra: str = "") -> str:
    return f"""
server:
  data_dir: ./var
  shutdown_timeout: {shutdown_timeout}
listeners:
  - name: greet
    protocol: "aionet_greet:Greet"
    bind: 127.0.0.1:0
    options: {{greeting: hi}}
{extra}"""


def talk(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    return sock.recv(1000)


def test_sigterm_lets_a_connection_in_use_finish_then_exits_0(daemon: Any) -> None:
    d = daemon(greet_config("10s"), env=GREET_PATH)
    addr = d.address("greet")
    with socket.create_connection(addr, timeout=5) as s:
        assert talk(s, b"one\n") == b"hi one\r\n"
        d.send_signal(signal.SIGTERM)
        d.wait_for("shutdown_started")
        # New connections are no longer accepted...
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(addr, timeout=2)
        # ...but the session in progress carries on until it ends by itself.
        assert talk(s, b"two\n") == b"hi two\r\n"
        started = time.monotonic()
        assert talk(s, b"quit\n") == b"bye\r\n"
    assert d.wait(10) == 0
    assert time.monotonic() - started < 5, "exit should follow the last connection, not the timeout"
    d.wait_for("shutdown_complete")


def test_sigterm_aborts_what_is_left_at_shutdown_timeout(daemon: Any) -> None:
    d = daemon(greet_config("1s"), env=GREET_PATH)
    addr = d.address("greet")
    with socket.create_connection(addr, timeout=5) as s:
        assert talk(s, b"x\n") == b"hi x\r\n"
        started = time.monotonic()
        d.send_signal(signal.SIGTERM)
        assert d.wait(10) == 0
        assert 0.9 <= time.monotonic() - started < 6
        assert s.recv(100) == b""  # aborted by the server
    entry = d.wait_for("shutdown_aborted_connections")
    assert entry["aborted"] == 1


def test_second_sigint_forces_exit(daemon: Any) -> None:
    d = daemon(greet_config("60s"), env=GREET_PATH)
    addr = d.address("greet")
    with socket.create_connection(addr, timeout=5) as s:
        assert talk(s, b"x\n") == b"hi x\r\n"
        d.send_signal(signal.SIGINT)
        d.wait_for("shutdown_started")
        started = time.monotonic()
        d.send_signal(signal.SIGINT)
        assert d.wait(10) == 1
        assert time.monotonic() - started < 5


def test_bind_failure_names_the_listener_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(f"""
server: {{data_dir: {tmp_path}/var}}
listeners:
  - {{name: first, protocol: echo, bind: "127.0.0.1:0"}}
  - {{name: clash, protocol: echo, bind: "127.0.0.1:{port}"}}
""")
        result = run_aionet("run", "-c", str(config), "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"aionet: listener 'clash' (tcp 127.0.0.1:{port}): cannot bind: Address already in use"
    )
    assert "Traceback" not in result.stderr


async def test_bind_failure_leaves_nothing_bound(tmp_path: Path) -> None:
    from aionet.errors import StartupError
    from aionet.testing import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # Chosen while `taken` holds its port, so the kernel cannot hand out the same one twice.
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            first_port = free.getsockname()[1]
        config = {
            "listeners": [
                {"name": "first", "protocol": "echo", "bind": f"127.0.0.1:{first_port}"},
                {"name": "u", "protocol": "udp-echo", "bind": f"127.0.0.1:{first_port}"},
                {
                    "name": "clash",
                    "protocol": "echo",
                    "bind": f"127.0.0.1:{taken.getsockname()[1]}",
                },
            ]
        }
        with pytest.raises(StartupError, match="listener 'clash'"):
            async with serve(config, data_dir=tmp_path):
                pass
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):  # both released: we can bind them
        with socket.socket(socket.AF_INET, kind) as again:
            again.bind(("127.0.0.1", first_port))


def test_check_reports_every_error_with_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "server:\n"
        "  shutdown_timeout: forever\n"
        "listeners:\n"
        "  - name: e\n"
        "    protocol: echo\n"
        "    bind: 127.0.0.1:99999\n"
        "    colour: red\n"
    )
    result = run_aionet("check", "-c", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{bad}:2:21: server.shutdown_timeout: expected a duration like 250ms, 10s, 5m; "
        "got 'forever'",
        f"{bad}:6:11: listeners[0].bind: port must be a number from 0 to 65535; got '99999'",
        f"{bad}:7:5: listeners[0].colour: unknown key",
    ]
    assert result.stdout == ""


def test_check_accepts_a_valid_file_without_binding(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    with socket.socket() as taken:  # the port is busy: check must not try to bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        good.write_text(
            f"listeners:\n  - {{name: e, protocol: echo, "
            f"bind: '127.0.0.1:{taken.getsockname()[1]}'}}\n"
        )
        result = run_aionet("check", "-c", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{good}: ok (1 listener)"


def test_run_with_invalid_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners: [{name: e, protocol: nope, bind: '127.0.0.1:0'}]\n")
    result = run_aionet("run", "-c", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:1:33: listeners[0].protocol: unknown protocol 'nope'")


def test_usage_error_exits_2() -> None:
    result = run_aionet("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_version_lists_loop_and_dependencies() -> None:
    result = run_aionet("version")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names[:4] == ["aionet", "python", "platform", "uvloop"]
    assert "structlog" in names


def test_handler_that_raises_is_logged_and_the_server_carries_on(daemon: Any) -> None:
    d = daemon(greet_config(), env=GREET_PATH)
    addr = d.address("greet")
    with (
        socket.create_connection(addr, timeout=5) as healthy,
        socket.create_connection(addr, timeout=5) as doomed,
    ):
        assert talk(healthy, b"a\n") == b"hi a\r\n"
        doomed.sendall(b"crash\n")
        assert doomed.recv(100) == b""  # closed by the core
        error = d.wait_for("handler_error")
        assert "RuntimeError: the client asked for a crash" in error["exception"]
        assert error["listener"] == "greet" and "conn_id" in error
        assert talk(healthy, b"b\n") == b"hi b\r\n"
    with socket.create_connection(addr, timeout=5) as later:
        assert talk(later, b"c\n") == b"hi c\r\n"


def test_connection_events_are_json_lines_with_context(daemon: Any) -> None:
    d = daemon(greet_config(), "--log-level", "debug", env=GREET_PATH)
    addr = d.address("greet")
    with socket.create_connection(addr, timeout=5) as s:
        assert talk(s, b"q\n") == b"hi q\r\n"
    opened = d.wait_for("connection_opened")
    closed = d.wait_for("connection_closed")
    assert opened["conn_id"] == closed["conn_id"]
    assert closed["bytes_in"] == 2 and closed["bytes_out"] == 6
    assert closed["duration"] >= 0 and closed["listener"] == "greet"
    assert d.wait_for("greet_session_started")["conn_id"] == opened["conn_id"]


DOCUMENTED = {
    ("echo", "tcp"): 7007,
    ("udp-echo", "udp"): 7007,
    ("http", "tcp"): 8080,
    ("dns", "udp"): 8053,
    ("dns", "tcp"): 8053,
    ("admin", "tcp"): 9090,
    ("smtp", "tcp"): 8025,
    ("pop3", "tcp"): 8110,
    ("imap", "tcp"): 8143,
    ("ftp", "tcp"): 8021,
}


def test_the_default_config_binds_the_documented_ports() -> None:
    from aionet.core.preflight import load_config

    config = load_config(None)  # the embedded default
    binds = {lc.name: (lc.bind.host, lc.bind.port) for lc in config.listeners}
    assert binds == {name: ("127.0.0.1", port) for (name, _), port in DOCUMENTED.items()}


def test_default_config_runs_the_documented_listeners(daemon: Any, tmp_path: Path) -> None:
    """The embedded default as it is, but on ephemeral ports: the suite never binds a fixed
    port (a developer may have aionet running on the default ones)."""
    from aionet.config.loader import default_config_text

    text = default_config_text()
    for port in set(DOCUMENTED.values()):
        text = text.replace(f":{port}", ":0")
    (tmp_path / "default.yaml").write_text(text.replace('"50000-50099"', '"0"'))
    d = daemon(None, "-c", str(tmp_path / "default.yaml"))
    addr = {key: d.address(*key) for key in DOCUMENTED}
    assert {host for host, _ in addr.values()} == {"127.0.0.1"}
    with socket.create_connection(addr["ftp", "tcp"], timeout=5) as s:
        assert s.recv(100).startswith(b"220 ")
    with socket.create_connection(addr["echo", "tcp"], timeout=5) as s:
        assert talk(s, b"default\n") == b"default\n"
    # The sample zone, as README's dig example asks it, over UDP and TCP.
    query = dns.message.make_query("www.aionet.test", "A")
    for ask, transport in ((dns.query.udp, "udp"), (dns.query.tcp, "tcp")):
        reply = ask(query, "127.0.0.1", port=addr["dns", transport][1], timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert [r.to_text() for r in reply.answer[0]] == ["127.0.0.1"]
    with socket.create_connection(addr["http", "tcp"], timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200 OK\r\n")
    for path, status in ((b"/readyz", b"200"), (b"/metrics", b"401")):
        with socket.create_connection(addr["admin", "tcp"], timeout=5) as s:
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 " + status)
    assert (tmp_path / "var").is_dir()  # data_dir: ./var beside the config file


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_out_of_file_descriptors_backs_off_and_recovers(daemon: Any, loop: str) -> None:
    d = daemon(greet_config(), "--loop", loop, env=GREET_PATH)
    addr = d.address("greet")
    open_fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
    resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (open_fds + 10, open_fds + 10))
    clients = [socket.create_connection(addr, timeout=5) for _ in range(20)]
    try:
        d.wait_for("accept_out_of_resources")
        before = cpu_seconds(d.proc.pid)
        time.sleep(1.0)  # part of the test: the CPU it uses in one second, out of descriptors
        assert cpu_seconds(d.proc.pid) - before < 0.5, "the accept loop is spinning"
        served = 0
        for c in clients:
            c.settimeout(0.2)
            try:
                if talk(c, b"x\n") == b"hi x\r\n":
                    served += 1
            except (TimeoutError, ConnectionError):
                pass
        assert 0 < served < 20  # some got in, the rest wait in the backlog
    finally:
        for c in clients:
            c.close()

    # Once descriptors are free again, new connections are served.
    def served_again() -> bool:
        try:
            with socket.create_connection(addr, timeout=2) as s:
                return talk(s, b"again\n") == b"hi again\r\n"
        except (TimeoutError, ConnectionError):
            return False

    poll_until(served_again, 10, what="the listener recovering")
    assert d.proc.poll() is None


def test_corrupt_users_file_fails_start_up_with_its_position(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  bob:\n    password_hash: nope\n    roles: [admin]\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"auth: {{users_file: {users}}}\n"
        "listeners: [{name: e, protocol: echo, bind: '127.0.0.1:0'}]\n"
    )
    result = run_aionet("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{users}:3:20: users.bob.password_hash: ")


async def test_server_offers_the_portal_to_handlers(tmp_path: Path) -> None:
    from aionet.auth import Credentials
    from aionet.testing import serve

    users = tmp_path / "users.yaml"
    added = run_aionet(
        "users", "add", "--file", str(users), "alice", "--role", "relay", input="s3cret\n"
    )
    assert added.returncode == 0, added.stderr
    config = {
        "auth": {"users_file": str(users)},
        "listeners": [{"name": "e", "protocol": "echo", "bind": "127.0.0.1:0"}],
    }
    async with serve(config, data_dir=tmp_path) as server:
        portal = server.handlers["e"].services.portal
        assert portal is not None
        user = await portal.authenticate(Credentials("alice", "s3cret"), "test", "127.0.0.1")
        assert user is not None and user.has_role("relay")
        assert await portal.authenticate(Credentials("alice", "wrong"), "test", "127.0.0.1") is None


async def test_users_reload_keeps_the_old_store_when_the_file_breaks(tmp_path: Path) -> None:
    from aionet.testing import serve

    users = tmp_path / "users.yaml"
    assert run_aionet("users", "add", "--file", str(users), "ann", input="pw\n").returncode == 0
    config = {
        "auth": {"users_file": str(users)},
        "listeners": [{"name": "e", "protocol": "echo", "bind": "127.0.0.1:0"}],
    }
    async with serve(config, data_dir=tmp_path) as server:
        assert server.users is not None
        assert run_aionet("users", "add", "--file", str(users), "ben", input="pw\n").returncode == 0
        assert server.reload_users() is True
        assert server.users.get("ben") is not None
        users.write_text("users: [not, a, mapping]\n")
        assert server.reload_users() is False
        assert server.users.get("ann") is not None and server.users.get("ben") is not None
