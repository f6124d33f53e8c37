"""A raw ASGI app for the browser tests: a page whose script talks WebSocket back to its host.

``GET /`` serves ``PAGE``. Its script opens ``ws:``/``wss:`` (after ``location.protocol``)
to ``/ws`` on the same host, sends ``hello from the browser`` once open, and writes into the
DOM what comes back: text replies into ``#out``, binary ones (received as an ArrayBuffer) as
hex into ``#bin``, errors and the close code into ``#err`` and ``#closed``. ``sendBytes([..])``
sends a binary message on demand. ``/ws`` answers a text message ``m`` with
``echo(<scheme>): m`` (the scheme of the ASGI scope: ``ws`` or ``wss``, so a test sees which
way it came) and a binary one with the same bytes reversed.
"""

from __future__ import annotations

from typing import Any

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>aionet websocket page</title></head>
<body>
<h1>aionet WebSocket round trip</h1>
<p>text: <span id="out"></span></p>
<p>binary: <span id="bin"></span></p>
<p>errors: <span id="err"></span></p>
<p>closed: <span id="closed"></span></p>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws`);
ws.binaryType = "arraybuffer";
ws.onopen = () => ws.send("hello from the browser");
ws.onmessage = (event) => {
  if (event.data instanceof ArrayBuffer) {
    $("bin").textContent = Array.from(new Uint8Array(event.data),
      (b) => b.toString(16).padStart(2, "0")).join(" ");
  } else {
    $("out").textContent = event.data;
  }
};
ws.onerror = () => { $("err").textContent += "websocket error; "; };
ws.onclose = (event) => { $("closed").textContent = String(event.code); };
window.addEventListener("error", (event) => { $("err").textContent += event.message + "; "; });
window.sendBytes = (bytes) => ws.send(new Uint8Array(bytes).buffer);
</script>
</body></html>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/`` the page, ``/ws`` the echo; anything else 404; lifespan ignored."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await _echo(scope, receive, send)
        return
    if scope["path"] != "/":
        await _respond(send, 404, b"text/plain", b"not found\n")
        return
    await _respond(send, 200, b"text/html; charset=utf-8", PAGE)


async def _respond(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] != "/ws":
        await send({"type": "websocket.close"})  # before accept: the handshake gets a 403
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": f"echo({scope['scheme']}): "
                        + message["text"]})  # fmt: skip
        else:
            await send({"type": "websocket.send", "bytes": bytes(message["bytes"])[::-1]})
