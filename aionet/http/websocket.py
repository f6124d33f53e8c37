"""``WebSocket``: one ASGI ``websocket`` session on an ``http`` listener (RFC 6455, ASGI 2.4).

Created by ``HttpProtocol`` when an upgrade request asks for WebSocket (``_ws_handshake``);
its task runs the app with the ``websocket`` scope. Before the app accepts, the connection is
still HTTP: ``websocket.close`` refuses with ``403`` and the ``websocket.http.response``
extension sends any HTTP response. ``websocket.accept`` writes the ``101`` and takes the
connection over through ``HttpProtocol.switch_protocol()``, so it stays tracked (counted,
per-IP caps, ``/connections`` as ``websocket``; every read is activity for the idle timeout).

Framing is ``websockets``' sans-IO ``Protocol`` (why: ``_ws_handshake``): it answers pings,
completes the close handshake and fails the connection with the RFC's code on a violation
(1002 masking, reserved bits or opcodes, control frames; 1009 over ``max_size``); text is
checked as UTF-8 here, incrementally (1007). Without an extension, the common frames take a
fast path (``_ws_frames``): a whole, final, unfragmented message is unmasked and delivered
here, and a message sent is one frame written whole; every other frame still goes, whole, to
``websockets``.

Flow control, as ``_output.py`` does it: ``send()`` waits while the transport's write buffer
is over ``write_limit`` (a client that never reads parks the app, never grows memory);
received messages wait for the app up to ``MAX_QUEUE`` of them, then reading pauses. No timer
per connection: ``HttpState.tick()`` calls ``check_timeouts`` (pings, a dead peer, the close
handshake timeout) when ``next_check`` said — an idle session is looked at once a ping
interval, not on every tick.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from websockets.exceptions import InvalidState
from websockets.protocol import Protocol as Framing
from websockets.protocol import Side, State

from ..proto.http import error_response, phrase, status_line
from ._ws_frames import GATHER, server_head
from ._ws_receive import MAX_QUEUE, MAX_QUEUE_BYTES, PAUSE_WS, FrameReceiver
from .cycle import ClientDisconnected
from .state import spare

if TYPE_CHECKING:
    import codecs

    from ..core.connections import Bucket, ConnectionRecord
    from ._ws_handshake import Handshake
    from .state import HttpState
    from .types import Message

__all__ = ["MAX_QUEUE", "MAX_QUEUE_BYTES", "PAUSE_WS", "WebSocket", "WsLimits"]

_HANDSHAKE, _OPEN, _CLOSED = range(3)
_NO_STATUS, _ABNORMAL, _GOING_AWAY, _INTERNAL = 1005, 1006, 1001, 1011


@dataclass(frozen=True, slots=True)
class WsLimits:
    """The WebSocket options of one listener (bytes and seconds; 0 = off)."""

    max_size: int = 16 * 1024 * 1024
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 10.0
    write_limit: int = 64 * 1024
    per_message_deflate: bool = True


class WsHost(Protocol):
    """What a session uses of the HTTP connection it came on (``HttpProtocol`` is one)."""

    state: HttpState
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    peer: str
    write_paused: bool
    _aionet_rec: ConnectionRecord | None

    def write(self, data: bytes) -> None: ...
    def write_pair(self, head: bytes, body: bytes) -> None: ...
    def close(self) -> None: ...
    def pause(self, reason: int) -> None: ...
    def resume(self, reason: int) -> None: ...
    async def wait_writable(self) -> None: ...
    def switch_protocol(self, protocol: asyncio.Protocol, data: bytes = b"") -> None: ...


class WebSocket(FrameReceiver, asyncio.Protocol):
    """One WebSocket session: the ASGI ``receive``/``send`` pair and the protocol callbacks."""

    __slots__ = (
        "_connect_sent",
        "_draining",
        "_fast",
        "_fragments",
        "_framing",
        "_handshake",
        "_holding",
        "_host",
        "_inbox",
        "_inbox_bytes",
        "_limit",
        "_need",
        "_pending",
        "_phase",
        "_ping",
        "_ping_at",
        "_plain",
        "_response",
        "_t0",
        "_text",
        "_utf8",
        "_waiter",
        "closing_since",
        "code",
        "due",
        "guarded",
        "limits",
        "messages_in",
        "messages_out",
        "reason",
        "scope",
        "task",
    )

    def __init__(self, host: WsHost, scope: dict[str, Any], handshake: Handshake) -> None:
        self._host = host
        self.due: Bucket | None = None  # its bucket in the state's deadline wheel
        self.scope = scope
        self._handshake = handshake
        self.limits: WsLimits = host.state.websocket or WsLimits()
        self._framing: Framing | None = None
        self._phase = _HANDSHAKE
        self._connect_sent = False
        self._draining = False
        self._inbox: deque[tuple[Message, int]] = deque()  # each with its size in bytes
        self._inbox_bytes = 0
        self._holding = False  # reading is paused until the app takes more of the inbox
        self._plain = self._fast = False  # no extension; and the fast path reads the frames
        self._pending: bytes | bytearray = b""  # a frame the fast path waits to complete
        self._need = 0  # ... until it holds this many bytes
        self._limit = sys.maxsize  # max_size, or no limit
        #: The forwarded client counted by the listener's ``ClientGuard`` until the end.
        self.guarded: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] | None = None
        self._utf8: codecs.IncrementalDecoder | None = None
        self._text = False  # the message being reassembled is text
        # [status, head block, head written, the app gave a content-length]
        self._response: list[Any] | None = None
        self._ping: bytes | None = None
        self._ping_at = self.closing_since = 0.0
        self._t0 = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.code: int | None = None
        self.reason = ""
        self.messages_in = self.messages_out = 0

    # -- running the app ---------------------------------------------------------------------

    def start(self) -> None:
        state = self._host.state
        state.websockets.add(self)
        state.watch(self)
        task = self.task = self._host.loop.create_task(self.run())
        state.tasks.add(task)

    async def run(self) -> None:
        state = self._host.state
        try:
            await state.app(self.scope, self.receive, self.send)
        except ClientDisconnected:  # it sent after the session closed (either side)
            state.log.debug("websocket_send_after_close", path=self.scope["path"])
            self._app_ended(_INTERNAL, 500)
        except Exception as exc:
            state.log.error(
                "websocket_app_error", path=self.scope["path"], error=repr(exc), exc_info=exc
            )
            self._app_ended(_INTERNAL, 500)
        except asyncio.CancelledError:
            self._app_ended(_GOING_AWAY, 503)
            raise
        else:
            if self._phase == _HANDSHAKE and self._response is None:
                state.log.error(
                    "websocket_app_error",
                    path=self.scope["path"],
                    error="the app returned without accepting or closing",
                )
            self._app_ended(1000, 500)
        finally:
            if self.task is not None:
                state.tasks.discard(self.task)
            if self.guarded is not None and state.guard is not None:
                state.guard.leave(self.guarded)

    def _app_ended(self, code: int, status: int) -> None:
        """The app is done: answer a handshake it left open, close an open session."""
        if self._phase == _HANDSHAKE:
            if self._response is not None and self._response[2]:
                self._finish_http()  # a denial response cut short: close-delimited
            else:
                self._deny(status)
        elif self._framing is not None and self._framing.state is State.OPEN:
            self._close(code)

    # -- ASGI receive ------------------------------------------------------------------------

    async def receive(self) -> Message:
        """``websocket.connect`` first, then the messages, then ``websocket.disconnect``."""
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        inbox = self._inbox
        while not inbox:
            if self._phase == _CLOSED:
                return {"type": "websocket.disconnect", "code": self.code, "reason": self.reason}
            waiter = self._waiter = self._host.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message, size = inbox.popleft()
        self._inbox_bytes -= size
        if (
            self._holding
            and len(inbox) < MAX_QUEUE // 2
            and self._inbox_bytes < MAX_QUEUE_BYTES // 2
        ):
            self._holding = False
            self._host.resume(PAUSE_WS)
        return message

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI send ---------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """``websocket.accept``/``send``/``close`` and ``websocket.http.response.*``.

        Raises:
            ClientDisconnected: the session is closed (by either side) or the client is gone.
            RuntimeError: a message out of order.
        """
        kind = message["type"]
        if self._phase == _HANDSHAKE:
            self._send_handshake(kind, message)
            return
        if self._phase == _CLOSED or self._framing is None:
            raise ClientDisconnected("the WebSocket is closed")
        framing = self._framing
        if framing.state is not State.OPEN:
            raise ClientDisconnected("the WebSocket is closing")
        if kind == "websocket.send":
            self._send_message(framing, message)
        elif kind == "websocket.close":
            self._close(message.get("code") or 1000, message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on an open WebSocket")
        host = self._host
        while host.write_paused and self._phase != _CLOSED:
            await host.wait_writable()

    def _send_message(self, framing: Framing, message: Message) -> None:
        text = message.get("text")
        if text is not None:
            data = text.encode()
            first = 0x81  # FIN, text
        else:
            data = message.get("bytes")
            if data is None:
                raise RuntimeError("websocket.send needs 'bytes' or 'text'")
            first = 0x82  # FIN, binary
        self.messages_out += 1
        host = self._host
        metrics = host.state.metrics
        if metrics is not None:
            metrics.ws_sent(len(data))
        if self._plain and not framing.writes:  # what websockets would write, with less work
            if len(data) < GATHER:
                host.write(server_head(first, len(data)) + data)
            else:
                host.write_pair(server_head(first, len(data)), data)
            rec = host._aionet_rec
            if rec is not None:
                rec.last_active = rec.clock.now
            return
        if first == 0x81:
            framing.send_text(data)
        else:
            framing.send_binary(data)
        self._flush()

    def _send_handshake(self, kind: str, message: Message) -> None:
        if kind == "websocket.accept":
            if self._response is not None:
                raise RuntimeError("websocket.accept after an HTTP response was started")
            self._accept(message.get("subprotocol"), list(message.get("headers") or ()))
        elif kind == "websocket.close":
            if self._response is not None:
                raise RuntimeError("websocket.close after an HTTP response was started")
            self._deny(403)
        elif kind == "websocket.http.response.start":
            if self._response is not None:
                raise RuntimeError("websocket.http.response.start sent twice")
            status = message["status"]
            if not isinstance(status, int) or not 100 <= status <= 599:
                raise ValueError(f"invalid response status {status!r}")
            block, length, _close = self._host.state.headers.encode(message.get("headers", ()))
            self._response = [status, block, False, length is not None]
        elif kind == "websocket.http.response.body":
            self._response_body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} before websocket.accept")

    def _response_body(self, body: bytes, more: bool) -> None:
        response = self._response
        if response is None:
            raise RuntimeError("websocket.http.response.body before its start")
        host = self._host
        if not response[2]:
            response[2] = True
            status = response[0]
            # The app's own content-length stands (a second one would void the response);
            # without one, the length of a single body; a streamed one ends at the close.
            framing = b"" if more or response[3] else b"content-length: %d\r\n" % len(body)
            host.write(
                status_line(status)
                + host.state.date.prelude
                + response[1]
                + framing
                + b"connection: close\r\n\r\n"
            )
            self._log_refused(status)
        if body:
            host.write(body)
        if not more:
            self._finish_http()

    def _deny(self, status: int) -> None:
        """Refuse the handshake with ``status`` (403: the app closed before accepting)."""
        host = self._host
        self._response = [status, b"", True, True]
        host.write(error_response(status, host.state.date.prelude))
        self._log_refused(status)
        self._finish_http()

    def _finish_http(self) -> None:
        self._end(self.code if self.code is not None else _ABNORMAL, log=False)
        self._host.close()

    def _log_refused(self, status: int) -> None:
        state = self._host.state
        if state.metrics is not None:
            state.metrics.observe(status, time.monotonic() - self._t0)
        if state.access is not None:
            state.access.info(
                "websocket_refused",
                path=self.scope["path"],
                status=status,
                reason=phrase(status),
                peer=self._host.peer,
            )

    def _accept(self, subprotocol: str | None, headers: list[Any]) -> None:
        host = self._host
        state = host.state
        head = self._handshake.accept(state.date.prelude, subprotocol, headers)
        framing = self._framing = Framing(Side.SERVER, max_size=self.limits.max_size or None)
        framing.extensions = self._handshake.extensions
        self._plain = self._fast = not framing.extensions
        self._limit = self.limits.max_size or sys.maxsize
        self._phase = _OPEN
        self._ping_at = state.now
        host.write(head)
        rec = host._aionet_rec
        if rec is not None:
            rec.kind = "websocket"
        if state.metrics is not None:
            state.metrics.ws_opened()
        transport = host.transport
        if self.limits.write_limit:
            transport.set_write_buffer_limits(high=self.limits.write_limit)
        host.switch_protocol(self)
        if self._draining and framing.state is State.OPEN:
            self._close(_GOING_AWAY)

    # -- asyncio.Protocol (after the 101, through HttpProtocol) -------------------------------

    def data_received(self, data: bytes) -> None:
        framing = self._framing
        if framing is None or self._phase == _CLOSED:
            return
        if self._fast and framing.state is State.OPEN:
            if self._receive_fast(framing, data):
                return  # nothing to write, and HttpProtocol marked the read as activity
        else:
            self._to_framing(framing, data)
        self._flush()

    def eof_received(self) -> bool | None:
        framing = self._framing
        if framing is not None:
            if self._pending:  # a frame cut short: websockets says what that means
                framing.receive_data(bytes(self._pending))
                self._pending = b""
            framing.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        framing = self._framing
        code, reason = _ABNORMAL, ""
        if framing is not None:
            if framing.close_rcvd is not None:
                code, reason = framing.close_rcvd.code, framing.close_rcvd.reason
            elif framing.close_sent is not None:
                code, reason = framing.close_sent.code, framing.close_sent.reason
        if self.code is None:
            self.code, self.reason = code, reason
        self._end(self.code, log=self._phase == _OPEN)

    def _end(self, code: int, *, log: bool) -> None:
        """The session is over (once): wake the app, count and log it."""
        if self._phase == _CLOSED:
            return
        was_open = self._phase == _OPEN
        self._phase = _CLOSED
        self.code = code
        state = self._host.state
        state.websockets.discard(self)
        state.unwatch(self)
        self._wake()
        if state.metrics is not None and was_open:
            state.metrics.ws_closed(code)
        if log and state.access is not None:
            state.access.info(
                "websocket_session",
                path=self.scope["path"],
                code=code,
                duration=round(time.monotonic() - self._t0, 6),
                messages_in=self.messages_in,
                messages_out=self.messages_out,
                peer=self._host.peer,
            )

    def _flush(self) -> None:
        """Write what the framing protocol produced; its end-of-stream closes the socket."""
        framing = self._framing
        if framing is None:
            return
        host = self._host
        for data in framing.data_to_send():
            if data:
                host.write(data)
            else:  # SEND_EOF: the server closes the TCP connection first (RFC 6455 §7.1.1)
                host.close()
        rec = host._aionet_rec
        if rec is not None:
            rec.last_active = rec.clock.now  # frames either way are activity
        if framing.state is State.CLOSING and not self.closing_since:
            self.closing_since = host.state.now
            host.state.watch(self)  # close_timeout may end before the look it is filed for

    def _close(self, code: int, reason: str = "") -> None:
        framing = self._framing
        if framing is None:
            return
        try:
            framing.send_close(code, reason)
        except InvalidState:
            return
        self._flush()

    # -- the tick: pings, dead peers, the close handshake, drain ---------------------------------

    def check_timeouts(self, now: float) -> None:
        framing = self._framing
        if framing is None or self._phase != _OPEN:
            return
        limits = self.limits
        if framing.state is State.CLOSING:
            if limits.close_timeout and now - self.closing_since >= limits.close_timeout:
                self._host.transport.abort()  # the peer never finished the close handshake
            return
        if self._ping is not None:
            if limits.ping_timeout and now - self._ping_at >= limits.ping_timeout:
                self._host.state.log.info("websocket_ping_timeout", peer=self._host.peer)
                self.code, self.reason = _ABNORMAL, "ping timeout"
                self._host.transport.abort()
        elif limits.ping_interval and now - self._ping_at >= limits.ping_interval:
            self._ping, self._ping_at = os.urandom(4), now
            framing.send_ping(self._ping)
            self._flush()

    def next_check(self, now: float) -> float:
        """When ``check_timeouts`` must look again (it just looked at ``now``): the ping due,
        the pong awaited or the close handshake's end — no later than the ping timeouts from
        now, which covers a ping sent before the next look (the close handshake, when it
        begins, asks for a look itself: ``_flush``)."""
        limits = self.limits
        due = now + spare(limits.ping_interval, limits.ping_timeout)
        framing = self._framing
        if framing is None or self._phase != _OPEN:
            return due
        if framing.state is State.CLOSING:
            timeout, since = limits.close_timeout, self.closing_since
        elif self._ping is not None:
            timeout, since = limits.ping_timeout, self._ping_at
        else:
            timeout, since = limits.ping_interval, self._ping_at
        return min(due, since + timeout) if timeout else due

    def drain(self) -> None:
        """Server drain: close with 1001 after what was already sent (an accept to come too)."""
        self._draining = True
        framing = self._framing
        if framing is not None and framing.state is State.OPEN:
            self._close(_GOING_AWAY, "server shutting down")
