"""The ``http`` handler against real clients: httpx (async and sync), curl, raw pipelining, TLS."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aionet.testing import serve
from tests.http_helpers import exchange, http_config, split_responses
from tests.waiting import wait_until

from .conftest import Pki

RAW = "tests.apps.raw_apps"


async def test_httpx_async_keep_alive_reuses_one_connection(tmp_path: Path) -> None:
    async with serve(http_config(app=f"{RAW}:echo"), data_dir=tmp_path) as server:
        host, port = server.address("web")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            for i in range(5):
                response = await client.post("/x", content=b"ping %d" % i)
                assert response.status_code == 200
                assert response.content == b"ping %d" % i
                assert response.headers["transfer-encoding"] == "chunked"
                assert response.headers["server"] == "aionet"
                assert "date" in response.headers and "x-request-id" in response.headers
        assert server.manager.slots["web"].stats.accepted == 1


async def test_httpx_sync_client_in_a_thread(tmp_path: Path) -> None:
    async with serve(http_config(app=f"{RAW}:hello"), data_dir=tmp_path) as server:
        host, port = server.address("web")

        def client() -> list[tuple[int, bytes]]:
            with httpx.Client(base_url=f"http://{host}:{port}") as c:
                return [(r.status_code, r.content) for r in (c.get("/"), c.head("/"))]

        assert await asyncio.to_thread(client) == [(200, b"hello"), (200, b"")]


async def test_streamed_upload_and_download_of_megabytes(tmp_path: Path) -> None:
    from tests.apps import raw_apps

    raw_apps.reset_state()
    config = http_config(app=f"{RAW}:echo", max_body_size="64MiB")
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")
        blob = os.urandom(3 * 1024 * 1024 + 7)

        async def upload() -> AsyncIterator[bytes]:
            for i in range(0, len(blob), 100_000):
                yield blob[i : i + 100_000]

        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as client:
            response = await client.post("/up", content=upload())  # chunked request body
            assert response.content == blob
    config = http_config(app=f"{RAW}:big")
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")
        async with (
            httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as client,
            client.stream("GET", "/?mib=16") as response,
        ):
            total = 0
            async for part in response.aiter_raw():
                total += len(part)
        assert total == 16 * 1024 * 1024


async def test_slow_reader_holds_the_app_at_send(tmp_path: Path) -> None:
    """Flow control end to end: a client that stops reading stops the app, bounded memory."""
    from tests.apps import raw_apps

    raw_apps.reset_state()
    async with serve(http_config(app=f"{RAW}:big"), data_dir=tmp_path) as server:
        host, port = server.address("web")
        _reader, writer = await asyncio.open_connection(host, port)
        writer.transport.set_write_buffer_limits(0)  # type: ignore[union-attr]
        sock = writer.get_extra_info("socket")
        import socket

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        writer.write(b"GET /?mib=256 HTTP/1.1\r\nHost: t\r\n\r\n")
        loop = asyncio.get_running_loop()
        seen = {"chunks": -1, "since": loop.time()}

        def parked() -> bool:
            """The app has sent and then made no progress for 0.3 s (the observation window
            is part of the test: a parked app stays parked)."""
            chunks, now = raw_apps.STATE["chunks_sent"], loop.time()
            if chunks != seen["chunks"]:
                seen.update(chunks=chunks, since=now)
            return chunks > 0 and now - seen["since"] >= 0.3

        await wait_until(parked, 10, what="the app parked at send()")
        sent_then = raw_apps.STATE["chunks_sent"]
        assert sent_then * 65536 < 64 * 1024 * 1024  # far less than the 256 MiB asked for
        [rec] = server.manager.live.values()
        assert rec.transport.get_write_buffer_size() <= 1024 * 1024
        writer.close()


async def test_raw_pipelining_answers_in_request_order(tmp_path: Path) -> None:
    async with serve(http_config(app=f"{RAW}:slow_path"), data_dir=tmp_path) as server:
        delays = [60, 0, 30, 0, 10, 0, 45, 5, 0, 20]
        requests = b"".join(b"GET /slow/%d HTTP/1.1\r\nHost: t\r\n\r\n" % d for d in delays)
        requests += b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        data, closed = await exchange(*server.address("web"), requests)
        bodies = [r.body for r in split_responses(data)]
        assert bodies == [b"/slow/%d" % d for d in delays] + [b"/last"]
        assert closed


async def curl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "20", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode("latin-1"), err.decode()


@pytest.mark.tool("curl")
async def test_curl_get_head_http10_and_keep_alive(tmp_path: Path) -> None:
    async with serve(http_config(app=f"{RAW}:hello"), data_dir=tmp_path) as server:
        host, port = server.address("web")
        url = f"http://{host}:{port}/"
        rc, out, err = await curl("-i", url)
        assert rc == 0, err
        assert out.startswith("HTTP/1.1 200 OK\r\n") and out.endswith("\r\n\r\nhello")
        rc, out, _ = await curl("-I", url)
        assert "content-length: 5" in out and not out.rstrip().endswith("hello")
        rc, out, _ = await curl("-i", "--http1.0", url)
        assert "connection: close" in out and out.endswith("hello")
        rc, _, err = await curl("-v", url, url, url)  # three requests, one connection
        assert err.count("Re-using existing connection") == 2


@pytest.mark.tool("curl")
async def test_curl_expect_100_continue_and_chunked_upload(tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(200_000))
    async with serve(http_config(app=f"{RAW}:echo"), data_dir=tmp_path / "d") as server:
        host, port = server.address("web")
        url = f"http://{host}:{port}/up"
        rc, _, err = await curl(
            "-v", "-H", "Expect: 100-continue", "--data-binary", f"@{upload}", "-o",
            str(tmp_path / "out1"), url,
        )  # fmt: skip
        assert rc == 0, err
        assert "HTTP/1.1 100 Continue" in err
        assert (tmp_path / "out1").read_bytes() == upload.read_bytes()
        rc, _out, err = await curl(
            "-H", "Transfer-Encoding: chunked", "-T", str(upload), "-o", str(tmp_path / "out2"),
            url,
        )  # fmt: skip
        assert rc == 0, err
        assert (tmp_path / "out2").read_bytes() == upload.read_bytes()


async def test_https_listener(tmp_path: Path, pki: Pki) -> None:
    config: dict[str, Any] = http_config(app=f"{RAW}:slow_path")
    config["tls"] = {"certificates": [pki.certificate("web")]}
    config["listeners"][0]["tls"] = "web"
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")
        context = pki.client()
        async with httpx.AsyncClient(base_url=f"https://{host}:{port}", verify=context) as client:
            responses = [await client.get(f"/tls/{i}") for i in range(3)]
        assert [r.text for r in responses] == ["/tls/0", "/tls/1", "/tls/2"]
        assert server.manager.slots["web"].stats.accepted == 1


async def client_and_scheme(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering with what it was told about the client."""
    if scope["type"] != "http":
        return
    body = f"{scope['client'][0]} {scope['scheme']}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("trusted", [["127.0.0.1"], ["192.0.2.0/24"]])
async def test_proxy_headers_from_trusted_proxies_only(tmp_path: Path, trusted: list[str]) -> None:
    from structlog.testing import capture_logs

    config = http_config(
        app=f"{__name__}:client_and_scheme",
        proxy_headers=True,
        forwarded_allow_ips=trusted,
        access_log=True,
    )
    forwarded = {"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https"}
    async with serve(config, data_dir=tmp_path) as server:
        base = "http://{}:{}".format(*server.address("web")[:2])
        with capture_logs() as logs:
            async with httpx.AsyncClient(base_url=base) as client:
                told = (await client.get("/", headers=forwarded)).text
    if trusted == ["127.0.0.1"]:  # we are the proxy: believed
        assert told == "198.51.100.9 https"
        assert [e.get("client") for e in logs if e["event"] == "http_request"] == ["198.51.100.9"]
    else:  # not a trusted proxy: the request as sent
        assert told == "127.0.0.1 http"
        assert [e.get("client") for e in logs if e["event"] == "http_request"] == [None]


def proxied(trusted: list[str], **listener: Any) -> dict[str, Any]:
    """An ``http`` listener behind a reverse proxy (us, on 127.0.0.1) with ``listener`` keys."""
    config = http_config(
        app=f"{__name__}:client_and_scheme", proxy_headers=True, forwarded_allow_ips=trusted
    )
    config["listeners"][0].update(listener)
    return config


def via(client_ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": client_ip}


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2c"])
async def test_forwarded_client_meets_the_listener_access_rules(
    tmp_path: Path, http2: bool
) -> None:
    # The proxy (127.0.0.1) is in no allow list: its connection passes at accept; each
    # forwarded client meets allow/deny per request and the proxy's connection survives a 403.
    # The same over HTTP/2, where each stream is a request (one shared admission path).
    access = {"allow": ["203.0.113.0/24"], "deny": ["203.0.113.66"]}
    config = proxied(["127.0.0.1"], access=access)
    config["listeners"][0]["options"]["http2"] = http2
    async with serve(config, data_dir=tmp_path) as server:
        base = "http://{}:{}".format(*server.address("web")[:2])
        async with httpx.AsyncClient(base_url=base, http1=not http2, http2=http2) as client:
            ok = await client.get("/", headers=via("203.0.113.5"))
            denied = await client.get("/", headers=via("203.0.113.66"))
            outside = await client.get("/", headers=via("198.51.100.9"))
            again = await client.get("/", headers=via("203.0.113.7"))
        assert (ok.status_code, ok.text) == (200, "203.0.113.5 http")
        assert ok.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert denied.status_code == outside.status_code == 403
        assert denied.text == "403 Forbidden\n"
        assert again.status_code == 200
        assert server.manager.slots["web"].stats.accepted == 1  # one keep-alive connection


async def test_untrusted_peer_still_meets_the_access_rules_at_accept(tmp_path: Path) -> None:
    config = proxied(["192.0.2.0/24"], access={"deny": ["127.0.0.0/8"]})
    async with serve(config, data_dir=tmp_path) as server:
        base = "http://{}:{}".format(*server.address("web")[:2])
        async with httpx.AsyncClient(base_url=base) as client:
            with pytest.raises(httpx.TransportError):  # refused before a byte is read
                await client.get("/", headers=via("203.0.113.5"))
        assert server.manager.slots["web"].stats.refused["denied"] == 1


async def test_forwarded_client_rate_is_per_client_not_per_proxy(tmp_path: Path) -> None:
    config = proxied(["127.0.0.1"], access={"rate": 0.01, "burst": 2})
    async with serve(config, data_dir=tmp_path) as server:
        base = "http://{}:{}".format(*server.address("web")[:2])
        async with httpx.AsyncClient(base_url=base) as client:
            a = [await client.get("/", headers=via("198.51.100.1")) for _ in range(3)]
            b = [await client.get("/", headers=via("198.51.100.2")) for _ in range(2)]
        assert [r.status_code for r in a] == [200, 200, 429]
        assert a[2].headers["retry-after"] == "1"
        assert [r.status_code for r in b] == [200, 200]
        # Without proxy_headers the same rate would have refused the proxy's 2nd connection;
        # here five requests came in over however many connections httpx chose.
        assert server.manager.slots["web"].stats.refused.get("rate_limited", 0) == 0


async def test_forwarded_client_per_ip_cap_counts_requests_in_flight(tmp_path: Path) -> None:
    # max_connections_per_ip 1: the proxy opens three connections (not capped: it carries
    # other clients); one client gets one request in flight at a time, another is unaffected.
    config = proxied(["127.0.0.1"], limits={"max_connections_per_ip": 1})
    config["listeners"][0]["options"]["app"] = f"{RAW}:slow_path"
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")[:2]

        async def get(path: str, client_ip: str) -> int:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                return (await client.get(path, headers=via(client_ip))).status_code

        guard = server.handlers["web"].state.guard
        slow = asyncio.create_task(get("/slow/500", "198.51.100.1"))
        await wait_until(lambda: guard.in_flight.get("198.51.100.1") == 1)
        same, other = await asyncio.gather(get("/x", "198.51.100.1"), get("/y", "198.51.100.2"))
        assert (await slow, same, other) == (200, 429, 200)
        assert await get("/z", "198.51.100.1") == 200  # released when answered
