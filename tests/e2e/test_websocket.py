"""WebSocket on the ``http`` listener (issue 17, items 1-3): the ``websockets`` client for the
messages, close paths, subprotocols and compression; raw sockets for protocol violations and a
slow reader; drain; ``/connections``, ``/metrics`` and the access log; Starlette and FastAPI
through ``aionet run``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from aionet.admin.app import hash_token
from aionet.testing import serve
from tests.apps.ws_apps import SEEN
from tests.e2e.conftest import Pki
from tests.e2e.test_admin import bearer, families, value
from tests.http_helpers import http_config
from tests.waiting import wait_until
from tests.ws_helpers import frame, raw_open, read_close, read_frame, sessions

RAW = "tests.apps.ws_apps:raw"
APPS_DIR = Path(__file__).resolve().parents[1] / "apps"
VIEWER = "viewer-token-0123456789"


@pytest.fixture(autouse=True)
def _fresh_seen() -> None:
    SEEN["disconnects"].clear()
    SEEN["pushed"] = 0


def url(server: Any, path: str, scheme: str = "ws") -> str:
    host, port = server.address("web")
    return f"{scheme}://{host}:{port}{path}"


async def test_messages_text_binary_fragmented_large_and_ping(tmp_path: Path) -> None:
    async with serve(http_config(app=RAW), data_dir=tmp_path) as server:
        async with connect(url(server, "/echo"), max_size=None) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
            await ws.send(["frag", "men", "ted"])  # one message in three frames
            assert await ws.recv() == "fragmented"
            await ws.send([b"a" * 70000, b"b" * 70000])
            assert await ws.recv() == b"a" * 70000 + b"b" * 70000
            big = bytes(range(256)) * 4096  # 1 MiB
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send("x" * (1 << 20))
            assert await ws.recv() == "x" * (1 << 20)
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            assert ws.response.headers["x-app"] == "ws"
            assert ws.response.headers["server"] == "aionet"
        await wait_until(lambda: SEEN["disconnects"] == [1000], what="the app saw 1000")


async def test_subprotocols_and_compression(tmp_path: Path) -> None:
    async with serve(http_config(app=RAW), data_dir=tmp_path) as server:
        async with connect(url(server, "/echo"), subprotocols=["v2", "v1"]) as ws:
            assert ws.subprotocol == "v2"  # the app's choice (the first offered)
            assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
            text = "compressible " * 10000
            await ws.send(text)
            assert await ws.recv() == text
        rec_bytes = server.manager.slots["web"].stats.bytes_in  # type: ignore[attr-defined]
        assert rec_bytes < len(text) // 10  # it went compressed
        async with connect(url(server, "/echo"), compression=None) as ws:
            assert ws.subprotocol is None and ws.protocol.extensions == []
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"
    async with (
        serve(http_config(app=RAW, ws_per_message_deflate=False), data_dir=tmp_path) as server,
        connect(url(server, "/echo")) as ws,
    ):  # offered, refused by the option
        assert ws.protocol.extensions == []


async def test_close_paths(tmp_path: Path) -> None:
    async with serve(http_config(app=RAW, ws_max_size="1KiB"), data_dir=tmp_path) as server:
        async with connect(url(server, "/close")) as ws:  # the app closes
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")
        async with connect(url(server, "/echo")) as ws:  # the client closes with a code
            await ws.close(4100, "done")
        async with connect(url(server, "/boom")) as ws:  # the app raises: 1011
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1011
        async with connect(url(server, "/echo"), compression=None) as ws:  # over ws_max_size
            await ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1009
        with pytest.raises(InvalidStatus) as denied:  # closed before accept: 403
            async with connect(url(server, "/deny")):
                pass
        assert denied.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as denied:  # websocket.http.response
            async with connect(url(server, "/deny-http")):
                pass
        response = denied.value.response
        assert (response.status_code, bytes(response.body)) == (401, b"nope")
        assert response.headers["x-why"] == "token"
        # An app's own content-length is the only one (websockets would refuse two).
        with pytest.raises(InvalidStatus) as denied:
            async with connect(url(server, "/deny-length")):
                pass
        response = denied.value.response
        assert (response.status_code, bytes(response.body)) == (403, b"go away\n")
        assert response.headers.get_all("content-length") == ["8"]
        await wait_until(lambda: len(SEEN["disconnects"]) == 3, what="three disconnects")
        assert SEEN["disconnects"] == [4001, 4100, 1009]
        # After all that the listener still serves plain HTTP.
        host, port = server.address("web")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{host}:{port}/")).text == "hello"


async def test_malformed_handshake_is_refused_before_the_app(tmp_path: Path) -> None:
    async with serve(http_config(app=RAW), data_dir=tmp_path) as server:
        host, port = server.address("web")
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"  # no Sec-WebSocket-Key
        )
        head = await reader.read()
        writer.close()
        assert head.startswith(b"HTTP/1.1 400 ")
        assert b"Sec-WebSocket-Key" in head
        assert sessions(server) == [] and SEEN["disconnects"] == []


async def test_an_app_that_ignores_the_websocket_scope_answers_500(tmp_path: Path) -> None:
    async with serve(http_config(app="tests.apps.raw_apps:echo"), data_dir=tmp_path) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(server, "/echo")):
                pass
        assert refused.value.response.status_code == 500


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        pytest.param([frame(1, b"hi", mask=False)], 1002, id="unmasked"),
        pytest.param([frame(1, b"ok \xff\xfe")], 1007, id="invalid-utf8"),
        pytest.param([frame(1, b"ok", fin=False), frame(0, b"\xc3")], 1007, id="utf8-split-end"),
        pytest.param([frame(1, b"ok", fin=False), frame(0, b"\xff", fin=False)], 1007,
                     id="utf8-fails-fast"),
        pytest.param([frame(9, b"x", fin=False)], 1002, id="fragmented-ping"),
        pytest.param([frame(9, b"x" * 126)], 1002, id="oversized-ping"),
        pytest.param([frame(3, b"x")], 1002, id="reserved-opcode"),
        pytest.param([frame(0xB, b"")], 1002, id="reserved-control-opcode"),
        pytest.param([frame(2, b"x", rsv=1)], 1002, id="rsv1-not-negotiated"),
        pytest.param([frame(2, b"x", rsv=4)], 1002, id="rsv3"),
        pytest.param([frame(0, b"x")], 1002, id="continuation-first"),
    ],
)  # fmt: skip
async def test_protocol_violations_get_their_close_code(
    tmp_path: Path, frames: list[bytes], code: int
) -> None:
    async with serve(http_config(app=RAW), data_dir=tmp_path) as server:
        reader, writer, head = await raw_open(*server.address("web"))
        assert head.startswith(b"HTTP/1.1 101 ")
        writer.write(b"".join(frames))
        got, _ = await asyncio.wait_for(read_close(reader), 5)
        assert got == code
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closes the TCP
        writer.close()
        await wait_until(lambda: SEEN["disconnects"] == [code], what="the app's disconnect")


async def test_tls(tmp_path: Path, pki: Pki) -> None:
    config = http_config(app=RAW)
    config["tls"] = {"certificates": [pki.certificate("default")]}
    config["listeners"][0]["tls"] = "default"
    async with (
        serve(config, data_dir=tmp_path) as server,
        connect(url(server, "/echo", "wss"), ssl=pki.client()) as ws,
    ):
        assert ws.response.headers["x-app"] == "wss"  # the scope's scheme
        big = b"t" * 300_000
        await ws.send(big)
        assert await ws.recv() == big


async def test_ping_keeps_a_live_peer_and_drops_a_dead_one(tmp_path: Path) -> None:
    config = http_config(app=RAW, ws_ping_interval="100ms", ws_ping_timeout="300ms")
    async with serve(config, data_dir=tmp_path) as server:
        async with connect(url(server, "/echo")) as ws:  # answers pings by itself
            # Several ping intervals and timeouts pass: that is what is tested.
            await asyncio.sleep(1.0)
            await ws.send("still here")
            assert await ws.recv() == "still here"
        reader, writer, _ = await raw_open(*server.address("web"))  # never answers a ping
        started = time.monotonic()
        opcodes = await frames_until_eof(reader)
        assert 9 in opcodes and time.monotonic() - started < 3
        writer.close()
        await wait_until(lambda: SEEN["disconnects"] == [1000, 1006], what="1006 for the dead")


async def frames_until_eof(reader: asyncio.StreamReader) -> list[int]:
    """The opcodes of the frames the server sends before it closes the connection."""
    opcodes = []
    while True:
        try:
            opcodes.append((await asyncio.wait_for(read_frame(reader), 5))[0])
        except asyncio.IncompleteReadError:
            return opcodes


async def test_close_handshake_timeout(tmp_path: Path) -> None:
    config = http_config(app=RAW, ws_close_timeout="300ms", ws_ping_interval=0)
    async with serve(config, data_dir=tmp_path) as server:
        reader, writer, _ = await raw_open(*server.address("web"), "/close")
        code, _ = await read_close(reader)
        started = time.monotonic()
        assert code == 4001  # and the client never answers the close frame
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.2 <= time.monotonic() - started < 3
        writer.close()
        await wait_until(lambda: sessions(server) == [], what="the session ended")


async def test_slow_reader_parks_the_app_and_no_one_else(tmp_path: Path) -> None:
    config = http_config(app=RAW, ws_write_limit="64KiB", send_timeout="60s")
    async with serve(config, data_dir=tmp_path) as server:
        reader, writer, _ = await raw_open(*server.address("web"), "/push/400", rcvbuf=16384)
        await wait_until(lambda: SEEN["pushed"] > 0, what="the app started pushing")
        pushed = -1
        while SEEN["pushed"] != pushed:  # until send() stops returning: the app is parked
            pushed = SEEN["pushed"]
            await asyncio.sleep(0.3)  # a pause in the pushing is what is tested
        assert pushed < 400  # 400 x 64 KiB = 25 MiB never left the server
        (session,) = sessions(server)
        queued = session._host.transport.get_write_buffer_size()
        assert queued <= 64 * 1024 + 65536 + 16  # the limit and at most one message over it
        host, port = server.address("web")
        async with httpx.AsyncClient() as client:  # other connections are served meanwhile
            assert (await client.get(f"http://{host}:{port}/")).text == "hello"
        received = 0
        while True:  # now read: everything arrives
            opcode, payload = await asyncio.wait_for(read_frame(reader), 10)
            if opcode == 1:
                assert payload == b"done"
                break
            assert opcode == 2 and payload == b"p" * 65536
            received += 1
        assert received == SEEN["pushed"] == 400
        writer.close()


async def test_drain_closes_with_1001_after_what_was_sent(tmp_path: Path) -> None:
    config = http_config(app=RAW, ws_write_limit="64KiB")
    async with serve(config, data_dir=tmp_path) as server:
        reader, writer, _ = await raw_open(*server.address("web"), "/push/200", rcvbuf=16384)
        await wait_until(lambda: SEEN["pushed"] > 2, what="messages in flight")
        shutdown = asyncio.create_task(server.shutdown(timeout=10))
        received = 0
        while True:
            opcode, payload = await asyncio.wait_for(read_frame(reader), 10)
            if opcode == 8:
                assert payload[:2] == (1001).to_bytes(2, "big")
                break
            assert opcode == 2 and len(payload) == 65536
            received += 1
        assert received == SEEN["pushed"] and received < 200  # every message sent came first
        writer.write(frame(8, payload[:2]))  # answer the close
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await asyncio.wait_for(shutdown, 10)
        writer.close()


async def test_idle_timeout_counts_frames_as_activity(tmp_path: Path) -> None:
    config = http_config(app=RAW, ws_ping_interval=0)
    config["server"]["limits"]["idle_timeout"] = "600ms"
    async with serve(config, data_dir=tmp_path) as server, connect(url(server, "/echo")) as ws:
        for i in range(8):  # 1.6 s of traffic every 200 ms: longer than the idle timeout
            await ws.send(str(i))
            assert await ws.recv() == str(i)
            await asyncio.sleep(0.2)
        with pytest.raises(ConnectionClosed):  # then silence: the idle timeout closes it
            await asyncio.wait_for(ws.recv(), 5)


def admin_config(tmp_path: Path) -> dict[str, Any]:
    config = http_config(app=RAW)
    config["server"]["data_dir"] = str(tmp_path / "var")
    config["listeners"].append(
        {
            "name": "admin",
            "protocol": "admin",
            "bind": "127.0.0.1:0",
            "options": {"tokens": [{"name": "p", "role": "viewer", "sha256": hash_token(VIEWER)}]},
        }
    )
    return config


async def test_connections_and_metrics(tmp_path: Path) -> None:
    async with serve(admin_config(tmp_path)) as server:
        admin = "http://{}:{}".format(*server.address("admin"))
        async with httpx.AsyncClient(base_url=admin, headers=bearer(VIEWER)) as client:
            async with connect(url(server, "/echo"), compression=None) as ws:
                await ws.send("abc")
                await ws.recv()
                await ws.send(b"12345")
                await ws.recv()
                rows = (await client.get("/connections?listener=web")).json()["connections"]
                assert [row["kind"] for row in rows] == ["websocket"]
                fams = families((await client.get("/metrics")).text)
                assert value(fams, "aionet_websocket_open", listener="web") == 1
            await wait_until(lambda: sessions(server) == [], what="the session ended")
            with pytest.raises(InvalidStatus):
                async with connect(url(server, "/deny")):
                    pass
            fams = families((await client.get("/metrics")).text)
    assert value(fams, "aionet_websocket_open", listener="web") == 0
    assert value(fams, "aionet_websocket_messages_total", direction="in") == 2
    assert value(fams, "aionet_websocket_messages_total", direction="out") == 2
    assert value(fams, "aionet_websocket_bytes_total", direction="in") == 8
    assert value(fams, "aionet_websocket_bytes_total", direction="out") == 8
    assert value(fams, "aionet_websocket_closes_total", code="1000") == 1
    assert value(fams, "aionet_http_requests_total", code="4xx") == 1  # the denied handshake


STARLETTE_FASTAPI = """\
logging: {level: info}
listeners:
  - {name: web, protocol: http, bind: "127.0.0.1:0", options: {app: "ws_apps:starlette_app"}}
  - {name: api, protocol: http, bind: "127.0.0.1:0", options: {app: "ws_apps:fastapi_app"}}
"""


def test_starlette_and_fastapi_through_aionet_run(daemon: Any) -> None:
    proc = daemon(STARLETTE_FASTAPI, env={"PYTHONPATH": str(APPS_DIR)})

    async def talk() -> None:
        host, port = proc.address("web")
        async with connect(f"ws://{host}:{port}/ws", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hi")
            assert await ws.recv() == "starlette: hi"
        host, port = proc.address("api")
        async with connect(f"ws://{host}:{port}/ws/lobby?token=ok") as ws:
            await ws.send(json.dumps({"n": 1}))
            assert json.loads(await ws.recv()) == {"room": "lobby", "echo": {"n": 1}}
        with pytest.raises(InvalidStatus) as denied:
            async with connect(f"ws://{host}:{port}/ws/lobby?token=bad"):
                pass
        assert denied.value.response.status_code == 403

    asyncio.run(talk())
    entry = proc.wait_for("websocket_session", path="/ws")
    assert entry["logger"] == "aionet.access"
    assert (entry["code"], entry["messages_in"], entry["messages_out"]) == (1000, 1, 1)
    assert entry["duration"] > 0
    entry = proc.wait_for("websocket_session", path="/ws/lobby")
    assert (entry["code"], entry["messages_in"], entry["messages_out"]) == (1000, 1, 1)
    assert proc.wait_for("websocket_refused", path="/ws/lobby")["status"] == 403
