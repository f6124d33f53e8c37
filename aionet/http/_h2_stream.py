"""``H2Stream``: one HTTP/2 request stream, as the ASGI app sees it (``receive``/``send``).

The request body arrives as DATA frames (``feed``); the flow-control credit for it goes back to
the client (WINDOW_UPDATE) only as the app takes the bytes in ``receive()``, so a client can
never have more than a stream window of body waiting for an app that does not read. The
response goes out as HEADERS then DATA frames, each no larger than the stream's and the
connection's send windows and the peer's frame size allow; ``send()`` waits for the client's
WINDOW_UPDATE (and for the transport's write buffer) when they are used up. A stream that waits
for window longer than ``send_timeout`` is reset.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from hpack import NeverIndexedHeaderTuple

from ..proto.http import status_allows_body
from .cycle import ClientDisconnected, log_request

if TYPE_CHECKING:
    import asyncio

    from .h2 import H2Protocol
    from .types import ASGIApp, Message

__all__ = ["H2Stream"]

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
#: Response headers that mean something only to one HTTP/1.1 connection (RFC 9113 §8.2.2).
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
# No NUL, CR or LF anywhere; no whitespace at either end (RFC 9113 §8.2.1).
_VALUE = re.compile(rb"(?:[^\x00\r\n\t ](?:[^\x00\r\n]*[^\x00\r\n\t ])?)?")


def response_fields(headers: Any) -> list[tuple[bytes, bytes]]:
    """An app's response (or trailer) fields as HTTP/2 sends them: names lowercased, the
    HTTP/1.1 connection fields dropped (RFC 9113 §8.2.2), everything else checked here once
    (h2's own outbound checks are off: they cost more than the rest of a response).

    Raises:
        ValueError: a name that is not a token, or a value with NUL, CR, LF or edge spaces.
    """
    fields = []
    for name, value in headers:
        name, value = bytes(name).lower(), bytes(value)
        if name in HOP_BY_HOP:
            continue
        if _NAME.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            raise ValueError(f"invalid response header {name!r}: {value[:40]!r}")
        fields.append((name, value))
    return fields


#: Bytes of a file read per DATA step (``pathsend``, ``zerocopysend``).
FILE_CHUNK = 64 * 1024


class H2Stream:
    """The state of one request stream and its response; ``run()`` is the stream's task."""

    __slots__ = (
        "body_ended",
        "chunks",
        "complete",
        "conn",
        "data_at",
        "discard",
        "disconnected",
        "guarded",
        "headers_sent",
        "id",
        "more_body",
        "no_body",
        "pending",
        "received",
        "request_id",
        "response_headers",
        "scope",
        "sent",
        "started",
        "status",
        "t0",
        "task",
        "trailers",
        "waiter",
        "window_since",
    )

    def __init__(self, conn: H2Protocol, stream_id: int, scope: dict[str, Any]) -> None:
        self.conn = conn
        self.id = stream_id
        self.scope = scope
        self.task: asyncio.Task[None] | None = None
        #: The forwarded client counted by the listener's ``ClientGuard`` until the end.
        self.guarded: str | None = None
        state = conn.state
        self.t0 = time.perf_counter() if state.access or state.metrics else 0.0
        self.request_id: bytes | None = None
        # Request body: (data, flow-controlled length) pieces the app has not taken yet.
        self.chunks: list[tuple[bytes, int]] = []
        self.received = 0
        self.more_body = True
        #: When the last piece of body arrived (``body_timeout``).
        self.data_at = time.monotonic()
        #: Refused mid-body: what still arrives of the body is dropped.
        self.discard = False
        self.waiter: asyncio.Future[None] | None = None
        # Response.
        self.started = self.headers_sent = self.complete = self.disconnected = False
        self.no_body = False
        #: The app announced trailers (``http.response.trailers``): the body does not end the
        #: stream; the trailers do. None once they are sent.
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.body_ended = False
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.sent = 0
        #: Bytes of response waiting for the client's window.
        self.pending = 0
        #: Since when ``send()`` has been waiting for window (0: it is not).
        self.window_since = 0.0

    # -- the request body, from the connection ------------------------------------------------

    def feed(self, data: bytes, flow_length: int) -> bool:
        """A DATA frame's payload arrived; False when the body passed ``max_body_size``."""
        self.received += len(data)
        self.data_at = time.monotonic()
        if self.received > self.conn.state.limits.max_body_size:
            return False
        self.chunks.append((data, flow_length))
        self.wake()
        return True

    def body_done(self) -> None:
        self.more_body = False
        self.wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self.waiter = self.conn.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    # -- ASGI ---------------------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next ``http.request`` message, or ``http.disconnect``."""
        while not self.chunks and self.more_body:
            if self.disconnected or self.complete:
                return dict(_DISCONNECT)
            await self._wait()
        if self.disconnected:
            return dict(_DISCONNECT)
        chunks, self.chunks = self.chunks, []
        body = chunks[0][0] if len(chunks) == 1 else b"".join(c for c, _ in chunks)
        self.conn.acknowledge(self.id, sum(n for _, n in chunks))
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        """``http.response.start``/``body``/``trailers``/``pathsend``/``zerocopysend``.

        Raises:
            ClientDisconnected: the stream was reset or the connection is gone.
            RuntimeError: messages out of order.
            ValueError: an invalid status.
        """
        if self.disconnected:
            raise ClientDisconnected("the stream was reset")
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self._start(message)
            return
        if self.complete:
            raise RuntimeError(f"{kind!r} after the response was complete")
        if kind == "http.response.body":
            await self._body(message.get("body", b""), message.get("more_body", False))
        elif kind == "http.response.pathsend":
            with open(message["path"], "rb") as file:  # noqa: ASYNC230 - reads are chunked
                await self._file(file.fileno(), 0, None, False)
        elif kind == "http.response.zerocopysend":
            fd = message["file"].fileno()
            offset = message.get("offset") or 0
            await self._file(fd, offset, message.get("count"), message.get("more_body", False))
        elif kind == "http.response.trailers" and self.trailers is not None and self.body_ended:
            self._trailers(message)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _start(self, message: Message) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"invalid response status {status!r}")
        headers = [(b":status", b"%d" % status), *response_fields(message.get("headers", ()))]
        self.status = status
        self.response_headers = headers
        self.started = True
        self.no_body = self.scope["method"] == "HEAD" or not status_allows_body(status)
        if message.get("trailers"):
            self.trailers = []

    def _send_headers(self, end: bool) -> None:
        conn = self.conn
        if self.request_id is None:
            self.request_id = conn.state.ids.next()
        # Never indexed: a value unique to each response would churn the HPACK table.
        rid = NeverIndexedHeaderTuple(b"x-request-id", self.request_id)
        headers = [*self.response_headers, *conn.prelude(), rid]
        self.headers_sent = True
        conn.send_headers(self.id, headers, end)

    async def _body(self, body: bytes, more_body: bool) -> None:
        # The last body message ends the stream, unless trailers are still to come.
        end = not more_body and self.trailers is None
        if self.no_body:  # HEAD, 1xx/204/304: the headers alone, once the app is done
            if not more_body:
                self._close_body(end)
            return
        if not self.headers_sent:
            if not more_body and not any(n == b"content-length" for n, _ in self.response_headers):
                self.response_headers.append((b"content-length", b"%d" % len(body)))
            self._send_headers(end=end and not body)
            if end and not body:
                self._finish()
                return
        if body or end:
            await self._data(body, end=end)
        if end:
            self._finish()
        elif not more_body:
            self.body_ended = True  # the trailers end the stream

    def _close_body(self, end: bool) -> None:
        """The app sent its last body message: end the stream (``end``) or wait for trailers."""
        if not self.headers_sent:
            self._send_headers(end=end)
        elif end:
            self.conn.end_stream(self.id)
        self.body_ended = True
        if end:
            self._finish()

    def _trailers(self, message: Message) -> None:
        """``http.response.trailers``: sent as the stream's last HEADERS (RFC 9113 §8.1)."""
        assert self.trailers is not None
        self.trailers.extend(response_fields(message.get("headers", ())))
        if message.get("more_trailers", False):
            return
        if self.no_body:
            self.conn.end_stream(self.id)
        else:
            self.conn.send_headers(self.id, self.trailers, True)
        self.trailers = None
        self._finish()

    async def _data(self, data: bytes, end: bool) -> None:
        """``data`` as DATA frames within the flow-control windows; END_STREAM if ``end``."""
        conn = self.conn
        view = memoryview(data)
        self.sent += len(view)
        while True:
            if self.disconnected:
                raise ClientDisconnected("the stream was reset")
            if conn.write_paused:
                await conn.wait_writable()
                continue
            room = conn.window(self.id) if view else 0
            if view and room <= 0:
                self.pending = len(view)
                self.window_since = self.window_since or time.monotonic()
                await self._wait()
                continue
            self.window_since = 0.0
            piece, view = view[:room], view[room:]
            conn.send_data(self.id, bytes(piece), end and not view)
            if not view:
                self.pending = 0
                return

    async def _file(self, fd: int, offset: int, count: int | None, more_body: bool) -> None:
        if count is None:
            count = os.fstat(fd).st_size - offset
        last = not more_body and self.trailers is None  # this message ends the stream
        if self.no_body or count == 0:
            if not more_body:
                self._close_body(last)
            return
        if not self.headers_sent:
            self._send_headers(end=False)
        loop, end = self.conn.loop, offset + count
        while offset < end:
            size = min(FILE_CHUNK, end - offset)
            data = await loop.run_in_executor(None, os.pread, fd, size, offset)
            if not data:
                raise RuntimeError("file shorter than the range being sent")
            offset += len(data)
            await self._data(data, end=last and offset >= end)
        if not more_body:
            self.body_ended = True
            if last:
                self._finish()

    def _finish(self) -> None:
        self.complete = True
        self.wake()
        conn = self.conn
        log_request(conn.state, self.scope, self.status, self.sent, self.t0, conn, self.request_id)
        self.conn.stream_done(self)

    # -- running the app -----------------------------------------------------------------------

    async def run(self, app: ASGIApp | None = None) -> None:
        """Run the app for this stream; its failures end here, answered and logged."""
        state = self.conn.state
        try:
            await (app or state.app)(self.scope, self.receive, self.send)
        except Exception as exc:
            await self._failed(exc)
        else:
            if not self.complete:
                await self._failed(RuntimeError("the app returned without completing a response"))
        finally:
            if self.task is not None:
                state.tasks.discard(self.task)
            if self.guarded is not None and state.guard is not None:
                state.guard.leave(self.guarded)

    async def _failed(self, exc: Exception) -> None:
        conn = self.conn
        if self.disconnected:
            conn.state.log.debug("http_client_disconnected", path=self.scope["path"])
            return
        if not isinstance(exc, H2Error):
            scope = self.scope
            conn.state.log.error("http_app_error", method=scope["method"], path=scope["path"],
                                 error=repr(exc), exc_info=exc)  # fmt: skip
        if self.complete:
            return
        if self.headers_sent:  # part of a response went out: the stream cannot be repaired
            self.complete = True
            conn.reset(self.id, ErrorCodes.INTERNAL_ERROR, "app_error")
            conn.stream_done(self)
            return
        self.status, self.no_body = 500, False
        body = b"Internal Server Error\n"
        self.response_headers = [
            (b":status", b"500"),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        self._send_headers(end=False)
        try:
            await self._data(body, end=True)
        except (ClientDisconnected, H2Error):
            return
        self._finish()
