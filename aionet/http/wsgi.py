"""A PEP 3333 WSGI app hosted as an ASGI app, on a bounded thread pool.

Each request runs ``app(environ, start_response)`` in one of ``threads`` worker threads. The
thread talks to the event loop only through the request's ASGI ``receive``/``send``
(``run_coroutine_threadsafe``), so the protocol's flow control applies unchanged: a slow
client blocks the thread at ``send``, and an app that does not read ``wsgi.input`` leaves the
upload paused. Headers go out with the first non-empty body chunk (PEP 3333), a response
iterable with ``len() == 1`` is sent with a Content-Length, and ``close()`` is always called
on the iterable.
"""

from __future__ import annotations

import asyncio
import io
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from types import TracebackType

    from .types import Message, Receive, Scope, Send

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
    WSGIApp = Callable[..., Iterable[bytes]]

__all__ = ["WsgiAdapter", "build_environ"]


class WsgiAdapter:
    """``WsgiAdapter(app, threads)`` is an ASGI app that serves the WSGI ``app``."""

    def __init__(self, app: WSGIApp, threads: int = 16) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="aionet-wsgi")
        #: Loop calls worker threads are blocked on (cancelled at close, so none waits forever).
        self.pending: set[Future[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan: WSGI has none (returning at once means "unsupported")
        loop = asyncio.get_running_loop()
        bridge = _Bridge(loop, receive, send, self.pending)
        await loop.run_in_executor(self.executor, _Call(self.app, scope, bridge).run)

    def close(self) -> None:
        """Stop accepting work; threads still waiting on the loop get an error, not a hang."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        for future in list(self.pending):
            future.cancel()


class _Bridge:
    """The worker thread's way to the loop: blocking receive/send."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        receive: Receive,
        send: Send,
        pending: set[Future[Any]],
    ) -> None:
        self.loop = loop
        self.receive = receive
        self.send = send
        self.pending = pending

    def call(self, awaitable: Awaitable[Any]) -> Any:
        """Run ``awaitable`` on the loop and wait for its result (from the worker thread).

        Raises:
            concurrent.futures.CancelledError: the server stopped meanwhile.
        """

        async def run() -> Any:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        self.pending.add(future)
        try:
            return future.result()
        finally:
            self.pending.discard(future)

    def read_chunk(self) -> tuple[bytes, bool]:
        message: Message = self.call(self.receive())
        if message["type"] != "http.request":
            return b"", False  # disconnected: end of input
        return message.get("body", b""), message.get("more_body", False)


class WsgiInput(io.RawIOBase):
    """``wsgi.input``: the request body, read on demand from the loop."""

    def __init__(self, bridge: _Bridge) -> None:
        super().__init__()
        self._bridge = bridge
        self._buffer = bytearray()
        self._more = True

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> None:
        while self._more and (want < 0 or len(self._buffer) < want):
            data, self._more = self._bridge.read_chunk()
            self._buffer += data

    def _take(self, size: int) -> bytes:
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        self._fill(size)
        return self._take(size)

    def readinto(self, buffer: Any) -> int:
        self._fill(1)  # what is there, at least one byte unless at the end
        data = self._take(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or not self._more or 0 <= size <= len(self._buffer):
                break
            self._fill(len(self._buffer) + 1)
        limit = end + 1 if end >= 0 else len(self._buffer)
        return self._take(limit if size < 0 else min(size, limit))


class _Call:
    """One WSGI call, run in a worker thread."""

    def __init__(self, app: WSGIApp, scope: Scope, bridge: _Bridge) -> None:
        self.app = app
        self.scope = scope
        self.bridge = bridge
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status:
            raise RuntimeError("start_response() called twice without exc_info")
        code, _, _ = status.partition(" ")
        if len(code) != 3 or not code.isdigit():
            raise ValueError(f"invalid WSGI status {status!r}")
        self.status = int(code)
        self.headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: send a chunk now."""
        self._send(data, more=True)

    def _send(self, data: bytes, *, more: bool) -> None:
        if not self.status:
            raise RuntimeError("the WSGI app sent a body before calling start_response()")
        if not data and more:
            return
        if not self.headers_sent:
            self.headers_sent = True
            start = {"type": "http.response.start", "status": self.status}
            self.bridge.call(self.bridge.send(start | {"headers": self.headers}))
        message = {"type": "http.response.body", "body": data, "more_body": more}
        self.bridge.call(self.bridge.send(message))

    def run(self) -> None:
        environ = build_environ(self.scope, WsgiInput(self.bridge))
        result = self.app(environ, self.start_response)
        try:
            self._send_all(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _send_all(self, result: Iterable[bytes]) -> None:
        try:
            remaining = len(result)  # type: ignore[arg-type]
        except TypeError:
            remaining = -1
        for data in result:
            remaining -= 1
            if remaining == 0:
                self._send(data, more=False)
                return
            self._send(data, more=True)
        self._send(b"", more=False)


def build_environ(scope: Scope, body: io.RawIOBase) -> dict[str, Any]:
    """The PEP 3333 environ for an ASGI http ``scope``.

    ``PATH_INFO`` is the percent-decoded path as latin-1 characters (PEP 3333 "bytes as
    str"). Request headers whose names contain ``_`` are dropped: they would collide with
    their ``-`` twins in ``HTTP_*`` names (a header-spoofing vector).
    """
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    path = scope["path"].encode("utf-8", "surrogateescape").decode("latin-1")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": path,
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 0),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client and client[1] is not None else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    for name, value in scope["headers"]:
        _add_header(environ, name, value)
    return environ


def _add_header(environ: dict[str, Any], name: bytes, value: bytes) -> None:
    if b"_" in name:
        return
    text = value.decode("latin-1")
    if name == b"content-type":
        key = "CONTENT_TYPE"
    elif name == b"content-length":
        key = "CONTENT_LENGTH"
    else:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
    if key in environ:
        separator = "; " if key == "HTTP_COOKIE" else ","
        text = environ[key] + separator + text
    environ[key] = text
