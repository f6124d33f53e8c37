"""RLIMIT_NOFILE at start: what the caps need, raising soft then hard, one clear warning."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from aionet.config.models import Config
from aionet.core.preflight import load_config_text
from aionet.core.server import _fds
from aionet.core.server._fds import FD_HEADROOM, ensure_fd_limit, fds_needed


def config(server_limits: str, *listeners: tuple[str, str]) -> Config:
    lines = [f"server:\n  limits: {server_limits}", "listeners:"]
    for i, (protocol, limits) in enumerate(listeners):
        lines.append(
            f"  - {{name: l{i}, protocol: {protocol}, bind: '127.0.0.1:{7000 + i}', "
            f"limits: {limits}}}"
        )
    return load_config_text("\n".join(lines) + "\n", "c.yaml", {})


def test_need_is_the_server_cap_or_the_lower_sum_of_listener_caps() -> None:
    extra = FD_HEADROOM + 2 * 2
    both = config("{max_connections: 100000}", ("echo", "{}"), ("echo", "{}"))
    assert fds_needed(both) == 100_000 + extra
    capped = config(
        "{max_connections: 100000}",
        ("echo", "{max_connections: 10}"),
        ("echo", "{max_connections: 20}"),
    )
    assert fds_needed(capped) == 30 + extra
    ftp = config(
        "{max_connections: null}",
        ("ftp", "{max_connections: 10}"),
        ("echo", "{max_connections: 5}"),
    )
    assert fds_needed(ftp) == 35 + extra  # control, passive listener, data
    assert fds_needed(config("{max_connections: null}", ("echo", "{}"))) is None


class FakeLimits:
    """``resource.getrlimit/setrlimit`` for RLIMIT_NOFILE; ``may_raise_hard``: root or not."""

    def __init__(self, soft: int, hard: int, *, may_raise_hard: bool) -> None:
        self.soft, self.hard, self.may_raise_hard = soft, hard, may_raise_hard
        self.calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.calls.append(limits)
        soft, hard = limits
        if soft > hard or (hard > self.hard and not self.may_raise_hard):
            raise ValueError("not allowed to raise maximum limit")
        self.soft, self.hard = soft, hard


@pytest.fixture
def nr_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "nr_open"
    path.write_text("1048576\n")
    monkeypatch.setattr(_fds, "_NR_OPEN", path)
    return path


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeLimits) -> None:
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)


def test_soft_limit_raised_to_the_need_within_the_hard_limit(
    monkeypatch: pytest.MonkeyPatch, nr_open: Path
) -> None:
    fake = FakeLimits(1024, 1 << 20, may_raise_hard=False)
    install(monkeypatch, fake)
    cfg = config("{max_connections: 100000}", ("echo", "{}"))
    with capture_logs() as logs:
        assert ensure_fd_limit(cfg) == fds_needed(cfg)
    assert fake.calls == [(fds_needed(cfg), 1 << 20)]
    assert logs == []


def test_hard_limit_raised_when_allowed_capped_by_nr_open(
    monkeypatch: pytest.MonkeyPatch, nr_open: Path
) -> None:
    fake = FakeLimits(1024, 20_000, may_raise_hard=True)
    install(monkeypatch, fake)
    cfg = config("{max_connections: 100000}", ("echo", "{}"))
    needed = fds_needed(cfg)
    assert needed is not None
    with capture_logs() as logs:
        assert ensure_fd_limit(cfg) == needed
    assert (fake.soft, fake.hard) == (needed, needed)
    assert logs == []
    nr_open.write_text("50000\n")  # the kernel's ceiling is below the need: as far as it goes
    fake = FakeLimits(1024, 20_000, may_raise_hard=True)
    install(monkeypatch, fake)
    with capture_logs() as logs:
        assert ensure_fd_limit(cfg) == 50_000
    [event] = logs
    assert event["event"] == "fd_limit_too_low" and event["limit"] == 50_000


def test_one_clear_warning_when_the_limit_cannot_be_raised(
    monkeypatch: pytest.MonkeyPatch, nr_open: Path
) -> None:
    fake = FakeLimits(1024, 4096, may_raise_hard=False)
    install(monkeypatch, fake)
    cfg = config("{max_connections: 100000}", ("echo", "{}"))
    needed = fds_needed(cfg)
    with capture_logs() as logs:
        assert ensure_fd_limit(cfg) == 4096  # as far as the hard limit allows; serving goes on
    assert fake.soft == 4096
    [event] = logs
    assert event["event"] == "fd_limit_too_low"
    assert event["log_level"] == "warning"
    assert (event["limit"], event["hard_limit"], event["needed"]) == (4096, 4096, needed)
    assert f"ulimit -n {needed}" in event["fix"] and f"LimitNOFILE={needed}" in event["fix"]


def test_enough_already_or_no_cap(monkeypatch: pytest.MonkeyPatch, nr_open: Path) -> None:
    fake = FakeLimits(200_000, 200_000, may_raise_hard=False)
    install(monkeypatch, fake)
    with capture_logs() as logs:
        ensure_fd_limit(config("{max_connections: 100000}", ("echo", "{}")))
    assert fake.calls == [] and logs == []
    fake = FakeLimits(1024, 8192, may_raise_hard=False)
    install(monkeypatch, fake)
    with capture_logs() as logs:  # nothing bounds the connections: all the hard limit allows
        assert ensure_fd_limit(config("{max_connections: null}", ("echo", "{}"))) == 8192
    assert fake.calls == [(8192, 8192)] and logs == []
