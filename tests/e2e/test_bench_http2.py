"""``aionet bench http --http2``: against aionet's own listener (h2c by prior knowledge, ALPN h2
on TLS), against hypercorn (a test extra), and against a tiny server on
h2's server side that limits streams, drains with GOAWAY and refuses with GOAWAY. Each run must
have really spoken HTTP/2: the server says which version it served."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hyperframe.frame import GoAwayFrame, PingFrame
from structlog.testing import capture_logs

from aionet.bench import cli as bench_cli
from aionet.bench.result import Result
from aionet.bench.runner import Plan
from aionet.testing import serve
from tests.bench_helpers import bench, fake_server

from .conftest import Pki

N = 200
APP = "tests.apps.raw_apps:hello"


def config(tmp_path: Path, *, http2: bool = True) -> dict[str, Any]:
    options = {"app": APP, "access_log": True, **({"http2": True} if http2 else {})}
    return {
        "server": {"data_dir": str(tmp_path / "var")},
        "logging": {"level": "info"},
        "listeners": [
            {"name": "web", "protocol": "http", "bind": "127.0.0.1:0", "options": options}
        ],
    }


def tls_config(tmp_path: Path, pki: Pki, alpn: list[str]) -> dict[str, Any]:
    cfg = config(tmp_path, http2=False)
    cfg["tls"] = {"certificates": [pki.certificate("web")]}
    cfg["listeners"][0]["tls"] = {"certificates": ["web"], "alpn": alpn}
    return cfg


def assert_clean(result: Result, requests: int = N) -> None:
    assert result.errors == {}, result.error_details
    assert result.requests == requests
    assert result.latency.total == requests
    assert 0 < result.latency.percentile(50) < 1_000_000_000


def served_versions(logs: list[dict[str, Any]]) -> list[str]:
    """The version of every request aionet's access log recorded (HTTP/2 ones say so)."""
    return [e.get("http_version", "1.1") for e in logs if e["event"] == "http_request"]


# -- aionet's own listener -----------------------------------------------------------------------


@pytest.mark.parametrize("streams", [1, 8])
async def test_h2c_against_aionet(tmp_path: Path, streams: int) -> None:
    with capture_logs() as logs:
        async with serve(config(tmp_path)) as server:
            url = "http://{}:{}/".format(*server.address("web")[:2])
            argv = ["http", "--http2", "--streams", str(streams), url, url + "?x=1"]
            result = await bench(argv, Plan(3, requests=N))
    assert_clean(result)
    assert result.target["http2"] is True and result.target["streams"] == streams
    versions = served_versions(logs)
    # Streams in flight when the count was reached may be answered too (not recorded).
    assert N <= len(versions) <= N + 3 * streams
    assert set(versions) == {"2"}
    # -c 3: three connections, however many streams each carries.
    assert len({e["peer"] for e in logs if e["event"] == "http_request"}) == 3


async def test_alpn_h2_against_aionet_over_tls(tmp_path: Path, pki: Pki) -> None:
    with capture_logs() as logs:
        async with serve(tls_config(tmp_path, pki, ["h2", "http/1.1"])) as server:
            url = "https://localhost:{}/".format(server.address("web")[1])
            argv = ["http", "--http2", "--streams", "4", url, "--cafile", str(pki.ca_file)]
            result = await bench(argv, Plan(2, requests=N))
            plain = await bench(["http", url, "--cafile", str(pki.ca_file)], Plan(2, requests=10))
    assert_clean(result)
    assert_clean(plain, 10)  # the same listener still speaks HTTP/1.1 to who asks for it
    versions = served_versions(logs)
    assert versions.count("2") >= N and versions.count("1.1") >= 10
    assert set(versions) == {"2", "1.1"}


async def test_a_post_body_larger_than_the_window(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg["listeners"][0]["options"]["app"] = "tests.apps.raw_apps:echo"
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * 200_000)  # past the 64 KiB a stream may send before a WINDOW_UPDATE
    with capture_logs() as logs:
        async with serve(cfg) as server:
            url = "http://{}:{}/".format(*server.address("web")[:2])
            argv = [
                "http",
                "--http2",
                "--streams",
                "2",
                "-m",
                "POST",
                "--body-file",
                str(body),
                url,
            ]
            result = await bench(argv, Plan(2, requests=20))
    assert_clean(result, 20)
    assert {e["bytes"] for e in logs if e["event"] == "http_request"} == {200_000}


async def test_h2c_refused_when_the_listener_has_no_http2(tmp_path: Path) -> None:
    async with serve(config(tmp_path, http2=False)) as server:
        url = "http://{}:{}/".format(*server.address("web")[:2])
        result = await bench(["http", "--http2", url], Plan(1, requests=3))
    assert result.requests == 0 and result.errors == {"protocol": 3}
    assert "does not speak HTTP/2" in result.error_details["protocol"]
    assert "HTTP/1.1 400" in result.error_details["protocol"]


async def test_tls_without_h2_in_alpn_is_an_error_not_a_fallback(tmp_path: Path, pki: Pki) -> None:
    async with serve(tls_config(tmp_path, pki, ["http/1.1"])) as server:
        url = "https://localhost:{}/".format(server.address("web")[1])
        argv = ["http", "--http2", url, "--cafile", str(pki.ca_file)]
        result = await bench(argv, Plan(1, requests=3))
    assert result.requests == 0 and result.errors == {"alpn": 3}, result.error_details
    assert "did not choose h2" in result.error_details["alpn"]


def test_cli_exit_code_and_message_when_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.e2e.test_bench_targets import free_port

    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    code = bench_cli.main(["http", "--http2", "--streams", "4", url, "-n", "8", "--workers", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "no request completed" in err and "connect refused" in err


def test_cli_option_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in [
        (["--streams", "4"], "add --http2"),
        (["--http2", "--streams", "0"], "at least 1"),
        (["--http2", "--no-keepalive"], "HTTP/1.1's"),
        (["--http2", "-H", "Connection: close"], "not allowed in HTTP/2"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            bench_cli.main(["http", *argv, "http://127.0.0.1:9/", "-n", "1"])
        assert exit_.value.code == 2
        assert words in capsys.readouterr().err


# -- hypercorn (a test extra) --------------------------------------------------------------------

SEEN: list[str] = []


async def versioned_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Hello, recording the HTTP version each request came in with."""
    if scope["type"] != "http":
        return
    SEEN.append(scope["http_version"])
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@contextlib.asynccontextmanager
async def hypercorn_server(pki: Pki | None) -> AsyncIterator[int]:
    pytest.importorskip("hypercorn", reason="hypercorn is in the test extra: pip install .[test]")
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    cfg = Config()
    cfg.accesslog = cfg.errorlog = None
    if pki is not None:
        cfg.certfile, cfg.keyfile = str(pki.cert), str(pki.key)
        cfg.alpn_protocols = ["h2", "http/1.1"]
    from tests.e2e.test_bench_targets import free_port

    port = free_port()
    cfg.bind = [f"127.0.0.1:{port}"]
    stop = asyncio.Event()
    task = asyncio.create_task(hypercorn_serve(versioned_hello, cfg, shutdown_trigger=stop.wait))
    try:
        async with asyncio.timeout(10):
            while True:  # listening once its task ran far enough
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        yield port
    finally:
        stop.set()
        try:
            await task
        except* AttributeError as group:
            # hypercorn writes to a TLS connection the bench aborted at the end of its run, and
            # asyncio's SSL transport (3.11) then has no protocol: hypercorn's bug, not ours.
            if not all("_write_appdata" in str(e) for e in group.exceptions):
                raise


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
async def test_against_hypercorn(pki: Pki, tls: bool) -> None:
    SEEN.clear()
    async with hypercorn_server(pki if tls else None) as port:
        url = f"https://localhost:{port}/" if tls else f"http://127.0.0.1:{port}/"
        argv = ["http", "--http2", "--streams", "8", url, "--cafile", str(pki.ca_file)]
        result = await bench(argv, Plan(2, requests=N))
    assert_clean(result)
    assert len(SEEN) >= N and set(SEEN) == {"2"}


# -- a tiny server on h2's server side: a stream limit, a GOAWAY drain, a GOAWAY refusal ----------


DRAINED = b"drained!"


class TinyH2(asyncio.Protocol):
    """Answers each request at once; at most ``limit`` concurrent streams. ``drain_after``:
    after that many requests a GOAWAY that still promises every stream (the first step of a
    graceful shutdown), written before the answer. ``refuse``: a GOAWAY(last 0) instead of any
    answer. ``silent``: no answer at all."""

    connections = 0
    max_open = 0
    late = 0
    goaway_seen = False

    def __init__(
        self, limit: int, drain_after: int = 0, refuse: bool = False, silent: bool = False
    ) -> None:
        self.limit, self.drain_after, self.refuse = limit, drain_after, refuse
        self.silent = silent  # never answers
        self.requests = 0

    def connection_made(self, transport: Any) -> None:
        TinyH2.connections += 1
        self.transport = transport
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.limit},
        )
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                TinyH2.max_open = max(TinyH2.max_open, self.h2.open_inbound_streams)
                TinyH2.late += self.goaway_seen  # a new stream after the client saw the GOAWAY
                self._answer(event.stream_id)
            elif isinstance(event, h2.events.PingAckReceived) and event.ping_data == DRAINED:
                self.goaway_seen = True
        self.transport.write(self.h2.data_to_send())

    def _answer(self, sid: int) -> None:
        self.requests += 1
        if self.silent:
            return
        if self.refuse:
            self.transport.write(GoAwayFrame(0, last_stream_id=0).serialize())
            return
        if self.requests == self.drain_after:
            self.transport.write(self.h2.data_to_send())
            self.transport.write(GoAwayFrame(0, last_stream_id=(1 << 31) - 1).serialize())
            self.transport.write(PingFrame(0, DRAINED).serialize())  # its ACK: GOAWAY seen
        self.h2.send_headers(sid, [(b":status", b"200"), (b"content-length", b"5")])
        self.h2.send_data(sid, b"hello", end_stream=True)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


async def test_server_stream_limit_below_streams_and_goaway_drains() -> None:
    TinyH2.connections = TinyH2.max_open = TinyH2.late = 0
    async with fake_server(lambda: TinyH2(limit=2, drain_after=25)) as port:
        url = f"http://127.0.0.1:{port}/"
        result = await bench(["http", "--http2", "--streams", "8", url], Plan(2, requests=N))
    assert_clean(result)
    assert TinyH2.max_open == 2  # the lanes over the server's limit waited
    assert TinyH2.connections >= N // 25  # each drained connection was replaced
    assert TinyH2.late == 0  # and none of them opened a stream on a connection going away


async def test_streams_refused_by_goaway_are_counted() -> None:
    async with fake_server(lambda: TinyH2(limit=100, refuse=True)) as port:
        url = f"http://127.0.0.1:{port}/"
        result = await bench(["http", "--http2", "--streams", "2", url], Plan(1, requests=6))
    assert result.requests == 0 and result.errors == {"goaway": 6}, result.error_details
    assert "last stream 0" in result.error_details["goaway"]


async def test_unanswered_streams_time_out() -> None:
    TinyH2.connections = 0
    async with fake_server(lambda: TinyH2(limit=100, silent=True)) as port:
        url = f"http://127.0.0.1:{port}/"
        plan = Plan(2, requests=8, timeout=0.3)
        result = await bench(["http", "--http2", "--streams", "2", url], plan)
    assert result.requests == 0 and sum(result.errors.values()) == 8
    assert result.errors["timeout"] >= 4, result.error_details  # each lane's first request
    # A stream started after the one that timed out goes with its connection.
    assert set(result.errors) <= {"timeout", "closed"}
    if "closed" in result.errors:
        assert "another stream on it timed out" in result.error_details["closed"]
    assert TinyH2.connections >= 4  # a timed-out request takes its connection with it
