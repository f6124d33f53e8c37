"""Shared fixtures: the ``aionet run`` subprocess driver and small socket helpers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The suite runs as root in CI, and `aionet run` refuses root unless the config drops to
# `server.user` or allows root: every daemon the tests start may run as root (the tests of
# the refusal itself clear this variable).
os.environ.setdefault("AIONET_ALLOW_ROOT", "1")
EXAMPLES = ROOT / "examples"

#: The Debian package of each client program a ``tool`` marker names (``.ci/run`` installs
#: them; a developer without one sees which package to install in the skip reason).
TOOL_PACKAGES = {
    "dig": "dnsutils",
    "mbsync": "isync",
    "offlineimap": "offlineimap3",
    "getmail": "getmail6",
    "nc": "netcat-openbsd",
    "nghttp": "nghttp2-client",
    "h2load": "nghttp2-client",
    "chromium": "chromium",
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.tool("name")``: skip with the package to install when ``name`` is not
    on PATH — the marker does it, so no test has to remember to."""
    for marker in item.iter_markers("tool"):
        name = marker.args[0]
        if shutil.which(name) is None:
            package = TOOL_PACKAGES.get(name, name)
            pytest.skip(f"{name} is not installed (Debian package: {package})")


class Daemon:
    """``python -m aionet run`` in a subprocess; its JSON log lines are parsed as they come."""

    def __init__(
        self, config: str | None, tmp_path: Path, *args: str, env: dict[str, str] | None = None
    ):
        self.tmp_path = tmp_path
        argv = [sys.executable, "-m", "aionet", "run", "--log-format", "json", *args]
        if config is not None:
            path = tmp_path / "aionet.yaml"
            path.write_text(config)
            argv[4:4] = ["-c", str(path)]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.logs: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                with contextlib.suppress(ValueError):
                    self.logs.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, event: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first log entry with this event (and matching fields); fails on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for entry in self.logs:
                    if entry.get("event") == event and all(
                        entry.get(k) == v for k, v in match.items()
                    ):
                        return entry
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no {event} {match} in the log; rc={self.proc.poll()}; "
                        f"stderr:\n{''.join(self.lines)[-3000:]}"
                    )
                self._cond.wait(min(left, 0.1))

    def address(self, listener: str, transport: str = "tcp") -> tuple[str, int]:
        entry = self.wait_for("listener_started", listener=listener, transport=transport)
        host, _, port = entry["address"].rpartition(":")
        return host.strip("[]"), int(port)

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout)
        self._close()
        return rc

    def _close(self) -> None:
        self._reader.join(5)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``daemon(config_text, *args)`` starts ``aionet run``; all are stopped after."""
    started: list[Daemon] = []

    def start(config: str | None, *args: str, env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(config, tmp_path, *args, env=env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def run_aionet(
    *args: str,
    cwd: Path | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aionet ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "aionet", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
