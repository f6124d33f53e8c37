"""``RequestCycle``: one request/response exchange, as the ASGI app sees it.

``receive()`` hands out the request body as the parser delivers it (sending ``100 Continue``
the first time the app asks for a body the client is holding back); ``send()`` frames the
response: the head is held until the first body message so that a response sent in one piece
goes out in one write with a ``Content-Length``; otherwise the app's ``Content-Length`` is
honoured or the body is chunked (HTTP/1.1) or close-delimited (HTTP/1.0). ``send()`` waits
while the transport's write buffer is over its high-water mark.

An app that raises gets a ``500`` when nothing was written yet (the connection stays open when
the request body was read), else the connection is closed; the traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..proto.http import (
    LAST_CHUNK,
    HttpError,
    chunk,
    error_response,
    phrase,
    status_allows_body,
    status_line,
)

if TYPE_CHECKING:
    from .state import HttpState
    from .types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HIGH_WATER", "ClientDisconnected", "RequestCycle", "refused_app", "refused_response"]

#: Request body bytes buffered for the app before reading from the client pauses.
HIGH_WATER = 64 * 1024
#: A body up to this size is copied behind the head so both go out in one write.
SMALL_BODY = 64 * 1024
#: Bytes read per step when a file is sent without ``sendfile``.
FILE_CHUNK = 256 * 1024
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class ClientDisconnected(OSError):
    """``send()`` after the client went away (ASGI 2.4: a server-specific ``OSError``)."""


class HttpConnection(Protocol):
    """What a request cycle uses of the connection that carries it.

    ``HttpProtocol`` (HTTP/1.1) is one; it is the seam a WebSocket or HTTP/2 connection fills to
    host the same request cycle. Declared here, beside its user, so that the cycle imports
    neither the protocol nor anything that imports it.
    """

    state: HttpState
    loop: asyncio.AbstractEventLoop
    peer: str
    write_paused: bool

    def write(self, data: bytes) -> None:
        """Queue response bytes (flow control through ``write_paused``/``wait_writable``)."""

    def close(self) -> None:
        """Close once what was written is flushed."""

    def pause(self, reason: int) -> None:
        """Stop reading for ``reason`` (a bit: body buffer full, queue full, ...)."""

    def resume(self, reason: int) -> None:
        """Read again when no reason to pause is left."""

    def send_continue(self) -> None:
        """Send ``100 Continue`` if the request asked for it and nothing was sent yet."""

    async def wait_writable(self) -> None:
        """Return when the transport accepts writes again (raises if the peer is gone)."""

    async def sendfile(self, file: Any, offset: int, count: int) -> bool:
        """Send ``count`` bytes of ``file`` from ``offset`` zero-copy; False if unsupported."""

    def may_keep_alive(self) -> bool:
        """Whether the connection may serve another request after this one."""

    def response_done(self, cycle: RequestCycle) -> None:
        """``cycle``'s response is complete: start the next queued request, or close."""


class RequestCycle:
    """The state of one request and its response; ``run()`` is the request's task."""

    __slots__ = (
        "block",
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "delivered",
        "disconnected",
        "expect_100",
        "guarded",
        "http11",
        "keep_alive",
        "length",
        "more_body",
        "no_body",
        "proto",
        "received",
        "request_id",
        "scope",
        "sent",
        "started",
        "status",
        "t0",
        "task",
        "waiter",
        "wrote_head",
    )

    def __init__(
        self,
        proto: HttpConnection,
        scope: dict[str, Any],
        *,
        http11: bool,
        keep_alive: bool,
        expect_100: bool,
        request_id: bytes | None,
    ) -> None:
        self.proto = proto
        self.scope = scope
        self.http11 = http11
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.request_id = request_id
        self.task: asyncio.Task[None] | None = None
        #: The forwarded client counted by the listener's ``ClientGuard`` until the end.
        self.guarded: str | None = None
        state = proto.state
        self.t0 = (
            time.perf_counter() if state.access is not None or state.metrics is not None else 0.0
        )
        # Request body.
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.more_body = True
        self.delivered = False
        self.waiter: asyncio.Future[None] | None = None
        # Response.
        self.started = False
        self.wrote_head = False
        self.complete = False
        self.disconnected = False
        self.no_body = False
        self.chunked = False
        self.status = 0
        self.block = b""
        self.length: int | None = None
        self.sent = 0

    # -- the request body, from the parser ---------------------------------------------------

    def feed(self, body: bytes) -> None:
        """A piece of the request body arrived.

        Raises:
            HttpError: 413 once the body passes ``max_body_size`` (chunked bodies).
        """
        self.received += len(body)
        if self.received > self.proto.state.limits.max_body_size:
            raise HttpError(413, "request body over max_body_size")
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER:
            self.proto.pause(1)  # PAUSE_BODY
        self._wake()

    def body_done(self) -> None:
        self.more_body = False
        self._wake()

    def body_complete(self) -> bool:
        return not self.more_body

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def abandon(self) -> bool:
        """The request's framing broke mid-body: the app sees a disconnect from now on.

        Returns True when nothing of the response was written (the caller may answer).
        """
        answer = not self.wrote_head
        self.disconnected = self.complete = True
        self._wake()
        return answer

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI receive -----------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next ``http.request`` message, or ``http.disconnect``."""
        while not (self.chunks or not (self.more_body or self.delivered)):
            if self.disconnected or self.complete:
                return dict(_DISCONNECT)
            if self.expect_100 and self.more_body:
                self.expect_100 = False
                if not self.wrote_head:
                    self.proto.send_continue()
            waiter = self.waiter = self.proto.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        return self._take()

    def _take(self) -> Message:
        chunks = self.chunks
        if not chunks:
            body = b""
        elif len(chunks) == 1:
            body = chunks.pop()
        else:
            body = b"".join(chunks)
            chunks.clear()
        if self.buffered > HIGH_WATER:
            self.proto.resume(1)  # PAUSE_BODY
        self.buffered = 0
        more = self.more_body
        if not more:
            self.delivered = True
        return {"type": "http.request", "body": body, "more_body": more}

    # -- ASGI send --------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Handle ``http.response.start``/``body``/``zerocopysend``/``pathsend``.

        Raises:
            ClientDisconnected: the client has gone away.
            RuntimeError: messages out of order, or a body longer than its Content-Length.
            ValueError: an invalid status or header.
        """
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self._start(message)
            return
        if self.complete:
            raise RuntimeError(f"{kind!r} after the response was complete")
        if self.proto.write_paused:
            await self.proto.wait_writable()
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
        if kind == "http.response.body":
            self._body(message.get("body", b""), message.get("more_body", False))
        elif kind == "http.response.zerocopysend":
            await self._zerocopy(message)
        elif kind == "http.response.pathsend":
            await self._pathsend(message["path"])
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _start(self, message: Message) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"invalid response status {status!r}")
        self.block, self.length, close = self.proto.state.headers.encode(message.get("headers", ()))
        self.status = status
        self.started = True
        if close:
            self.keep_alive = False

    def _head(self, body_length: int, more_body: bool) -> bytes:
        """The response head, deciding the framing from what the app has sent so far."""
        return b"".join(self._head_parts(body_length, more_body))

    def _head_parts(self, body_length: int, more_body: bool) -> list[bytes]:
        """``_head`` in pieces, for the caller to join with the first piece of the body."""
        self.wrote_head = True
        framing = b""
        if self.scope["method"] == "HEAD" or not status_allows_body(self.status):
            self.no_body = True
        elif self.length is None:
            if not more_body:
                self.length = body_length
                framing = b"content-length: %d\r\n" % body_length
            elif self.http11:
                self.chunked = True
                framing = b"transfer-encoding: chunked\r\n"
            else:
                self.keep_alive = False  # HTTP/1.0 without a length: the close ends the body
        return [
            status_line(self.status), self.proto.state.date.prelude, b"x-request-id: ",
            self._rid(), b"\r\n",
            self.block, framing, self._connection(),
        ]  # fmt: skip

    def _rid(self) -> bytes:
        """This request's id, made at its first use (the head, an error, the access log)."""
        rid = self.request_id
        if rid is None:
            rid = self.request_id = self.proto.state.ids.next()
        return rid

    def _prelude(self) -> bytes:
        return b"%sx-request-id: %s\r\n" % (self.proto.state.date.prelude, self._rid())

    def _connection(self) -> bytes:
        # A client still holding back its body for a 100 Continue will never send it now.
        waiting = self.expect_100 and self.more_body
        keep = self.keep_alive = self.keep_alive and not waiting and self.proto.may_keep_alive()
        if not keep:
            return b"connection: close\r\n\r\n"
        return b"\r\n" if self.http11 else b"connection: keep-alive\r\n\r\n"

    def _body(self, body: bytes, more_body: bool) -> None:
        if not self.wrote_head:
            head = self._head_parts(len(body), more_body)
            data = self._frame(body, more_body)
            if len(data) <= SMALL_BODY:  # head and body in one write, joined once
                head.append(data)
                self.proto.write(b"".join(head))
            else:
                self.proto.write(b"".join(head))
                self.proto.write(data)
        elif body or not more_body:
            data = self._frame(body, more_body)
            if data:
                self.proto.write(data)
        if not more_body:
            self._finish()

    def _frame(self, body: bytes, more_body: bool) -> bytes:
        """``body`` as it goes on the wire under the framing chosen by ``_head``."""
        if self.no_body:
            return b""
        self.sent += len(body)
        if self.chunked:
            data = chunk(body) if body else b""
            return data if more_body else data + LAST_CHUNK
        if self.length is not None and self.sent > self.length:
            raise RuntimeError("response body longer than its Content-Length")
        return body

    def _finish(self) -> None:
        if self.length is not None and self.sent < self.length and not self.no_body:
            self.keep_alive = False  # the body is short of its Content-Length: end it by closing
            self.proto.state.log.warning(
                "http_response_truncated", path=self.scope["path"], length=self.length
            )
        self.complete = True
        self._wake()
        self._access_log()
        self.proto.response_done(self)

    # -- files ------------------------------------------------------------------------------

    async def _pathsend(self, path: str) -> None:
        with open(path, "rb") as file:  # noqa: ASYNC230 - one open(); reads are chunked below
            await self._zerocopy({"file": file, "more_body": False})

    async def _zerocopy(self, message: Message) -> None:
        """Send part of an open file: ``sendfile`` when the transport allows, else reads."""
        fd = message["file"].fileno()
        offset = message.get("offset") or 0
        count = message.get("count")
        more_body = message.get("more_body", False)
        if count is None:
            count = os.fstat(fd).st_size - offset
        if count <= SMALL_BODY:
            self._body(os.pread(fd, count, offset), more_body)
            return
        if not self.wrote_head:
            self.proto.write(self._head(count, True))
        if self.no_body:
            self._body(b"", more_body)
            return
        if self.chunked:
            self.proto.write(b"%x\r\n" % count)
        await self._file_body(message["file"], offset, count)
        if self.chunked:
            self.proto.write(b"\r\n")
        self._body(b"", more_body)

    async def _file_body(self, file: Any, offset: int, count: int) -> None:
        self.sent += count
        if self.length is not None and self.sent > self.length:
            raise RuntimeError("response body longer than its Content-Length")
        if await self.proto.sendfile(file, offset, count):
            return
        loop, fd = self.proto.loop, file.fileno()
        end = offset + count
        while offset < end:
            size = min(FILE_CHUNK, end - offset)
            data = await loop.run_in_executor(None, os.pread, fd, size, offset)
            if not data:
                raise RuntimeError("file shorter than the range being sent")
            offset += len(data)
            self.proto.write(data)
            if self.proto.write_paused:
                await self.proto.wait_writable()
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")

    # -- running the app ---------------------------------------------------------------------

    async def run(self, app: ASGIApp | None = None) -> None:
        """Run the app (``app``, else the listener's) for this request; its failures end here,
        answered and logged."""
        state = self.proto.state
        try:
            await (app or state.app)(self.scope, self.receive, self.send)
        except Exception as exc:
            self._failed(exc)
        except asyncio.CancelledError:
            if not self.complete:
                self.proto.close()
            raise
        else:
            if not self.complete:
                self._failed(RuntimeError("the ASGI app returned without completing a response"))
        finally:
            if self.task is not None:
                state.tasks.discard(self.task)
            if self.guarded is not None and state.guard is not None:
                state.guard.leave(self.guarded)

    def _failed(self, exc: Exception) -> None:
        proto = self.proto
        if self.disconnected:
            proto.state.log.debug("http_client_disconnected", path=self.scope["path"])
            return
        proto.state.log.error(
            "http_app_error",
            method=self.scope["method"],
            path=self.scope["path"],
            request_id=self._rid().decode("ascii"),
            error=repr(exc),
            exc_info=exc,
        )
        if self.complete:
            return  # it raised after its response: nothing to repair
        if self.wrote_head:
            self.complete = True
            self.keep_alive = False
            proto.close()
            return
        self.status = 500
        self.wrote_head = self.complete = True
        keep = self.keep_alive = self.keep_alive and proto.may_keep_alive() and not self.more_body
        proto.write(error_response(500, self._prelude(), close=not keep))
        self._access_log()
        proto.response_done(self)

    def _access_log(self) -> None:
        state = self.proto.state
        if state.access is None:
            if state.metrics is not None:  # metrics alone: no log line to prepare
                state.metrics.observe(self.status, time.perf_counter() - self.t0)
            return
        log_request(state, self.scope, self.status, self.sent, self.t0, self.proto, self._rid())


def log_request(
    state: HttpState,
    scope: dict[str, Any],
    status: int,
    sent: int,
    t0: float,
    conn: Any,
    request_id: bytes | None,
) -> None:
    """One answered request: the metrics' status class and latency, the access-log line.
    Every wire protocol (HTTP/1.1, HTTP/2) records its requests through this one place;
    ``conn`` is the connection (its ``peer``, and its ``client`` to tell a forwarded one)."""
    access, metrics = state.access, state.metrics
    if access is None and metrics is None:
        return
    duration = time.perf_counter() - t0
    if metrics is not None:
        metrics.observe(status, duration, scope["http_version"] == "2")
    if access is None:
        return
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "bytes": sent,
        "duration": round(duration, 6),
        "peer": conn.peer,
        "request_id": request_id.decode("ascii") if request_id is not None else None,
    }
    if scope["http_version"] == "2":
        fields["http_version"] = "2"
    client = scope.get("client")  # a trusted proxy forwarded another address than the peer's
    if client is not None and client != getattr(conn, "client", None):
        fields["client"] = client[0]
    access.info("http_request", **fields)


def guard_forwarded(
    state: HttpState, conn_client: tuple[str, Any] | None, scope: dict[str, Any], peer: str
) -> tuple[str | None, str | None]:
    """The listener's access rules and per-IP cap for a request a trusted proxy forwarded (its
    connection passed them at accept): ``(ip, None)`` when admitted — ``ip`` is counted until
    ``state.guard.leave(ip)`` —, ``(None, reason)`` when refused (``refused_app(reason)``
    answers it), ``(None, None)`` when the rules do not apply per request here. Every wire
    protocol (HTTP/1.1 requests and WebSocket handshakes, HTTP/2 streams) admits through it."""
    forwarded, guard = state.forwarded, state.guard
    trusted = forwarded is not None and forwarded.trusts(conn_client[0] if conn_client else None)
    if guard is None or not trusted:
        return None, None
    client = scope["client"]
    ip = client[0] if client else None
    if ip is None:
        return None, None
    reason = guard.enter(ip)
    if reason is None:
        return ip, None
    state.log.info("http_client_refused", client=ip, peer=peer, reason=reason)
    return None, reason


#: ``ClientGuard`` refusal reasons → the status a refused request gets.
_REFUSED_STATUS = {"denied": 403, "not_allowed": 403}


def refused_app(reason: str) -> ASGIApp:
    """The answer to a request the listener's access rules or per-IP cap refuse: ``403`` for
    the allow/deny lists, else ``429`` with ``Retry-After`` (nginx's ``limit_req`` status when
    set to 429). The request body is not read; the connection's framing handles it."""
    status = _REFUSED_STATUS.get(reason, 429)
    body = b"%d %s\n" % (status, phrase(status).encode())
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if status == 429:
        headers.append((b"retry-after", b"1"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def refused_response(reason: str, prelude: bytes) -> bytes:
    """``refused_app``'s answer as bytes, with ``Connection: close`` (a WebSocket handshake)."""
    status = _REFUSED_STATUS.get(reason, 429)
    body = b"%d %s\n" % (status, phrase(status).encode())
    retry = b"retry-after: 1\r\n" if status == 429 else b""
    return (
        b"%s%scontent-type: text/plain; charset=utf-8\r\n%scontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status_line(status), prelude, retry, len(body), body)
    )
