"""sd_notify from a real ``aionet run``: READY, RELOADING/READY on SIGHUP, STOPPING on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CONFIG = """
server: {data_dir: ./var, shutdown_timeout: 2s}
listeners:
  - {name: e, protocol: echo, bind: "127.0.0.1:0"}
"""


class NotifySocket:
    """A unix datagram socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name  # the NOTIFY_SOCKET value

    def receive(self, timeout: float = 10.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096)
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def nothing_more(self) -> None:
        self.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            self.sock.recv(4096)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = f"@aionet-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind(b"\0" + name[1:].encode())
    with sock:
        yield NotifySocket(sock, name)


def test_ready_reloading_ready_stopping(
    daemon: Any, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    d = daemon(CONFIG, env={"NOTIFY_SOCKET": notify_socket.name})
    ready = notify_socket.receive()
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(d.proc.pid)
    assert ready["STATUS"] == "serving 1 listeners"
    d.wait_for("listener_started", listener="e")  # READY came once the listener was serving

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.send_signal(signal.SIGHUP)
    reloading = notify_socket.receive()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    again = notify_socket.receive()
    assert again["READY"] == "1"
    assert "config reloaded" in again["STATUS"]
    d.wait_for("config_reloaded")

    (tmp_path / "aionet.yaml").write_text("server: {nonsense: 1}\n")
    d.send_signal(signal.SIGHUP)
    assert notify_socket.receive()["RELOADING"] == "1"
    refused = notify_socket.receive()
    assert refused["READY"] == "1"  # still serving the old config
    assert "reload failed" in refused["STATUS"]

    d.send_signal(signal.SIGTERM)
    stopping = notify_socket.receive()
    assert stopping["STOPPING"] == "1"
    assert d.wait() == 0
    notify_socket.nothing_more()


def test_no_notify_socket_no_messages_and_bad_socket_is_harmless(
    daemon: Any, tmp_path: Path
) -> None:
    # NOTIFY_SOCKET naming nothing: the daemon serves and stops normally.
    d = daemon(CONFIG, env={"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    d.wait_for("listener_started", listener="e")
    d.send_signal(signal.SIGTERM)
    assert d.wait() == 0
