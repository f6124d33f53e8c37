"""``aionet run --workers N``: SO_REUSEPORT workers under a supervisor."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aionet.admin.app import hash_token
from tests.conftest import Daemon
from tests.waiting import poll_until

TOKEN = "workers-test-token"


def config(tmp_path: Path) -> str:
    return (
        f"server: {{data_dir: '{tmp_path / 'var'}', shutdown_timeout: 5s}}\n"
        "logging: {level: info}\n"
        "listeners:\n"
        "  - {name: echo, protocol: echo, bind: '127.0.0.1:0'}\n"
        "  - {name: udp, protocol: udp-echo, bind: '127.0.0.1:0'}\n"
        "  - {name: admin, protocol: admin, bind: '127.0.0.1:0', options: {tokens: [\n"
        f"      {{name: t, role: admin, sha256: {hash_token(TOKEN)}}}]}}}}\n"
    )


def ports(d: Daemon) -> dict[str, int]:
    return {str(k): int(v) for k, v in d.wait_for("supervisor_started")["ports"].items()}


def pids_answering(url: str, tries: int = 40) -> set[int]:
    seen: set[int] = set()
    for _ in range(tries):  # a new connection each time: SO_REUSEPORT spreads them
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            seen.add(client.get(url, timeout=5).json()["pid"])
        if len(seen) > 1:
            break
    return seen


def test_two_workers_serve_merge_metrics_restart_and_drain(daemon: Any, tmp_path: Path) -> None:
    d: Daemon = daemon(config(tmp_path), "--workers", "2")
    port = ports(d)
    ready = d.wait_for("workers_ready", timeout=20)
    assert len(ready["pids"]) == 2 and os.getpid() not in ready["pids"]
    admin = f"http://127.0.0.1:{port['admin']}"
    # Both workers answer on the one port.
    assert pids_answering(admin + "/connections") == set(ready["pids"])
    # TCP and UDP on their shared ports.
    for _ in range(6):
        with socket.create_connection(("127.0.0.1", port["echo"]), timeout=5) as s:
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"dgram", ("127.0.0.1", port["udp"]))
        assert u.recv(10) == b"dgram"

    # /metrics adds up every worker's counters (published each second).
    def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(admin + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    accepted = ("aionet_connections_accepted_total", (("listener", "echo"),))
    scraped: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    def published() -> bool:  # whichever worker answers, once it has the other's counts
        scraped.append(metrics())
        return scraped[-1].get(accepted) == 6

    poll_until(published, 10, what="both workers' counts published")
    samples = scraped[-1]
    assert samples[("aionet_workers", ())] == 2
    assert samples[accepted] == 6
    # A killed worker is replaced.
    victim = ready["pids"][0]
    os.kill(victim, signal.SIGKILL)
    exited = d.wait_for("worker_exited", pid=victim)
    assert exited["exit_code"] == -signal.SIGKILL

    def replacements() -> list[dict[str, Any]]:
        return [
            e
            for e in list(d.logs)
            if e.get("event") == "worker_started"
            and e["worker"] == exited["worker"]
            and e["pid"] != victim
        ]

    poll_until(replacements, 10, what="a replacement worker started")
    restarted = replacements()[0]
    poll_until(
        lambda: restarted["pid"] in pids_answering(admin + "/connections", 10),
        10,
        what="the replacement worker answering",
    )
    # SIGTERM: both drain, the supervisor exits 0.
    held = socket.create_connection(("127.0.0.1", port["echo"]), timeout=5)
    held.sendall(b"first")  # accepted by a worker (not waiting in the backlog) before SIGTERM
    assert held.recv(5) == b"first"
    d.send_signal(signal.SIGTERM)
    for worker in (0, 1):  # both are draining
        d.wait_for("shutdown_started", worker=worker)
    held.sendall(b"still")  # a connection accepted before SIGTERM is served during the drain
    assert held.recv(5) == b"still"
    held.close()
    assert d.wait(20) == 0
    stopped = [e for e in d.logs if e.get("event") == "shutdown_complete"]
    assert sorted(e["worker"] for e in stopped) == [0, 1]
    assert d.wait_for("supervisor_stopped")["workers"] == {"0": 0, "1": 0}


def test_a_worker_that_cannot_start_stops_the_supervisor(daemon: Any, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: the workers cannot bind it
    taken.listen()
    try:
        text = (
            "logging: {level: info}\n"
            "listeners:\n"
            f"  - {{name: echo, protocol: echo, bind: '127.0.0.1:{taken.getsockname()[1]}'}}\n"
        )
        d: Daemon = daemon(text, "--workers", "2")
        assert d.wait(20) != 0
        assert "worker_failed_to_start" in "".join(d.lines)
    finally:
        taken.close()


def test_unix_listeners_are_refused_with_several_workers(tmp_path: Path) -> None:
    from tests.conftest import run_aionet

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"listeners:\n  - {{name: u, protocol: echo, bind: 'unix:{tmp_path}/s'}}\n")
    result = run_aionet("run", "-c", str(cfg), "--workers", "2")
    assert result.returncode == 2
    assert "unix-socket listeners cannot be shared" in result.stderr
