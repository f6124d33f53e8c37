"""``aionet run --reload``: a handler author edits the handler module and the server restarts
with the new code; a config that stops validating waits for the next edit."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

HANDLER = """
from aionet import Connection, StreamHandler

class Hello(StreamHandler):
    async def handle(self, conn: Connection) -> None:
        conn.writer.write(b"{word}\\n")
        await conn.writer.drain()
"""


def _greeting(addr: tuple[str, int]) -> bytes:
    with socket.create_connection(addr, timeout=5) as s:
        return s.recv(100)


def _started(d: Any, after: int) -> tuple[str, int]:
    """The address of the first listener_started logged after the ``after``-th log line."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for entry in d.logs[after:]:
            if entry.get("event") == "listener_started":
                host, port = entry["address"].rsplit(":", 1)
                return host, int(port)
        time.sleep(0.05)
    raise AssertionError(f"no restart; rc={d.proc.poll()}; log: {''.join(d.lines[-10:])}")


def test_an_edited_handler_is_served_after_a_restart(daemon: Any, tmp_path: Path) -> None:
    (tmp_path / "hello_mod.py").write_text(HANDLER.format(word="one"))
    config = "listeners: [{name: h, protocol: 'hello_mod:Hello', bind: '127.0.0.1:0'}]\n"
    d = daemon(config, "--reload")
    assert _greeting(_started(d, 0)) == b"one\n"
    seen = len(d.logs)
    time.sleep(0.05)  # a new mtime even on a coarse clock
    (tmp_path / "hello_mod.py").write_text(HANDLER.format(word="two"))
    os.utime(tmp_path / "hello_mod.py")
    assert _greeting(_started(d, seen)) == b"two\n"
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(20) == 0
