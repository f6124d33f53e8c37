"""``HttpProtocol``'s input side: feeding llhttp, its callbacks, and the order of requests.

The parser calls back as bytes arrive (``on_message_begin`` … ``on_message_complete``); each
complete head becomes a ``RequestCycle`` that runs the app in a task. Requests are answered
strictly in order: while one is in flight, later pipelined ones wait in a queue, and reading
pauses when the queue is deep or a request body buffers past its high-water mark.

llhttp parses whatever it is fed in one go, so a read full of pipelined requests is fed only up
to the head that fills the queue (``_parse`` cuts it after the right ``CRLF CRLF``); the rest of
that read waits unparsed in ``_backlog`` while reading is paused, and is parsed as the queue
drains. A connection thus holds at most ``MAX_QUEUE`` + 1 parsed requests and one read.

What llhttp leaves to us is checked here too (RFC 9112: one Host, Transfer-Encoding,
Content-Length, head and chunk-framing sizes, methods llhttp does not know); a failed check
raises ``HttpError``, which ``reject()`` answers.

A base of ``HttpProtocol`` (``aionet.http.protocol``), which holds the slots and the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import httptools

from ..proto.http import (
    HttpError,
    check_transfer_encoding,
    error_response,
    is_token,
    message_start,
    parse_content_length,
    sane_request_id,
)
from ._deadlines import _Deadlines
from ._output import PAUSE_QUEUE
from ._ws_handshake import Handshake, is_websocket_upgrade
from .cycle import RequestCycle, guard_forwarded, refused_app, refused_response
from .state import ASGI_VERSION, EXTENSIONS, WS_EXTENSIONS
from .target import decode_path, split_target
from .websocket import WebSocket

if TYPE_CHECKING:
    from ..proto.forwarded import ForwardedPolicy
    from .websocket import WsHost

__all__ = ["MAX_METHOD", "MAX_QUEUE"]

#: Pipelined requests parsed ahead of the one in flight before reading pauses.
MAX_QUEUE = 8
#: Longest method name passed to the app when llhttp does not know it.
MAX_METHOD = 32

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


class _Reading(_Deadlines):
    """Parse, check and queue requests (the slots are ``HttpProtocol``'s)."""

    if not TYPE_CHECKING:  # adds no instance dict; mypy still sees the attributes
        __slots__ = ()
    parser: httptools.HttpRequestParser
    client: tuple[str, int | None] | None
    server: tuple[str, int | None] | None
    scheme: str
    _max_head: int
    _backlog: bytes  # the unparsed rest of a read, kept while the queue is full
    _carry: bytes  # a read that ended inside an unknown method, fed again with the next
    _carry_method: bytes  # the bytes of a method still incomplete at the end of a read
    _upgrading: bool
    _upgrade_data: bytes
    _ws: WebSocket | None  # the WebSocket session this connection was upgraded for
    _in_message: bool
    _at_boundary: bool
    _begins: int
    _feed_size: int
    _head_bytes: int
    # Per-message head state, reset by on_message_begin.
    _method: bytes | None
    _headers: list[tuple[bytes, bytes]]
    _framing: int  # chunk extensions and trailers of the body being parsed, in bytes
    _chunk_start: int  # body bytes before the open chunk (-1: between chunks)
    _host_count: int
    _te: bytes | None
    _cl: bytes | None
    _expect: bool
    _request_id: bytes | None
    _scope_base: dict[str, Any] | None  # the scope's keys, with this connection's constants

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
        self._head_since = self.state.clock()
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
        if (
            upgrade
            and self.state.websocket is not None
            and self._active is None
            and self._method is None
            and is_websocket_upgrade(parser.get_method(), self._headers)
        ):
            self._websocket(version)
            return
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
        scope = self._scope_base
        if scope is None:  # what every request of this connection shares, in the ASGI order
            scope = self._scope_base = {
                "type": "http",
                "asgi": ASGI_VERSION,
                "http_version": None,
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,
                "method": None,
                "root_path": state.root_path,
                "path": None,
                "raw_path": None,
                "query_string": None,
                "headers": None,
                "extensions": EXTENSIONS,
            }
        scope = scope.copy()  # cheaper than building the dict anew
        scope["http_version"] = version
        scope["method"] = _METHODS.get(method) or method.decode("ascii")
        scope["path"] = decode_path(raw_path)
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["headers"] = self._headers
        if state.lifespan_state is not None:
            scope["state"] = state.lifespan_state.copy()
        if state.forwarded is not None:
            self._forwarded(scope, state.forwarded)
        return scope

    def _forwarded(self, scope: dict[str, Any], policy: ForwardedPolicy) -> None:
        """``client`` and ``scheme`` as a trusted proxy forwarded them (``proxy_headers``)."""
        peer = self.client[0] if self.client else None
        resolved = policy.resolve(peer, self._headers)
        if resolved is None:
            return
        if resolved.host is not None:
            scope["client"] = (resolved.host, 0)
        if resolved.scheme in ("http", "https"):
            scope["scheme"] = resolved.scheme

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
        if state.guard is not None and self._guard(cycle):
            return
        task = cycle.task = self.loop.create_task(cycle.run())
        state.tasks.add(task)

    def _guard(self, cycle: RequestCycle) -> bool:
        """The listener's access rules and per-IP cap for a request a trusted proxy forwarded
        (``guard_forwarded``): True when the request was refused (``403`` for the lists,
        ``429`` for the rate and the cap; the connection, the proxy's, stays)."""
        ip, reason = guard_forwarded(self.state, self.client, cycle.scope, self.peer)
        cycle.guarded = ip
        if reason is None:
            return False
        task = cycle.task = self.loop.create_task(cycle.run(refused_app(reason)))
        self.state.tasks.add(task)
        return True

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
            self._idle_since = self.state.clock()

    # -- upgrades ------------------------------------------------------------------------------

    def _websocket(self, version: str) -> None:
        """A WebSocket handshake: refused here when malformed, else handed to the app (ASGI
        ``websocket`` scope) in a ``WebSocket`` session; parsing stops (``_on_upgrade``)."""
        state = self.state
        limits = state.websocket
        deflate = limits is not None and limits.per_message_deflate
        handshake = Handshake(self._url, self._headers, deflate)
        state.requests += 1
        if handshake.refusal is not None:
            self._halt()
            self.write(handshake.refusal)
            self._linger()
            return
        scope = self._scope(version)
        del scope["method"]
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
        scope["subprotocols"] = [
            name.strip()
            for key, value in self._headers
            if key == b"sec-websocket-protocol"
            for name in value.decode("latin-1").split(",")
            if name.strip()
        ]
        scope["extensions"] = WS_EXTENSIONS
        session = self._ws = WebSocket(cast("WsHost", self), scope, handshake)
        if state.guard is not None and self._guard_websocket(session):
            return
        session.start()

    def _guard_websocket(self, session: WebSocket) -> bool:
        """``_guard`` for a WebSocket handshake a trusted proxy forwarded: True when refused
        (403 or 429, as a request; the connection closes after the reply)."""
        ip, reason = guard_forwarded(self.state, self.client, session.scope, self.peer)
        session.guarded = ip
        if reason is None:
            return False
        self._ws = None
        self._halt()
        self.write(refused_response(reason, self.state.date.prelude))
        self._linger()
        return True

    def _on_upgrade(self, leftover: bytes) -> None:
        """An upgrade (or CONNECT) request was parsed: it is answered as a plain request, with
        ``Connection: close``, unless ``switch_protocol()`` takes the connection first."""
        self._halt()
        self._upgrading = True
        self._upgrade_data = leftover
