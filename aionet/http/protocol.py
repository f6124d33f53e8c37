"""``HttpProtocol``: HTTP/1.1 on httptools (llhttp), one object per connection.

The parser calls back as bytes arrive (``on_message_begin`` … ``on_message_complete``); each
complete head becomes a ``RequestCycle`` that runs the app in a task. Requests are answered
strictly in order: while one is in flight, later pipelined ones wait in a queue, and reading
pauses when the queue is deep or a request body buffers past its high-water mark.

llhttp parses whatever it is fed in one go, so a read full of pipelined requests is fed only up
to the head that fills the queue (``_parse`` cuts it after the right ``CRLF CRLF``); the rest of
that read waits unparsed in ``_backlog`` while reading is paused, and is parsed as the queue
drains. A connection thus holds at most ``MAX_QUEUE`` + 1 parsed requests and one read.

Refusals follow one path: a check raises ``HttpError`` (``aionet.proto.http``), ``reject()``
stops parsing, answers the status with ``Connection: close`` — right away, or after the
responses already owed when requests are in flight — and closes.

The protocol tracks itself with the connection manager inline (``Tracked``, as ``EchoProtocol``
does). It owns no timer: the handler's periodic ``HttpState.tick()`` calls ``check_timeouts``,
which enforces the header, body, keep-alive and send timeouts from timestamps (one stored per
read) and, for the send timeout, the size of the transport's write buffer at each tick.
``switch_protocol()`` is the seam for an upgrade (WebSocket): the connection, still tracked, is
handed to another protocol object.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from ..core.connections import Tracked, format_peer
from ..proto.http import (
    CONTINUE_100,
    HttpError,
    check_transfer_encoding,
    error_response,
    is_token,
    message_start,
    parse_content_length,
    sane_request_id,
)
from .cycle import ClientDisconnected, RequestCycle
from .state import ASGI_VERSION, EXTENSIONS
from .target import address, decode_path, split_target

if TYPE_CHECKING:
    from ..core.connections import ConnectionRecord
    from .state import HttpState

__all__ = ["MAX_QUEUE", "HttpProtocol"]

# Why reading is paused: one bit per reason, so one reason's resume cannot undo another's pause.
PAUSE_BODY = 1  # a request body is buffered past the high-water mark
PAUSE_QUEUE = 2  # too many pipelined requests wait behind the one in flight
PAUSE_HALT = 4  # refused or upgraded: nothing more is parsed

#: Pipelined requests parsed ahead of the one in flight before reading pauses.
MAX_QUEUE = 8
#: Seconds a refused connection keeps draining the client's input before it is closed.
LINGER = 2.0
#: Longest method name passed to the app when llhttp does not know it.
MAX_METHOD = 32
#: Bytes per ``loop.sendfile`` call: each completed piece is progress for ``send_timeout``.
SENDFILE_PIECE = 256 * 1024

_HOST, _TE, _CL, _EXPECT, _REQUEST_ID = range(1, 6)
_SPECIAL = {
    b"host": _HOST,
    b"transfer-encoding": _TE,
    b"content-length": _CL,
    b"expect": _EXPECT,
    b"x-request-id": _REQUEST_ID,
}
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}


def _cut(data: bytes, pos: int, heads: int) -> int:
    """The offset just past the ``heads``-th ``CRLF CRLF`` from ``pos`` (there are more)."""
    for _ in range(heads):
        pos = data.index(b"\r\n\r\n", pos) + 4
    return pos


class HttpProtocol(Tracked, asyncio.Protocol):
    """One HTTP/1.x connection. Built by ``HttpHandler.protocol_factory()``."""

    __slots__ = (
        "_active",
        "_aionet_peer",
        "_aionet_rec",
        "_aionet_slot",
        "_at_boundary",
        "_backlog",
        "_begins",
        "_carry",
        "_carry_method",
        "_chunk_start",
        "_cl",
        "_drain_waiter",
        "_eof",
        "_error",
        "_expect",
        "_feed_size",
        "_framing",
        "_halted",
        "_head_bytes",
        "_head_pending",
        "_head_since",
        "_headers",
        "_host_count",
        "_idle_since",
        "_in_message",
        "_lingering",
        "_max_head",
        "_method",
        "_parsing",
        "_paused",
        "_queue",
        "_read_at",
        "_request_id",
        "_send_left",
        "_send_since",
        "_sendfile",
        "_te",
        "_upgrade_data",
        "_upgraded",
        "_upgrading",
        "_url",
        "client",
        "loop",
        "parser",
        "peer",
        "scheme",
        "server",
        "state",
        "transport",
        "write_paused",
    )

    def __init__(self, state: HttpState) -> None:
        self._aionet_rec: ConnectionRecord | None = None
        self._aionet_peer = None
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self._max_head = state.limits.max_header_size
        # Connection state.
        self._active: RequestCycle | None = None  # the request whose response is in progress
        self._parsing: RequestCycle | None = None  # the request whose body is being parsed
        self._queue: deque[RequestCycle] = deque()
        self._paused = 0
        self._halted = False
        self._eof = False
        self._lingering = False
        self._error: HttpError | None = None  # refusal owed after the queued responses
        self._upgraded: asyncio.BaseProtocol | None = None
        self._upgrade_data = b""
        self._upgrading = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self._carry = self._carry_method = b""
        self._backlog = b""  # the unparsed rest of a read, kept while the queue is full
        self._in_message = False
        self._at_boundary = True
        self._begins = 0
        self._head_pending = False
        self._head_since = self._idle_since = self._read_at = self._send_since = state.now
        self._send_left = 0  # write buffer size at the last tick
        self._sendfile: asyncio.Future[Any] | None = None  # a ``loop.sendfile`` piece in flight
        self._head_bytes = 0
        # Per-message head state, reset by on_message_begin.
        self._method: bytes | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._feed_size = 0
        self._framing = 0  # chunk extensions and trailers of the body being parsed, in bytes
        self._chunk_start = -1  # body bytes before the open chunk (-1: between chunks)
        self._host_count = 0
        self._te: bytes | None = None
        self._cl: bytes | None = None
        self._expect = False
        self._request_id: bytes | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        rec = self._aionet_rec = self._aionet_slot.admit(transport, self._aionet_peer)
        if rec is None:
            return
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self.loop = asyncio.get_running_loop()
        self.client = address(rec.peer)
        self.server = address(transport.get_extra_info("sockname"))
        self.scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        self.peer = format_peer(rec.peer)
        self._idle_since = self.state.now
        self.state.protocols.add(self)

    def data_received(self, data: bytes) -> None:
        rec = self._aionet_rec
        if rec is None:
            return
        rec.bytes_in += len(data)
        rec.last_active = rec.clock.now
        self._read_at = self.state.now
        if self._halted:
            if self._upgraded is not None:
                cast("asyncio.Protocol", self._upgraded).data_received(data)
            return
        if self._backlog:  # parsing stopped at the queue bound: keep the order
            self._backlog += data
            return
        if self._carry:
            data, self._carry = self._carry + data, b""
        self._parse(data)

    def eof_received(self) -> bool | None:
        if self._upgraded is not None:
            return cast("asyncio.Protocol", self._upgraded).eof_received()
        self._eof = True
        if self._lingering:
            return None  # the client saw our reply and closed: close too
        cycle = self._parsing
        if cycle is not None and not self._backlog:  # a body that can never be complete
            self._parsing = None
            self._halt()
            cycle.disconnect()
            if cycle is self._active:
                return None  # the app sees http.disconnect now; the connection closes
            with contextlib.suppress(ValueError):
                self._queue.remove(cycle)
        # A half-closed client still gets the responses it is owed; then we close.
        return True if self._active is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        rec = self._aionet_rec
        if rec is None:
            return
        self._aionet_rec = None
        try:
            self._halted = True
            self.state.protocols.discard(self)
            if self._upgraded is not None:
                self._upgraded.connection_lost(exc)
            self._backlog = b""
            if self._sendfile is not None:
                self._sendfile.cancel()  # an aborted socket never finishes it
            active, queue = self._active, self._queue
            if queue or (active is not None and not active.complete):
                self._log_unanswered(len(queue) + (active is not None and not active.complete))
            for cycle in (active, *queue):
                if cycle is not None:
                    cycle.disconnect()
            queue.clear()
            self._wake_writer()
        finally:
            rec.release()

    def _log_unanswered(self, count: int) -> None:
        """One access-log line for the requests a vanished client left unanswered."""
        if self.state.access is not None:
            self.state.access.info("http_requests_unanswered", count=count, peer=self.peer)

    def pause_writing(self) -> None:
        if self._upgraded is not None:
            self._upgraded.pause_writing()
        self.write_paused = True

    def resume_writing(self) -> None:
        if self._upgraded is not None:
            self._upgraded.resume_writing()
        self.write_paused = False
        self._wake_writer()

    # -- feeding the parser ------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        """Feed ``data`` to the parser, no further than the head that fills the queue.

        A piece fed at once ends after as many ``CRLF CRLF`` as requests may still be queued
        (a request head ends with one; body bytes may hold more, which only makes the pieces
        shorter). When the queue is full, the rest is kept in ``_backlog`` (reading is paused)
        and parsed by ``_parse_backlog`` as responses go out.
        """
        pos, end = 0, len(data)
        while pos < end:
            room = MAX_QUEUE - len(self._queue) + (self._active is None)
            if room <= 0:
                self._backlog = data[pos:]
                self.pause(PAUSE_QUEUE)
                return
            cut = end if data.count(b"\r\n\r\n", pos) <= room else _cut(data, pos, room)
            rest = self._feed(data if pos == 0 and cut == end else data[pos:cut])
            if self._halted:
                if self._upgrading and cut < end:
                    self._upgrade_data += data[cut:]
                return
            if rest:  # a message re-fed after a method rewrite, then the rest of the read
                data, pos = rest + data[cut:], 0
                end = len(data)
            else:
                pos = cut

    def _parse_backlog(self) -> None:
        """The queue has room again: parse what was held back, then read again if it all fit."""
        data, self._backlog = self._backlog, b""
        self._parse(data)
        if not self._backlog and len(self._queue) < MAX_QUEUE:
            self.resume(PAUSE_QUEUE)

    def _feed(self, data: bytes) -> bytes:
        """Feed ``data`` to the parser; returns bytes to feed again (after a method rewrite)."""
        pending = self._head_pending
        cycle = self._parsing  # a body under way when this read began
        before = cycle.received if cycle is not None else 0
        self._feed_size = len(data)
        self._at_boundary = not self._in_message
        self._begins = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data[exc.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc)
        except httptools.HttpParserInvalidMethodError:
            return self._unknown_method(data)
        except httptools.HttpParserError as exc:
            if str(exc) == "Invalid HTTP version":  # well-formed DIGIT.DIGIT llhttp won't take
                self.reject(HttpError(505, "HTTP version not supported"))
            else:
                self.reject(HttpError(400, f"malformed request: {exc}"))
        else:
            if self._head_pending:
                self._count_head_bytes(data, pending)
            elif cycle is not None and cycle is self._parsing:
                self._count_framing(cycle, len(data) - (cycle.received - before))
        return b""

    def _count_framing(self, cycle: RequestCycle, extra: int) -> None:
        """Bound what a chunked body carries besides its data, as the head is bounded.

        ``extra`` is the bytes of a read that fell wholly inside the body and were not body
        data: chunk-size lines and their extensions, trailers. The chunks' own framing is
        credited back by ``on_chunk_complete``, so only extensions and trailers add up (the
        reads where the body begins or ends are not counted: at most a read more).
        """
        self._framing += extra
        if self._framing > self._max_head:
            if self._chunk_start == cycle.received:  # after the last chunk's size line
                self.reject(HttpError(431, "request trailers larger than max_header_size"))
            else:
                self.reject(HttpError(400, "chunk extensions larger than max_header_size"))

    def _count_head_bytes(self, data: bytes, continued: bool) -> None:
        """Bound a head that spans reads (the part llhttp buffers before calling back).

        While the method itself is still incomplete, its bytes are kept (a few at most) so a
        method llhttp rejects in a later read can still be recovered.
        """
        start = 0
        if continued:  # every byte of this read belongs to the pending head
            self._head_bytes += len(data)
        elif self._at_boundary:  # the head began in this read, after ``_begins - 1`` messages
            start = (message_start(data, self._begins - 1) or 0) if self._begins > 1 else 0
            self._head_bytes = len(data) - start
        if self._head_bytes > self._max_head:
            self.reject(HttpError(431, "request head larger than max_header_size"))
        elif not self._url and self._head_bytes <= MAX_METHOD:
            self._carry_method = self._carry_method + data[start:] if continued else data[start:]

    def _callback_failed(self, exc: httptools.HttpParserCallbackError) -> None:
        cause = exc.__context__
        if isinstance(cause, HttpError):
            self.reject(cause)
            return
        self._halt()
        rec = self._aionet_rec
        if rec is not None:
            rec.slot.handler_error(rec, cause if cause is not None else exc)
        self.write(error_response(500, self.state.date.prelude))
        self.close()

    def _unknown_method(self, data: bytes) -> bytes:
        """llhttp knows a fixed list of methods; any other token method goes to the app.

        The failing message starts after the messages already parsed from ``data``; a fresh
        parser gets it with the method replaced by ``GET`` (body framing does not depend on
        the method) and ``on_headers_complete`` puts the real method in the scope.
        """
        if self._begins == 0 and self._carry_method and not self._url:
            rest = self._carry_method + data  # the method began in an earlier read
        else:
            start = message_start(data, self._begins - 1) if self._at_boundary else None
            if start is None or self._begins < 1:
                self.reject(HttpError(400, "invalid method"))
                return b""
            rest = data[start:]
        self.parser = httptools.HttpRequestParser(self)
        self._in_message = False
        space = rest.find(b" ")
        method = rest[:space] if space >= 0 else rest
        if len(method) > MAX_METHOD or not is_token(method):
            self.reject(HttpError(400, "invalid method"))
            return b""
        if space < 0:  # the method continues in the next read
            self._carry = rest
            return b""
        self._method = method
        return b"GET" + rest[space:]

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._begins += 1
        self._carry_method = b""
        self._head_pending = True
        self._head_since = self.state.now
        self._head_bytes = 0
        self._framing = 0
        self._url = b""
        self._headers = []
        self._host_count = 0
        self._te = self._cl = self._request_id = None
        self._expect = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_pending:
            return  # a trailer field: not part of the request's headers (bounded as framing)
        key = name.lower()
        self._headers.append((key, value))
        kind = _SPECIAL.get(key)
        if kind is not None:
            self._special_header(kind, value)

    def _special_header(self, kind: int, value: bytes) -> None:
        if kind == _HOST:
            self._host_count += 1
        elif kind == _TE:
            self._te = value
        elif kind == _CL:
            self._cl = value
        elif kind == _EXPECT:
            self._expect = value.strip().lower() == b"100-continue"
        else:  # X-Request-ID: reused only when it is a short token
            self._request_id = value if sane_request_id(value) else None

    def on_headers_complete(self) -> None:
        self._head_pending = False
        parser = self.parser
        version = parser.get_http_version()
        length = self._check_head(version)
        upgrade = parser.should_upgrade()
        if upgrade and (length or self._te is not None):
            raise HttpError(400, "upgrade request with a body")
        cycle = RequestCycle(
            self,
            self._scope(version),
            http11=version == "1.1",
            keep_alive=parser.should_keep_alive() and not upgrade,
            expect_100=self._expect and version == "1.1",
            request_id=self._request_id,
        )
        self._parsing = cycle
        if self._active is None:
            self._start(cycle)
        else:
            self._queue.append(cycle)
            if len(self._queue) >= MAX_QUEUE:
                self.pause(PAUSE_QUEUE)

    def _check_head(self, version: str) -> int:
        """RFC 9112 checks llhttp leaves to us; returns the declared body length (0 if none)."""
        if version != "1.1" and version != "1.0":
            raise HttpError(505, f"HTTP version {version} is not supported")
        # The head is at most what earlier reads added plus this whole read: only when that
        # could pass the limit is it measured exactly.
        if (
            self._head_bytes + self._feed_size > self._max_head
            and self._head_size() > self._max_head
        ):
            raise HttpError(431, "request head larger than max_header_size")
        if self._host_count > 1 or (self._host_count == 0 and version == "1.1"):
            raise HttpError(400, "an HTTP/1.1 request needs exactly one Host header")
        if self._te is not None:
            check_transfer_encoding(self._te, version)
        if self._cl is None:
            return 0
        length = parse_content_length(self._cl)
        if length > self.state.limits.max_body_size:
            raise HttpError(413, "Content-Length over max_body_size")
        return length

    def _head_size(self) -> int:
        return len(self._url) + sum(len(name) + len(value) + 4 for name, value in self._headers)

    def _scope(self, version: str) -> dict[str, Any]:
        method = self._method or self.parser.get_method()
        self._method = None
        raw_path, query = split_target(self._url)
        state = self.state
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": _METHODS.get(method) or method.decode("ascii"),
            "root_path": state.root_path,
            "path": decode_path(raw_path),
            "raw_path": raw_path,
            "query_string": query,
            "headers": self._headers,
            "extensions": EXTENSIONS,
        }
        if state.lifespan_state is not None:
            scope["state"] = state.lifespan_state.copy()
        return scope

    def on_body(self, body: bytes) -> None:
        cycle = self._parsing
        if cycle is not None:
            cycle.feed(body)

    def on_chunk_header(self) -> None:
        cycle = self._parsing
        if cycle is not None:
            self._chunk_start = cycle.received

    def on_chunk_complete(self) -> None:
        cycle = self._parsing
        if cycle is not None:  # credit the chunk's own framing: size line, CRLF after data
            self._framing -= len(b"%x" % (cycle.received - self._chunk_start)) + 4
        self._chunk_start = -1

    def on_message_complete(self) -> None:
        self._in_message = False
        cycle = self._parsing
        if cycle is not None:
            self._parsing = None
            cycle.body_done()

    # -- request scheduling ------------------------------------------------------------------

    def _start(self, cycle: RequestCycle) -> None:
        self._active = cycle
        state = self.state
        state.requests += 1
        task = cycle.task = self.loop.create_task(cycle.run())
        state.tasks.add(task)

    def response_done(self, cycle: RequestCycle) -> None:
        """``cycle``'s response is complete: start the next queued request, idle, or close."""
        self._active = None
        if self._halted and self._error is None:
            self.close()  # refused mid-body or upgraded: nothing more on this connection
            return
        if not cycle.keep_alive or not cycle.body_complete() or self.state.draining:
            self.close()
            return
        queue = self._queue
        if queue:
            self._start(queue.popleft())
            if self._backlog:
                self._parse_backlog()
            elif len(queue) < MAX_QUEUE:
                self.resume(PAUSE_QUEUE)
        elif self._error is not None:
            self._refuse(self._error)
        elif self._eof:
            self.close()
        else:
            self._idle_since = self.state.now

    def may_keep_alive(self) -> bool:
        """Whether the response being started may leave the connection open."""
        return not (
            self.state.draining
            or self._eof
            or (self._halted and self._error is None)
            or self.state.limits.keepalive_timeout <= 0
        )

    # -- refusals, timeouts, drain -----------------------------------------------------------

    def reject(self, err: HttpError) -> None:
        """Refuse with ``err.status`` and close, after the responses already owed."""
        self._halt()
        if self._url and err.target is None:
            err.target = decode_path(split_target(self._url[:200])[0])
        cycle, active = self._parsing, self._active
        self._parsing = None
        if cycle is not None and cycle is not active:
            with contextlib.suppress(ValueError):
                self._queue.remove(cycle)  # its body broke: it is never answered
        if active is None:
            self._refuse(err)
        elif active is cycle:  # the body of the request in flight broke
            self._refuse(err, answer=active.abandon())
        else:
            self._error = err  # answered once the queued responses are out

    def _refuse(self, err: HttpError, *, answer: bool = True) -> None:
        if answer:
            self.write(error_response(err.status, self.state.date.prelude))
        self._linger()
        if self.state.access is not None:
            self.state.log_refusal(err, self.peer)

    def _linger(self) -> None:
        """Close after a refusal without losing the reply to a reset (nginx's lingering close).

        Closing a socket with unread input makes the kernel send RST, which can destroy the
        reply before the client reads it. So: flush and send FIN, keep reading (discarding)
        until the client closes or ``LINGER`` seconds pass.
        """
        self._halted = True
        if self._aionet_rec is None or not self.transport.can_write_eof():
            self.close()
            return
        self._lingering = True
        self._idle_since = self.state.now
        self.transport.write_eof()
        self._paused = 0
        self.transport.resume_reading()

    def check_timeouts(self, now: float) -> None:
        """Called by the periodic tick: abort a connection whose output is stuck, 408 a slow
        head or body, close an idle keep-alive connection."""
        limits = self.state.limits
        if limits.send_timeout and self._send_stalled(now, limits.send_timeout):
            self._abort("http_send_timeout")
            return
        if self._halted:
            if self._lingering and now - self._idle_since >= LINGER:
                self.close()
            return
        if self._head_pending:
            if limits.header_timeout and now - self._head_since >= limits.header_timeout:
                self.reject(HttpError(408, "request head not complete within header_timeout"))
        elif self._parsing is not None:
            if (
                limits.body_timeout
                and not self._paused  # we are not reading: not the client's delay
                and not self._parsing.expect_100  # it waits for our 100 Continue
                and now - self._read_at >= limits.body_timeout
            ):
                self.reject(HttpError(408, "request body stalled longer than body_timeout"))
        elif self._active is None:
            timeout = limits.keepalive_timeout or limits.header_timeout
            if timeout and now - self._idle_since >= timeout:
                self.close()

    def _send_stalled(self, now: float, timeout: float) -> bool:
        """Whether output has waited on the client for ``timeout`` without progress.

        Progress is the transport's write buffer shrinking between two ticks (or a
        ``sendfile`` piece completing); an empty buffer is never stalled.
        """
        if self._sendfile is not None:
            return now - self._send_since >= timeout
        if self._aionet_rec is None:
            return False
        size = self.transport.get_write_buffer_size()
        last, self._send_left = self._send_left, size
        if size == 0 or last == 0 or size < last:
            self._send_since = now
            return False
        return now - self._send_since >= timeout

    def _abort(self, event: str) -> None:
        """Drop the connection and whatever it still buffers (the client is not reading)."""
        self._halted = True
        if self._aionet_rec is not None:
            self.state.log.info(event, peer=self.peer)
            self.transport.abort()

    def drain(self) -> None:
        """Server drain: an idle connection closes after a short grace, a busy one after its
        response (the draining state sends ``Connection: close``).

        The grace lets a request that is already on its way (a client reusing the connection
        the moment its last response arrived) be read and answered with ``Connection: close``
        instead of hitting a closed socket: closing an idle keep-alive connection the instant
        a drain starts turns that common race into client errors.
        """
        if self._active is None and not self._halted:
            self._idle_since = self.state.now

    def close_if_idle(self) -> None:
        """End of the drain grace: close if still idle (no request begun)."""
        if self._active is None and not self._halted and not self._head_pending:
            self.close()

    # -- transport helpers -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        rec = self._aionet_rec
        if rec is not None:
            rec.bytes_out += len(data)
            self.transport.write(data)

    def close(self) -> None:
        self._halted = True
        if self._aionet_rec is not None:
            self.transport.close()

    def pause(self, reason: int) -> None:
        if not self._paused and self._aionet_rec is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self._aionet_rec is not None:
                self._read_at = self.state.now  # the body timeout runs from now again
                self.transport.resume_reading()

    def send_continue(self) -> None:
        """``100 Continue``: the client sends its body from now (the body timeout runs)."""
        self._read_at = self.state.now
        self.write(CONTINUE_100)

    def _halt(self) -> None:
        self._halted = True
        self.pause(PAUSE_HALT)

    async def wait_writable(self) -> None:
        """Wait until the transport's write buffer drains below its low-water mark."""
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self.loop.create_future()
        await waiter

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sendfile(self, file: Any, offset: int, count: int) -> bool:
        """Send ``count`` bytes of ``file`` with ``loop.sendfile``; False if unavailable.

        Native sendfile needs a plain socket transport of the asyncio loop (not uvloop, not
        TLS); the caller then falls back to reading the file in chunks. The file goes in
        pieces of ``SENDFILE_PIECE`` so that ``send_timeout`` sees progress.

        Raises:
            ClientDisconnected: the connection was lost (or aborted) part way.
        """
        state = self.state
        if not state.sendfile or self._aionet_rec is None:
            return False
        start, end = offset, offset + count
        while offset < end:
            size = min(SENDFILE_PIECE, end - offset)
            try:
                await self._sendfile_piece(file, offset, size)
            except NotImplementedError:
                state.sendfile = False  # this loop has no sendfile at all (uvloop)
                return False
            except (asyncio.SendfileNotAvailableError, RuntimeError):
                if offset == start:  # nothing sent yet: the caller reads the file instead
                    return False  # this transport cannot (TLS), or it is closing
                raise ClientDisconnected("the client disconnected") from None
            offset += size
        return True

    async def _sendfile_piece(self, file: Any, offset: int, size: int) -> None:
        rec = self._aionet_rec
        if rec is None:
            raise ClientDisconnected("the client disconnected")
        self._send_since = self.state.now
        piece = self._sendfile = asyncio.ensure_future(
            self.loop.sendfile(self.transport, file, offset, size, fallback=False)
        )
        try:
            await piece
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our own task is being cancelled
            raise ClientDisconnected("the client disconnected") from None
        finally:
            self._sendfile = None
        rec.bytes_out += size

    # -- upgrades ------------------------------------------------------------------------------

    def _on_upgrade(self, leftover: bytes) -> None:
        """An upgrade (or CONNECT) request was parsed: it is answered as a plain request, with
        ``Connection: close``, unless ``switch_protocol()`` takes the connection first."""
        self._halt()
        self._upgrading = True
        self._upgrade_data = leftover

    def switch_protocol(self, protocol: asyncio.Protocol, data: bytes = b"") -> None:
        """Hand this connection to ``protocol`` (after a ``101``), keeping it tracked.

        ``protocol`` gets ``connection_made(transport)``, then the bytes that followed the
        upgrade request and ``data``; every later callback is forwarded to it, and the
        connection manager still counts and releases the connection through this object.
        """
        self._upgraded = protocol
        self._halted = True
        protocol.connection_made(self.transport)
        leftover, self._upgrade_data = self._upgrade_data + data, b""
        self._paused = 0
        self.transport.resume_reading()
        if leftover:
            protocol.data_received(leftover)
