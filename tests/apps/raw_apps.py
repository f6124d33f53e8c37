"""Raw ASGI and WSGI apps that exercise one server behaviour each (no framework in the way)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

Scope = dict[str, Any]


async def _start(send: Any, status: int = 200, headers: list[Any] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    """Plain hello with a Content-Length; supports no lifespan (raises on it)."""
    assert scope["type"] == "http"
    await _start(send, 200, [(b"content-type", b"text/plain"), (b"content-length", b"5")])
    await send({"type": "http.response.body", "body": b"hello"})


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Echo the request body back, chunked (no Content-Length), after reading all of it."""
    if scope["type"] != "http":
        return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await _start(send, 200, [(b"x-method", scope["method"].encode())])
    await send({"type": "http.response.body", "body": bytes(body[:1]), "more_body": True})
    await send({"type": "http.response.body", "body": bytes(body[1:])})


async def slow_path(scope: Scope, receive: Any, send: Any) -> None:
    """``/slow/<ms>`` answers after that many milliseconds with the path as body."""
    if scope["type"] != "http":
        return
    parts = scope["path"].split("/")
    if len(parts) > 2 and parts[1] == "slow":
        await asyncio.sleep(int(parts[2]) / 1000)  # the known time the tests measure
    body = scope["path"].encode()
    await _start(send, 200, [(b"content-length", str(len(body)).encode())])
    await send({"type": "http.response.body", "body": body})


async def never_reads(scope: Scope, receive: Any, send: Any) -> None:
    """Waits for the test to release it, never reading the body; records that it ran."""
    if scope["type"] != "http":
        return
    STATE["started"].set()
    await STATE["release"].wait()
    await _start(send, 200)
    await send({"type": "http.response.body", "body": b"done"})


async def big(scope: Scope, receive: Any, send: Any) -> None:
    """Streams ``?mib`` MiB in 64 KiB chunks (flow control is what is under test)."""
    if scope["type"] != "http":
        return
    mib = int(scope["query_string"].decode().partition("=")[2] or "8")
    chunk = b"x" * 65536
    await _start(send, 200, [(b"content-length", str(mib * 1024 * 1024).encode())])
    for i in range(mib * 16):
        STATE["chunks_sent"] = i + 1
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def records_body(scope: Scope, receive: Any, send: Any) -> None:
    """Reads the body, recording each message in ``STATE["received"]``; echoes its length."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        STATE["received"].append(message["type"])
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await _start(send, 200)
    await send({"type": "http.response.body", "body": b"%d" % size})


async def crash_after_start(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await _start(send, 200)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("broke mid-response")


async def crash(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    raise RuntimeError("secret internal detail")


async def failing_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    """Its lifespan startup reports a failure (as Starlette does when on_startup raises)."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await hello(scope, receive, send)


async def raising_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    """Raises inside lifespan startup, after receiving the event."""
    if scope["type"] == "lifespan":
        await receive()
        raise ConnectionRefusedError("cache server down")
    await hello(scope, receive, send)


STATE: dict[str, Any] = {}


def reset_state() -> None:
    STATE.clear()
    STATE["started"] = asyncio.Event()
    STATE["release"] = asyncio.Event()
    STATE["chunks_sent"] = 0
    STATE["received"] = []


# -- WSGI -------------------------------------------------------------------------------------

WSGI_CLOSED: list[str] = []
WSGI_THREADS: set[str] = set()


class _Closing:
    """A response iterable that records ``close()`` and streams three parts."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __iter__(self) -> Iterator[bytes]:
        WSGI_THREADS.add(threading.current_thread().name)
        for i in range(3):
            yield f"{self.path}:{i}\n".encode()

    def close(self) -> None:
        WSGI_CLOSED.append(self.path)


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/input":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d:%s" % (len(body), body[:16])]
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % len(lines)]
    if path == "/exc":
        try:
            raise ValueError("handled")
        except ValueError:
            import sys

            start_response("200 OK", [])
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")], sys.exc_info())
            return [b"replaced"]
    if path == "/environ":
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "HTTP_X_A")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["|".join(str(environ.get(k)) for k in keys).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _Closing(path)


async def ws_echo(scope: Scope, receive: Any, send: Any) -> None:
    """A WebSocket echo: every text or binary message comes back as it was; HTTP gets 404,
    ``/refuse`` a refused handshake. Subprotocols offered are accepted first-come."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await _start(send, 404, [(b"content-length", b"0")])
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    if scope["path"] == "/refuse":  # closed before accept: the server answers 403
        await send({"type": "websocket.close"})
        return
    offered = scope.get("subprotocols") or []
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if offered:
        accept["subprotocol"] = offered[0]
    await send(accept)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def with_trailers(scope: Scope, receive: Any, send: Any) -> None:
    """A body in two parts, then trailers (``http.response.trailers``, where offered)."""
    if scope["type"] != "http":
        return
    offered = "http.response.trailers" in scope.get("extensions", {})
    await send({"type": "http.response.start", "status": 200, "trailers": offered,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"part one, ", "more_body": True})
    await send({"type": "http.response.body", "body": b"part two"})
    if offered:
        await send({"type": "http.response.trailers", "more_trailers": True,
                    "headers": [(b"x-checksum", b"abc123")]})  # fmt: skip
        await send({"type": "http.response.trailers", "headers": [(b"x-rows", b"2")]})


async def bad_header(scope: Scope, receive: Any, send: Any) -> None:
    """A header value smuggling a second header (response splitting)."""
    if scope["type"] != "http":
        return
    await _start(send, 200, [(b"x-note", b"a\r\nset-cookie: evil=1")])
    await send({"type": "http.response.body", "body": b"never"})
