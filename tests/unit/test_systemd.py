"""sd_notify without libsystemd: addresses, message format, no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from aionet.core.systemd import Notifier, monotonic_usec


def _receive(sock: socket.socket) -> dict[str, str]:
    sock.settimeout(5)
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_path_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "n.sock"))
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "n.sock")})
        assert notifier.enabled
        assert notifier.ready("serving 3 listeners")
        assert _receive(sock) == {
            "READY": "1",
            "STATUS": "serving 3 listeners",
            "MAINPID": str(os.getpid()),
        }
        assert notifier.stopping()
        assert _receive(sock) == {"STOPPING": "1", "STATUS": "draining"}


def test_abstract_socket_and_reloading_timestamp() -> None:
    name = f"aionet-unit-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        before = monotonic_usec()
        assert notifier.reloading()
        message = _receive(sock)
        assert message["RELOADING"] == "1"
        assert before <= int(message["MONOTONIC_USEC"]) <= monotonic_usec()
    assert abs(monotonic_usec() - time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6) < 1e5


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_no_usable_socket_is_a_no_op(value: str | None) -> None:
    notifier = Notifier.from_env({} if value is None else {"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    assert notifier.ready("x") is False


def test_unreachable_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.stopping() is False  # dropped, never raised
