"""WebSocket apps for the tests: a raw ASGI app (one behaviour per path), Starlette and FastAPI."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi import WebSocket as FastWebSocket
from fastapi import WebSocketDisconnect as FastDisconnect
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

#: What the raw app saw, for the tests to check: disconnect codes, messages pushed.
SEEN: dict[str, Any] = {"disconnects": [], "pushed": 0}


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/echo`` (picks the first subprotocol offered), ``/deny`` (close before accept: 403),
    ``/deny-http`` (a 401 through ``websocket.http.response``), ``/close`` (the app closes
    with 4001), ``/boom`` (raises after accepting), ``/push/<n>`` (sends n 64 KiB messages as
    fast as ``send()`` returns, counting them); plain HTTP gets ``hello``."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})
        return
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/deny-http":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-why", b"token")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"pe"})
        return
    if path == "/deny-length":  # the app states its own content-length
        body = b"go away\n"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    offered = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": offered[0] if offered else None,
            "headers": [(b"x-app", scope["scheme"].encode())],
        }
    )
    if path == "/close":
        await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        SEEN["disconnects"].append((await receive())["code"])
        return
    if path == "/boom":
        raise RuntimeError("boom")
    if path.startswith("/push/"):
        for _ in range(int(path.rsplit("/", 1)[1])):
            await send({"type": "websocket.send", "bytes": b"p" * 65536})
            SEEN["pushed"] += 1
        await send({"type": "websocket.send", "text": "done"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            SEEN["disconnects"].append(message["code"])
            return
        if message.get("text") == "slow":
            await asyncio.sleep(0.2)  # a reply in flight while the test starts a drain
        reply = {"type": "websocket.send"}
        if message.get("text") is not None:
            reply["text"] = message["text"]
        else:
            reply["bytes"] = message["bytes"]
        await send(reply)


async def _starlette_echo(websocket: WebSocket) -> None:
    await websocket.accept(
        subprotocol="chat" if "chat" in websocket.scope["subprotocols"] else None
    )
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"starlette: {text}")
    except WebSocketDisconnect:
        pass


starlette_app = Starlette(routes=[WebSocketRoute("/ws", _starlette_echo)])

fastapi_app = FastAPI()


@fastapi_app.websocket("/ws/{room}")
async def _fastapi_echo(websocket: FastWebSocket, room: str) -> None:
    token = websocket.query_params.get("token")
    if token != "ok":
        await websocket.close(code=1008)  # before accept: the handshake is refused (403)
        return
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"room": room, "echo": data})
    except FastDisconnect:
        pass
