"""``aionet bench`` end to end: measured latencies against known ones, coordinated omission,
merging, ``--fail-on-error``, worker processes and Ctrl-C. Loopback only, short runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aionet.bench import cli as bench_cli
from aionet.bench.result import Result
from aionet.bench.runner import Plan
from aionet.testing import serve
from tests.bench_helpers import bench, fake_server
from tests.http_helpers import http_config
from tests.waiting import poll_until

MS = 1_000_000


async def test_percentiles_match_a_server_that_sleeps_a_known_time(tmp_path: Path) -> None:
    config = http_config(app="tests.apps.raw_apps:slow_path")
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")[:2]
        started = time.perf_counter_ns()
        result = await bench(["http", f"http://{host}:{port}/slow/30"], Plan(2, requests=30))
        wall = time.perf_counter_ns() - started
    assert result.errors == {} and result.requests == 30
    latency = result.latency
    # the server adds 30 ms; the loop, parsing and the test machine add a little on top
    assert latency.percentile(50) >= 30 * MS
    # never less than the server's sleep, give or take the loop's 1 ms timer resolution (a
    # uvloop timer is due against the loop's cached millisecond clock, so it can fire up to
    # 1 ms before 30 ms of wall time have passed)
    assert latency.min >= 29 * MS
    # Nor more than really passed, whatever the machine's load (a fixed cap of 45 ms on the
    # median, 1.5x the server's time, failed on a busy 2-core machine): each connection's
    # requests run one after another, so their latencies add up to at most the run's time...
    assert latency.sum <= 2 * wall
    # ... and the median agrees with that sum: half the requests took at least the median,
    # the other half at least the minimum (+0.5 %: a percentile is its bucket's midpoint).
    assert latency.percentile(50) <= (2 * latency.mean - latency.min) * 1.005


class StallingEcho(asyncio.Protocol):
    """Echoes at once, except that the ``stall_at``-th message waits ``stall`` seconds."""

    seen = 0
    stall_at, stall = 30, 0.4

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        cls = type(self)
        cls.seen += 1
        if cls.seen == cls.stall_at:
            asyncio.get_running_loop().call_later(cls.stall, self.transport.write, data)
        else:
            self.transport.write(data)


async def test_a_stall_shows_in_corrected_but_not_uncorrected_percentiles() -> None:
    StallingEcho.seen = 0
    async with fake_server(StallingEcho) as port:
        plan = Plan(1, rate=100, duration=1.0)  # one request every 10 ms on one connection
        result = await bench(["echo", f"127.0.0.1:{port}", "--size", "16"], plan)
    assert result.uncorrected is not None and result.errors == {}
    # ~40 requests were due during the 400 ms stall: each waited for it, from its intended time
    assert result.latency.percentile(90) > 100 * MS
    assert result.latency.percentile(100) >= 390 * MS
    # measured from the actual send, only the stalled request is slow
    assert result.uncorrected.percentile(90) < 50 * MS
    assert result.uncorrected.percentile(100) >= 390 * MS


def test_merging_two_results_equals_the_counts_of_one_run(tmp_path: Path) -> None:
    async def run_twice() -> tuple[Result, Result]:
        config = {"listeners": [{"name": "e", "protocol": "echo", "bind": "127.0.0.1:0"}]}
        async with serve(config, data_dir=tmp_path) as server:
            host, port = server.address("e")[:2]
            a = await bench(["echo", f"{host}:{port}"], Plan(2, requests=150))
            b = await bench(["echo", f"{host}:{port}"], Plan(3, requests=250))
            return a, b

    a, b = asyncio.run(run_twice())
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    out = tmp_path / "m.json"
    argv = ["merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(out)]
    assert bench_cli.main(argv) == 2  # one after the other: their throughputs do not add up
    assert not out.exists()
    argv.append("--sequential")
    assert bench_cli.main([*argv, "--html", str(tmp_path / "m.html")]) == 0
    merged = Result.load(out)
    assert merged.requests == 400 == a.requests + b.requests
    assert merged.latency.total == 400 and merged.connections == 5 and merged.workers == 2
    both = a.latency.copy()
    both.add(b.latency)
    assert merged.latency == both
    assert sum(req for req, _ in merged.timeline) == 400
    assert "<svg" in (tmp_path / "m.html").read_text()


class _Echo(socketserver.BaseRequestHandler):
    #: Clients that have had at least one message echoed (set.add is atomic: threads).
    echoed: ClassVar[set[Any]] = set()

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.request.recv(65536):
                self.request.sendall(data)
                self.echoed.add(self.client_address)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A threaded echo server (the bench runs in a subprocess, so not in the test's loop)."""
    _Echo.echoed.clear()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "aionet", "bench", *args]


def test_workers_split_the_load_and_merge_exactly(echo_port: int, tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    argv = bench_cmd("echo", f"127.0.0.1:{echo_port}", "-c", "4", "-n", "300", "--workers", "2")
    proc = subprocess.run([*argv, "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = Result.load(out)
    assert result.workers == 2 and result.connections == 4
    assert result.requests == 300 == result.latency.total and result.errors == {}
    assert "requests 300" in proc.stdout


def test_ctrl_c_prints_the_results_so_far(echo_port: int, tmp_path: Path) -> None:
    out = tmp_path / "i.json"
    argv = bench_cmd("echo", f"127.0.0.1:{echo_port}", "-c", "2", "-d", "60s", "--workers", "2")
    proc = subprocess.Popen(
        [*argv, "--warmup", "0s", "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # both spawned workers have imported, connected and had a request answered
    poll_until(lambda: len(_Echo.echoed) >= 2, 30, what="both workers under way")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr
    result = Result.load(out)
    assert result.interrupted and result.workers == 2
    assert result.requests > 0 and 0 < result.duration < 30


async def always_500(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        status = 200 if scope["path"] == "/ok" else 500
        headers = [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"oops"})


async def test_fail_on_error_against_a_server_that_answers_500(tmp_path: Path) -> None:
    config = http_config(app="tests.e2e.test_bench_cli:always_500")
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")[:2]
        url = f"http://{host}:{port}/"
        # Half the requests go to /ok: some complete, so only --fail-on-error fails the run.
        base = ["http", url, url + "ok", "-c", "2", "-n", "20", "--workers", "1", "-q"]
        ok = await asyncio.to_thread(bench_cli.main, base)
        failed = await asyncio.to_thread(bench_cli.main, [*base, "--fail-on-error"])
        only_500 = ["http", url, *base[3:]]
        tolerated = await asyncio.to_thread(
            bench_cli.main, [*only_500, "--fail-on-error", "--expect", "500"]
        )
    assert (ok, failed, tolerated) == (0, 1, 0)


async def test_a_run_where_nothing_completed_fails_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = http_config(app="tests.e2e.test_bench_cli:always_500")
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")[:2]
        argv = ["http", f"http://{host}:{port}/", "-c", "2", "-n", "10", "--workers", "1", "-q"]
        assert await asyncio.to_thread(bench_cli.main, argv) == 1
    assert "no request completed: 10 errors, most 'status 500' (10)" in capsys.readouterr().err
