"""HTTP/2 on the http listener: h2c by prior knowledge beside HTTP/1.1 on one port, ALPN h2 on
TLS, curl and httpx as clients, bodies both ways under flow control, limits, drain, and a client
and drain (the attack classes: ``test_http2_attacks.py``)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame

from aionet.testing import serve
from tests.e2e.conftest import Pki
from tests.h2_helpers import frames_until_eof

PREFACE_APPS = "tests.apps.raw_apps"


def config(tmp_path: Path, app: str = "hello", **options: Any) -> dict[str, Any]:
    return {
        "server": {"data_dir": str(tmp_path / "var"), "shutdown_timeout": "5s"},
        "logging": {"level": "warning"},
        "listeners": [{
            "name": "web", "protocol": "http", "bind": "127.0.0.1:0",
            "options": {"app": f"{PREFACE_APPS}:{app}", "http2": True, "access_log": False,
                        **options},
        }],
    }  # fmt: skip


def tls_config(tmp_path: Path, pki: Pki, app: str = "hello") -> dict[str, Any]:
    cfg = config(tmp_path, app)
    cfg["tls"] = {"certificates": [pki.certificate("web")]}
    cfg["listeners"][0]["tls"] = {"certificates": ["web"], "alpn": ["h2", "http/1.1"]}
    del cfg["listeners"][0]["options"]["http2"]
    return cfg


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-s", "-w", "\n%{http_version}", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


async def test_h2c_by_prior_knowledge_beside_http11(tmp_path: Path) -> None:
    async with serve(config(tmp_path)) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        got = await asyncio.to_thread(curl, "--http2-prior-knowledge", url)
        assert got.stdout.split("\n") == ["hello", "2"], got.stderr
        got = await asyncio.to_thread(curl, url)  # HTTP/1.1 on the same port
        assert got.stdout.split("\n") == ["hello", "1.1"]
        # 100 concurrent streams on one connection (the default SETTINGS_MAX_CONCURRENT_STREAMS).
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            answers = await asyncio.gather(*(client.get(url) for _ in range(100)))
        assert {(r.http_version, r.status_code, r.text) for r in answers} == {
            ("HTTP/2", 200, "hello")
        }


async def test_h2c_is_off_unless_asked_for(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    del cfg["listeners"][0]["options"]["http2"]
    async with serve(cfg) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        got = await asyncio.to_thread(curl, "--http2-prior-knowledge", url)
        assert got.stdout.strip().endswith("0")  # no HTTP/2 answer: the preface is refused
        assert (await asyncio.to_thread(curl, url)).stdout.split("\n") == ["hello", "1.1"]


async def test_alpn_h2_on_tls_and_http11_fallback(tmp_path: Path, pki: Pki) -> None:
    async with serve(tls_config(tmp_path, pki)) as server:
        _host, port = server.address("web")
        url = f"https://localhost:{port}/"
        ca = str(pki.ca_file)
        got = await asyncio.to_thread(curl, "--http2", "--cacert", ca, url)
        assert got.stdout.split("\n") == ["hello", "2"], got.stderr
        got = await asyncio.to_thread(curl, "--http1.1", "--cacert", ca, url)
        assert got.stdout.split("\n") == ["hello", "1.1"]
        async with httpx.AsyncClient(http2=True, verify=pki.client()) as client:
            answer = await client.get(url)
        assert (answer.http_version, answer.text) == ("HTTP/2", "hello")


async def test_bodies_of_a_mebibyte_both_ways(tmp_path: Path) -> None:
    async with serve(config(tmp_path, "echo")) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        body = bytes(range(256)) * 4096  # 1 MiB: sixteen times the initial stream window
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            answers = await asyncio.gather(*(client.post(url, content=body) for _ in range(4)))
        for answer in answers:
            assert answer.http_version == "HTTP/2"
            assert answer.content == body


async def test_limits_and_errors(tmp_path: Path) -> None:
    cfg = config(tmp_path, "echo", max_body_size=1000)
    async with serve(cfg) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            declared = await client.post(url, content=b"x" * 2000)
            assert declared.status_code == 413

            async def chunks() -> Any:  # no Content-Length: the server counts the DATA
                for _ in range(4):
                    yield b"y" * 600

            streamed = await client.post(url, content=chunks())
            assert streamed.status_code == 413
            assert (await client.post(url, content=b"ok")).content == b"ok"
            head = await client.head(url)
            assert head.status_code == 200 and head.content == b""
    async with serve(config(tmp_path, "crash")) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            assert (await client.get(url)).status_code == 500
            assert (await client.get(url)).status_code == 500  # the connection survived


def _h2_client(port: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _events_until(
    sock: socket.socket, conn: h2.connection.H2Connection, kind: type, limit: float = 5.0
) -> list[Any]:
    sock.settimeout(limit)
    seen: list[Any] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return seen
        events = conn.receive_data(data)
        sock.sendall(conn.data_to_send())
        seen.extend(events)
        if any(isinstance(e, kind) for e in events):
            return seen


async def test_drain_two_step_goaway_loses_no_request(tmp_path: Path) -> None:
    async with serve(config(tmp_path, "slow_path")) as server:
        _host, port = server.address("web")

        def client() -> list[Any]:
            sock, conn = _h2_client(port)
            request = [(":method", "GET"), (":path", "/slow/500"), (":scheme", "http"),
                       (":authority", "x")]  # fmt: skip
            conn.send_headers(1, request, end_stream=True)
            sock.sendall(conn.data_to_send())
            late = [(":method", "GET"), (":path", "/late"), (":scheme", "http"),
                    (":authority", "x")]  # fmt: skip

            def on_goaway(frame: Any) -> bytes:
                # A request already on its way when the first GOAWAY arrives (sent before the
                # client answers its PING): the second GOAWAY must still include it.
                if frame.last_stream_id == 2**31 - 1:
                    block = conn.encoder.encode(late)
                    return HeadersFrame(3, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
                return b""

            try:  # h2's client state machine stops at a GOAWAY: read raw frames
                return frames_until_eof(sock, on_goaway)
            finally:
                sock.close()

        task = asyncio.create_task(asyncio.to_thread(client))
        await asyncio.sleep(0.2)
        server.handlers["web"].state.drain()  # type: ignore[attr-defined]
        frames = await task
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert [g.last_stream_id for g in goaways] == [2**31 - 1, 3]
        bodies = {1: b"", 3: b""}
        ended = set()
        for f in frames:
            if isinstance(f, DataFrame):
                bodies[f.stream_id] += f.data
                if "END_STREAM" in f.flags:
                    ended.add(f.stream_id)
        assert bodies == {1: b"/slow/500", 3: b"/late"} and ended == {1, 3}


async def test_connections_table_shows_http2(tmp_path: Path) -> None:
    async with serve(config(tmp_path)) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            await client.get(url)
            kinds = [rec.kind for rec in server.manager.live.values()]
        assert kinds == ["http2"]


@pytest.mark.parametrize("app", ["tests.apps.starlette_app:app", "tests.apps.flask_app:app"])
async def test_frameworks_over_http2(tmp_path: Path, app: str) -> None:
    cfg = config(tmp_path)
    options = cfg["listeners"][0]["options"]
    del options["app"]
    options["wsgi" if "flask" in app else "app"] = app
    async with serve(cfg) as server:
        url = "http://{}:{}".format(*server.address("web"))
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            home = await client.get(url + "/")
            echo = await client.post(url + "/echo", content=b"z" * 100_000)
        assert home.http_version == "HTTP/2" and home.status_code == 200
        assert echo.status_code == 200 and echo.json()["length"] == 100_000


async def test_trailers_end_the_stream(tmp_path: Path) -> None:
    async with serve(config(tmp_path, "with_trailers")) as server:
        _host, port = server.address("web")

        def fetch() -> tuple[bytes, list[tuple[bytes, bytes]]]:
            sock, conn = _h2_client(port)
            try:
                request = [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                           (":authority", "x")]  # fmt: skip
                conn.send_headers(1, request, end_stream=True)
                sock.sendall(conn.data_to_send())
                events = _events_until(sock, conn, h2.events.StreamEnded)
            finally:
                sock.close()
            body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
            assert len(trailers) == 1 and trailers[0].stream_ended is not None
            return body, list(trailers[0].headers)

        body, trailers = await asyncio.to_thread(fetch)
        assert body == b"part one, part two"
        assert trailers == [(b"x-checksum", b"abc123"), (b"x-rows", b"2")]
    # HTTP/1.1 does not offer the extension: the same app answers without trailers.
    async with serve(config(tmp_path, "with_trailers")) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).text == "part one, part two"


async def test_static_files_keep_their_caching_rules(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "small.txt").write_text("hello, h2\n")
    (site / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: read in pieces
    cfg = config(tmp_path)
    options = cfg["listeners"][0]["options"]
    del options["app"]
    options["static_dir"] = str(site)
    async with serve(cfg) as server:
        url = "http://{}:{}".format(*server.address("web"))
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            small = await client.get(url + "/small.txt")
            assert (small.http_version, small.text) == ("HTTP/2", "hello, h2\n")
            etag = small.headers["etag"]
            again = await client.get(url + "/small.txt", headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
            big = await client.get(url + "/big.bin")
            assert big.content == bytes(range(256)) * 4096
            part = await client.get(url + "/big.bin", headers={"Range": "bytes=256-511"})
            assert part.status_code == 206 and part.content == bytes(range(256))
            head = await client.head(url + "/big.bin")
            assert head.headers["content-length"] == str(1024 * 1024) and head.content == b""


@pytest.mark.tool("nghttp")
async def test_nghttp_verbose(tmp_path: Path) -> None:
    async with serve(config(tmp_path, "echo")) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        done = await asyncio.to_thread(
            subprocess.run, ["nghttp", "-v", "-d", "-", url], input="from nghttp",
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "recv SETTINGS frame" in out and "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]" in out
        assert ":status: 200" in out and "x-method: POST" in out
        # The echo comes back in two DATA frames (the app sends one byte, then the rest).
        assert "recv DATA frame <length=1, flags=0x00" in out
        assert "recv DATA frame <length=10, flags=0x01" in out  # END_STREAM


@pytest.mark.tool("h2load")
async def test_h2load(tmp_path: Path, pki: Pki) -> None:
    async with serve(tls_config(tmp_path, pki)) as server:
        _host, port = server.address("web")
        done = await asyncio.to_thread(
            subprocess.run,
            ["h2load", "-n", "2000", "-c", "4", "-m", "10", f"https://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Application protocol: h2" in done.stdout
        assert "2000 succeeded, 0 failed, 0 errored" in done.stdout, done.stdout


async def test_an_app_header_with_crlf_gets_a_500(tmp_path: Path) -> None:
    async with serve(config(tmp_path, "bad_header")) as server:
        url = "http://{}:{}/".format(*server.address("web"))
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            answer = await client.get(url)
        assert answer.status_code == 500 and "set-cookie" not in answer.headers
