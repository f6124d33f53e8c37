"""The live dashboard on the admin listener: the page, its ticket, its WebSocket feed, who may
open them (and who may not: other sites), and the feed summed across workers."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from aionet.admin.app import hash_token
from aionet.admin.dashboard import SUBPROTOCOL, make_ticket
from aionet.auth.users import UserStore
from aionet.testing import serve
from tests.conftest import Daemon
from tests.waiting import wait_until

VIEWER = "dashboard-viewer-token"


def config(tmp_path: Path, users_file: Path | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"data_dir": str(tmp_path / "var")},
        "logging": {"level": "warning"},
        "listeners": [
            {"name": "echo", "protocol": "echo", "bind": "127.0.0.1:0"},
            {"name": "web", "protocol": "http", "bind": "127.0.0.1:0",
             "options": {"app": "tests.apps.raw_apps:hello", "access_log": False}},
            {"name": "admin", "protocol": "admin", "bind": "127.0.0.1:0", "options": {"tokens": [
                {"name": "prom", "role": "viewer", "sha256": hash_token(VIEWER)}]}},
        ],
    }  # fmt: skip
    if users_file is not None:
        cfg["auth"] = {"users_file": str(users_file)}
    return cfg


def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    store = UserStore.load(path, missing_ok=True)
    store.add("vic", "v1ewer-pass", ("viewer",))
    store.add("mail", "mail-pass-1", ("mail",))
    store.close()
    return path


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def frames(ws: Any, until: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Read feed frames until ``until(frame)`` holds; that frame."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if until(frame):
                return frame


async def test_the_page_is_self_contained_and_guarded(tmp_path: Path) -> None:
    async with serve(config(tmp_path, users(tmp_path))) as server:
        admin = "http://{}:{}".format(*server.address("admin"))
        async with httpx.AsyncClient(base_url=admin) as client:
            refused = await client.get("/dashboard")
            assert refused.status_code == 401
            # A browser prompts for Basic: the challenge names it in a header of its own.
            challenges = refused.headers.get_list("www-authenticate")
            assert any(c.lower().startswith("basic") for c in challenges)
            assert (await client.get("/dashboard", headers=basic("mail", "mail-pass-1"))
                    ).status_code == 403  # fmt: skip
            cross = {"Sec-Fetch-Site": "cross-site", **basic("vic", "v1ewer-pass")}
            assert (await client.get("/dashboard", headers=cross)).status_code == 403
            page = await client.get("/dashboard", headers=basic("vic", "v1ewer-pass"))
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["cache-control"] == "no-store"
            assert page.headers["x-frame-options"] == "DENY"
            csp = page.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "connect-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            # Nothing from elsewhere: no external script, style, font or image.
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
            assert "<canvas" in page.text or 'createElement("canvas")' in page.text
            ticket = re.search(r'name="aionet-ticket" content="([^"]+)"', page.text)
            assert ticket is not None and ticket.group(1).startswith("aionet-ticket.")
            viewer = {"Authorization": f"Bearer {VIEWER}"}
            fresh = await client.get("/dashboard/ticket", headers=viewer)
            assert fresh.status_code == 200 and fresh.json()["ticket"].startswith("aionet-ticket.")
            assert (await client.get("/dashboard/ticket")).status_code == 401
            index = (await client.get("/", headers={"Authorization": f"Bearer {VIEWER}"})).json()
            assert {"path": "/dashboard", "method": "GET", "roles": ["viewer", "admin"]} in index[
                "endpoints"
            ]


async def test_feed_streams_live_totals(tmp_path: Path) -> None:
    async with serve(config(tmp_path)) as server:
        host, port = server.address("admin")
        server.handlers["admin"].state.app.feed.interval = 0.1  # type: ignore[attr-defined]
        web = "http://{}:{}".format(*server.address("web"))
        uri = f"ws://{host}:{port}/dashboard/ws"
        async with connect(uri, additional_headers={"Authorization": f"Bearer {VIEWER}"}) as ws:
            first = json.loads(await ws.recv())
            assert set(first["listeners"]) == {"echo", "web", "admin"}
            assert first["listeners"]["web"]["protocol"] == "http"
            assert first["workers"] == 1 and first["ready"] == 1
            # Traffic shows up: HTTP answers by class with latencies, and an open echo session.
            async with httpx.AsyncClient(base_url=web) as client:
                for _ in range(5):
                    assert (await client.get("/")).status_code == 200
            _reader, writer = await asyncio.open_connection(*server.address("echo"))
            try:
                frame = await frames(
                    ws,
                    lambda f: (
                        f["listeners"]["web"].get("http", {}).get("2xx", 0) >= 5
                        and f["listeners"]["echo"].get("open", 0) == 1
                    ),
                )
            finally:
                writer.close()
            web_row = frame["listeners"]["web"]
            assert web_row["latency"]["counts"][-1] >= 5  # cumulative: the last is the count
            assert web_row["accepted"] >= 1 and web_row["bytes_out"] > 0
            # The admin listener counts this very WebSocket.
            assert frame["listeners"]["admin"]["ws_open"] == 1
            await frames(ws, lambda f: f["listeners"]["echo"].get("open", 0) == 0)


async def test_who_may_open_the_feed(tmp_path: Path) -> None:
    async with serve(config(tmp_path, users(tmp_path))) as server:
        host, port = server.address("admin")
        uri = f"ws://{host}:{port}/dashboard/ws"
        secret = server.secret
        ticket = make_ticket(secret)

        async def status(**kwargs: Any) -> int:
            try:
                async with connect(uri, **kwargs) as ws:
                    await ws.recv()
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        # The page's way: a ticket offered as a subprotocol; the feed's protocol is chosen.
        async with connect(uri, subprotocols=[SUBPROTOCOL, ticket]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == SUBPROTOCOL
            assert "listeners" in json.loads(await ws.recv())
        assert await status(additional_headers=basic("vic", "v1ewer-pass")) == 101
        # No credentials, a forged, expired or foreign ticket, a user without the role.
        assert await status() == 401
        forged = ticket[:-4] + ("0000" if not ticket.endswith("0000") else "1111")
        assert await status(subprotocols=[SUBPROTOCOL, forged]) == 401
        expired = make_ticket(secret, ttl=-1)
        assert await status(subprotocols=[SUBPROTOCOL, expired]) == 401
        other = make_ticket(b"another server's secret")
        assert await status(subprotocols=[SUBPROTOCOL, other]) == 401
        assert await status(additional_headers=basic("mail", "mail-pass-1")) == 403
        assert await status(additional_headers=basic("vic", "wrong")) == 401
        # Cross-site WebSocket hijacking: a page elsewhere opening the feed with whatever the
        # browser would attach — refused, even with a valid ticket or credentials.
        evil = "http://evil.example"
        assert await status(subprotocols=[SUBPROTOCOL, ticket], origin=evil) == 403  # type: ignore[arg-type]
        assert (
            await status(additional_headers=basic("vic", "v1ewer-pass"), origin=evil)  # type: ignore[arg-type]
            == 403
        )
        same = f"http://{host}:{port}"
        assert await status(subprotocols=[SUBPROTOCOL, ticket], origin=same) == 101  # type: ignore[arg-type]
        # Other WebSocket paths on the admin listener do not exist.
        with pytest.raises(InvalidStatus) as missing:
            async with connect(f"ws://{host}:{port}/metrics"):
                pass
        assert missing.value.response.status_code == 404


async def test_dashboards_share_one_sampler_that_stops_when_nobody_watches(
    tmp_path: Path,
) -> None:
    async with serve(config(tmp_path)) as server:
        host, port = server.address("admin")
        feed = server.handlers["admin"].state.app.feed  # type: ignore[attr-defined]
        feed.interval = 0.05
        calls = 0
        sample = feed.sample

        def counting() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            return sample()  # type: ignore[no-any-return]

        feed.sample = counting
        uri = f"ws://{host}:{port}/dashboard/ws"
        headers = {"Authorization": f"Bearer {VIEWER}"}
        async with (
            connect(uri, additional_headers=headers) as a,
            connect(uri, additional_headers=headers) as b,
        ):
            seen = [json.loads(await ws.recv())["time"] for ws in (a, b) for _ in range(10)]
            # Both see the same frames (one sample each interval, sent to both), plus each
            # one's own first frame at connect.
            assert len(set(seen)) <= 12
            assert 10 <= calls <= 14
        await wait_until(lambda: not feed.subscribers, timeout=5, what="feed emptied")
        assert feed._sampler is None
        settled = calls
        await asyncio.sleep(0.3)
        assert calls == settled  # nobody watching: nothing sampled


def workers_config(tmp_path: Path) -> str:
    return (
        f"server: {{data_dir: '{tmp_path / 'var'}', shutdown_timeout: 5s}}\n"
        "logging: {level: info}\n"
        "listeners:\n"
        "  - {name: echo, protocol: echo, bind: '127.0.0.1:0'}\n"
        "  - {name: admin, protocol: admin, bind: '127.0.0.1:0', options: {tokens: [\n"
        f"      {{name: t, role: viewer, sha256: {hash_token(VIEWER)}}}]}}}}\n"
    )


def test_feed_sums_workers_and_tickets_cross_them(daemon: Any, tmp_path: Path) -> None:
    d: Daemon = daemon(workers_config(tmp_path), "--workers", "2")
    ports = {str(k): int(v) for k, v in d.wait_for("supervisor_started")["ports"].items()}
    d.wait_for("workers_ready", timeout=20)
    admin = f"127.0.0.1:{ports['admin']}"
    # Connections land on both workers (SO_REUSEPORT); the feed shows their sum.
    socks = [socket.create_connection(("127.0.0.1", ports["echo"]), timeout=5) for _ in range(8)]
    try:
        for s in socks:
            s.sendall(b"x")
            assert s.recv(1) == b"x"

        async def watch() -> dict[str, Any]:
            # A ticket one worker hands out opens the feed on the other: every worker signs
            # and checks with the supervisor's secret. (Which worker takes a connection is
            # SO_REUSEPORT's choice: try until a ticket crossed over.)
            crossed = None
            for _ in range(60):
                async with httpx.AsyncClient(headers={"Authorization": f"Bearer {VIEWER}"}) as c:
                    got = (await c.get(f"http://{admin}/dashboard/ticket", timeout=5)).json()
                async with connect(
                    f"ws://{admin}/dashboard/ws", subprotocols=[SUBPROTOCOL, got["ticket"]]
                ) as ws:
                    frame = json.loads(await ws.recv())
                    if frame["pid"] != got["pid"]:
                        crossed = await frames(
                            ws,
                            lambda f: f["workers"] == 2 and f["listeners"]["echo"]["open"] == 8,
                            timeout=15,
                        )
                        break
            assert crossed is not None, "every feed handshake landed on the ticket's worker"
            return crossed

        frame = asyncio.run(watch())
        assert frame["listeners"]["echo"]["accepted"] >= 8
    finally:
        for s in socks:
            s.close()
