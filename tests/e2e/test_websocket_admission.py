"""WebSocket connections under the connection manager (issue 17, item 2): per-IP caps at accept
and for forwarded clients, a reload's drain (1001), SIGTERM through ``aionet run`` (1001), and
a fragmented message over ``ws_max_size``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from aionet.core.preflight import config_from_dict
from aionet.testing import serve
from tests.apps.ws_apps import SEEN
from tests.http_helpers import http_config
from tests.waiting import wait_until
from tests.ws_helpers import sessions

RAW = "tests.apps.ws_apps:raw"
APPS_DIR = Path(__file__).resolve().parents[1] / "apps"


@pytest.fixture(autouse=True)
def _fresh_seen() -> None:
    SEEN["disconnects"].clear()
    SEEN["pushed"] = 0


def url(server: Any, path: str = "/echo") -> str:
    host, port = server.address("web")
    return f"ws://{host}:{port}{path}"


async def test_per_ip_cap_counts_open_websockets(tmp_path: Path) -> None:
    config = http_config(app=RAW, limits={"max_connections_per_ip": 1})
    async with serve(config, data_dir=tmp_path) as server:
        async with connect(url(server)) as ws:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url(server)):
                    pass
            assert refused.value.response.status_code == 503
            await ws.send("the first is untouched")
            assert await ws.recv() == "the first is untouched"
        await wait_until(lambda: not server.manager.live, what="the WebSocket released")
        async with connect(url(server)) as ws:  # the slot is free again
            await ws.send("again")
            assert await ws.recv() == "again"
        assert server.manager.slots["web"].stats.refused["listener_max_connections_per_ip"] == 1


async def test_forwarded_client_cap_counts_open_websockets(tmp_path: Path) -> None:
    config = http_config(
        app=RAW, proxy_headers=True, forwarded_allow_ips=["127.0.0.1"],
        limits={"max_connections_per_ip": 1},
    )  # fmt: skip
    async with serve(config, data_dir=tmp_path) as server:

        def via(ip: str) -> dict[str, str]:
            return {"X-Forwarded-For": ip}

        async with connect(url(server), additional_headers=via("198.51.100.1")) as ws:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url(server), additional_headers=via("198.51.100.1")):
                    pass
            assert refused.value.response.status_code == 429
            assert refused.value.response.headers["retry-after"] == "1"
            async with connect(url(server), additional_headers=via("198.51.100.2")) as other:
                await other.send("other client")
                assert await other.recv() == "other client"
            await ws.send("first")
            assert await ws.recv() == "first"
        guard = server.handlers["web"].state.guard  # type: ignore[attr-defined]
        await wait_until(lambda: not guard.in_flight, what="the guard released the clients")
        async with connect(url(server), additional_headers=via("198.51.100.1")) as ws:
            await ws.send("back")
            assert await ws.recv() == "back"


async def test_reload_drains_open_websockets_with_1001(tmp_path: Path) -> None:
    config = http_config(app=RAW)
    config["server"]["data_dir"] = str(tmp_path)
    async with serve(config) as server, connect(url(server)) as ws:
        await ws.send("before")
        assert await ws.recv() == "before"
        config["listeners"][0]["options"]["ws_max_size"] = "1MiB"  # a changed listener
        assert await server.reload(config_from_dict(config))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        await wait_until(lambda: SEEN["disconnects"] == [1001], what="the app saw 1001")
        async with connect(url(server)) as fresh:  # the new handler serves new ones
            await fresh.send("after")
            assert await fresh.recv() == "after"


async def test_fragmented_message_over_max_size_is_1009(tmp_path: Path) -> None:
    async with serve(http_config(app=RAW, ws_max_size="1KiB"), data_dir=tmp_path) as server:
        async with connect(url(server), compression=None) as ws:
            await ws.send([b"x" * 600, b"y" * 600])  # each frame fits, the message does not
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await wait_until(lambda: sessions(server) == [], what="the session ended")


CONFIG = """\
logging: {level: info}
listeners:
  - {name: web, protocol: http, bind: "127.0.0.1:0", options: {app: "ws_apps:fastapi_app"}}
"""


def test_sigterm_closes_open_websockets_with_1001(daemon: Any) -> None:
    import signal

    proc = daemon(CONFIG, env={"PYTHONPATH": str(APPS_DIR)})
    host, port = proc.address("web")

    async def talk() -> int:
        async with connect(f"ws://{host}:{port}/ws/r?token=ok") as ws:
            await ws.send('"hi"')
            assert await ws.recv() == '{"room":"r","echo":"hi"}'
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    assert asyncio.run(talk()) == 1001
    assert proc.wait() == 0
    entry = proc.wait_for("websocket_session", path="/ws/r")
    assert (entry["code"], entry["messages_in"], entry["messages_out"]) == (1001, 1, 1)
