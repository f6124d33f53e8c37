"""HTTP/2 (RFC 9113, HPACK RFC 7541) on an ``http`` listener, on python-hyper's sans-IO ``h2``.

A connection becomes HTTP/2 in one of two ways, both through ``HttpProtocol.switch_protocol()``
so it stays tracked by the connection manager (counted, per-IP caps, ``/connections`` as
``http2``):

* TLS with ALPN: the listener's ``tls.alpn`` lists ``h2`` and the client chose it;
* cleartext by prior knowledge (``http2: true``): the connection starts with the client
  preface (``PRI * HTTP/2.0``), so HTTP/1.1 and h2c share one port. No ``Upgrade: h2c``
  (deprecated by RFC 9113).

``H2Protocol`` feeds the bytes to ``h2.connection.H2Connection`` and turns its events into
``H2Stream`` request cycles (``_h2_stream``), each running the listener's app with an ASGI
``http`` scope whose ``http_version`` is ``"2"``. Limits: ``SETTINGS_MAX_CONCURRENT_STREAMS``
(``h2_max_streams``), the header list size (``max_header_size``), ``max_body_size`` (``413``
then RST_STREAM), request bodies flow-controlled by the app's reading (the connection window is
the streams' windows summed, so one stream the app does not read cannot starve the others),
``send_timeout`` for a stream whose client gives it no window, ``body_timeout`` for a request
body that stops coming (408), ``keepalive_timeout`` for a connection without streams. A client
that resets streams faster than it could use them (rapid reset, CVE-2023-44487) is sent GOAWAY
``ENHANCE_YOUR_CALM``; so is one flooding control frames or header-block bytes (``FrameGuard``,
``_h2_guard``). Drain: the two-step GOAWAY (``H2Protocol.drain``). Requests a trusted proxy
forwarded meet the listener's access rules per stream (``cycle.guard_forwarded``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Protocol

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes
from h2.exceptions import H2Error, ProtocolError
from hyperframe.frame import GoAwayFrame

from ._h2_guard import FrameGuard
from ._h2_stream import H2Stream
from .cycle import guard_forwarded, refused_app
from .state import ASGI_VERSION, EXTENSIONS, spare
from .target import decode_path, split_target

if TYPE_CHECKING:
    from ..core.connections import Bucket, ConnectionRecord
    from .state import HttpState

__all__ = ["PREFACE", "H2Host", "H2Protocol", "preface_state"]

#: The response extensions of an HTTP/2 request scope: HTTP/1.1's and trailers.
H2_EXTENSIONS: dict[str, dict[str, Any]] = {**EXTENSIONS, "http.response.trailers": {}}
#: What an HTTP/2 client sends first (RFC 9113 §3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Streams a client may reset per second, averaged, before the connection is cut.
RESETS_PER_SECOND = 100
#: The largest stream id: what the first GOAWAY of a drain names.
MAX_STREAM_ID = 2**31 - 1
#: The opaque data of the PING a drain sends between its two GOAWAYs.
DRAIN_PING = b"aionet\x00d"
#: How long a drain waits for its PING to come back before naming the last stream anyway.
DRAIN_PING_WAIT = 2.0
#: The receive window the server gives each stream (h2's default, RFC 9113's initial value).
STREAM_WINDOW = 65535


def preface_state(data: bytes) -> int:
    """1: ``data`` starts with the HTTP/2 preface; 0: it may (too short to tell); -1: it does
    not."""
    if data[:24] == PREFACE[: len(data)]:
        return 1 if len(data) >= len(PREFACE) else 0
    return -1


class H2Host(Protocol):
    """What an HTTP/2 connection uses of the HTTP connection it came on (``HttpProtocol``)."""

    state: HttpState
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    peer: str
    client: tuple[str, int] | None
    server: tuple[str, int] | None
    scheme: str
    write_paused: bool
    _aionet_rec: ConnectionRecord | None

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    async def wait_writable(self) -> None: ...


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection (after ``switch_protocol``)."""

    def __init__(self, host: H2Host, max_streams: int = 100) -> None:
        self.host = host
        self.state = state = host.state
        self.loop = host.loop
        self.peer = host.peer
        self.client = host.client
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            # What we send is checked once by ``_h2_stream.response_fields``.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = conn = h2.connection.H2Connection(config)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
                # Twice the limit: a list between the two is decoded and answered 431 (as
                # HTTP/1.1 does); past it, h2 stops decoding and the connection is cut.
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 2 * state.limits.max_header_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self.max_streams = max_streams
        self.guard = FrameGuard(max_block=2 * state.limits.max_header_size)  # as the list
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        #: A drain began (first GOAWAY sent) / the last stream is named (second GOAWAY).
        self.draining = self.going_away = False
        self._drain_since = 0.0
        self.due: Bucket | None = None  # its bucket in the state's deadline wheel
        self._flush_soon = False
        self._idle_since = state.clock()
        self._resets = 0.0
        self._resets_at = state.clock()
        self._prelude_src = b""
        self._prelude: list[tuple[bytes, bytes]] = []

    # -- asyncio.Protocol (forwarded by HttpProtocol) ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        rec = self.host._aionet_rec
        if rec is not None:
            rec.kind = "http2"
        metrics = self.state.metrics
        if metrics is not None:
            metrics.h2_open += 1
            metrics.h2_opened += 1
        self.state.h2.add(self)
        self.state.watch(self)
        conn = self.h2
        conn.initiate_connection()
        # The connection window is every stream's window: one stream the app does not read
        # holds at most its own window, never the others' share.
        conn.increment_flow_control_window(STREAM_WINDOW * (self.max_streams - 1))
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        flood = self.guard.feed(data, self.state.clock())
        if flood is not None:
            self.state.log.warning("http2_flood", peer=self.peer, reason=flood)
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, flood.encode())
            self._count_goaway(flood)
            self._close()
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:  # h2 queued the GOAWAY with the RFC's code
            self.state.log.info("http2_protocol_error", peer=self.peer, error=str(exc))
            self._count_goaway("protocol_error")
            self._close()
            return
        for event in events:
            self._event(event)
        self.flush()

    def eof_received(self) -> bool | None:
        for stream in list(self.streams.values()):
            stream.disconnect()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        metrics = self.state.metrics
        if metrics is not None and self in self.state.h2:
            metrics.h2_open -= 1
        self.closed = True
        self.state.h2.discard(self)
        self.state.unwatch(self)
        for stream in list(self.streams.values()):
            stream.disconnect()
        self.streams.clear()

    def pause_writing(self) -> None:
        pass  # HttpProtocol keeps ``write_paused``; streams look there

    def resume_writing(self) -> None:
        for stream in list(self.streams.values()):
            if stream.pending:
                stream.wake()

    # -- events -------------------------------------------------------------------------------

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body_done()
        elif isinstance(event, h2.events.StreamReset):
            self._reset_by_client(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for stream in list(self.streams.values()):
                if stream.pending:
                    stream.wake()
        elif isinstance(event, h2.events.PingAckReceived):
            if event.ping_data == DRAIN_PING:
                self._drain_acknowledged()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._close()

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        assert event.headers is not None
        scope, refusal = self._scope(event.headers)
        if self.going_away:  # after the last GOAWAY: refused, retryable elsewhere
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM, "refused")
            return
        self._idle_since = 0.0
        stream = H2Stream(self, stream_id, scope)
        self.streams[stream_id] = stream
        if event.stream_ended is not None:
            stream.body_done()
        state = self.state
        state.requests += 1
        if refusal is None and _declared_length(scope) > state.limits.max_body_size:
            refusal = 413
        app = _answer(refusal) if refusal is not None else None
        if app is None and state.guard is not None:  # a forwarded client meets the rules
            stream.guarded, reason = guard_forwarded(state, self.client, scope, self.peer)
            app = refused_app(reason) if reason is not None else None
        task = stream.task = self.loop.create_task(stream.run(app))
        state.tasks.add(task)

    def _scope(self, headers: list[tuple[bytes, bytes]]) -> tuple[dict[str, Any], int | None]:
        """The ASGI scope of a request, and the status to refuse it with (None: serve it)."""
        pseudo: dict[bytes, bytes] = {}
        plain: list[tuple[bytes, bytes]] = []
        host = False
        size = 0  # as RFC 9113 §6.5.2 counts it: name, value and 32 per field
        for name, value in headers:
            size += len(name) + len(value) + 32
            if name[:1] == b":":
                pseudo[name] = value
            else:
                host = host or name == b"host"
                plain.append((name, value))
        authority = pseudo.get(b":authority")
        refusal = None
        # RFC 9113 §8.3.1: :authority is the Host (h2 refuses a Host that differs from it).
        if authority is not None and not host:
            plain.insert(0, (b"host", authority))
        method = pseudo.get(b":method", b"")
        target = pseudo.get(b":path", b"" if method == b"CONNECT" else b"/")
        if method == b"CONNECT":
            refusal = 405
        elif size > self.state.limits.max_header_size:
            refusal = 431
        try:
            raw_path, query = split_target(target)
            path = decode_path(raw_path)
        except ValueError:
            raw_path, query, path, refusal = target, b"", "", 400
        state, host_conn = self.state, self.host
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": "2",
            "server": host_conn.server,
            "client": self.client,
            "scheme": host_conn.scheme,
            "method": method.decode("ascii", "replace"),
            "root_path": state.root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": plain,
            "extensions": H2_EXTENSIONS,
        }
        if state.lifespan_state is not None:
            scope["state"] = state.lifespan_state.copy()
        if state.forwarded is not None:
            peer = self.client[0] if self.client else None
            resolved = state.forwarded.resolve(peer, plain)
            if resolved is not None:
                if resolved.host is not None:
                    scope["client"] = (resolved.host, 0)
                if resolved.scheme in ("http", "https"):
                    scope["scheme"] = resolved.scheme
        return scope, refusal

    def _data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        data = event.data or b""
        length = event.flow_controlled_length or 0
        if stream is None or stream.complete:  # answered already: the body is not wanted
            self.acknowledge(event.stream_id, length)
            return
        if stream.discard:  # refused mid-body: the rest of the body is dropped
            self.acknowledge(event.stream_id, length)
        elif not stream.feed(data, length):
            self.acknowledge(event.stream_id, length)
            self._refuse(stream, 413, "body_too_large")

    def _refuse(self, stream: H2Stream, status: int, reason: str) -> None:
        """Take a stream away from the app mid-request (it sees ``http.disconnect``): answer
        ``status`` if nothing was sent yet, else reset it."""
        stream.disconnect()
        if stream.headers_sent:
            self.reset(stream.id, ErrorCodes.CANCEL, reason)
            return
        answer = H2Stream(self, stream.id, stream.scope)
        answer.discard = True
        answer.more_body = stream.more_body  # still coming: reset once answered (NO_ERROR)
        self.streams[stream.id] = answer
        task = answer.task = self.loop.create_task(answer.run(_answer(status)))
        self.state.tasks.add(task)

    def _reset_by_client(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.disconnect()
        # Rapid reset: the count decays at RESETS_PER_SECOND; past a burst of twice the
        # stream limit, the client is opening streams only to cancel them.
        now = self.state.clock()
        self._resets = max(0.0, self._resets - (now - self._resets_at) * RESETS_PER_SECOND) + 1
        self._resets_at = now
        if self._resets > 2 * self.max_streams:
            self.state.log.warning("http2_rapid_reset", peer=self.peer)
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, b"rapid_reset")
            self._count_goaway("rapid_reset")
            self._close()
        self._check_idle()

    # -- what streams use ---------------------------------------------------------------------

    @property
    def write_paused(self) -> bool:
        return self.host.write_paused

    async def wait_writable(self) -> None:
        await self.host.wait_writable()

    def window(self, stream_id: int) -> int:
        """Bytes that may be sent on ``stream_id`` now, in one DATA frame."""
        conn = self.h2
        try:
            room = conn.local_flow_control_window(stream_id)
        except H2Error:
            return 0
        return min(room, conn.max_outbound_frame_size)

    def prelude(self) -> list[tuple[bytes, bytes]]:
        """``server`` and ``date`` as header fields (rebuilt when the Date second changes)."""
        src = self.state.date.prelude
        if src is not self._prelude_src:
            self._prelude_src = src
            lines = src.split(b"\r\n")
            self._prelude = [
                (name, value) for name, _, value in (ln.partition(b": ") for ln in lines if ln)
            ]
        return self._prelude

    def send_headers(self, stream_id: int, headers: list[Any], end: bool) -> None:
        self.h2.send_headers(stream_id, headers, end_stream=end)
        self._later()

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        self.h2.send_data(stream_id, data, end_stream=end)
        self._later()

    def end_stream(self, stream_id: int) -> None:
        self.h2.end_stream(stream_id)
        self._later()

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Give ``length`` bytes of window back (the app took them, or they are dropped)."""
        if length and not self.closed:
            with contextlib.suppress(H2Error):
                self.h2.acknowledge_received_data(length, stream_id)
                self.flush()

    def reset(self, stream_id: int, code: ErrorCodes, reason: str) -> None:
        """RST_STREAM ``code`` on ``stream_id`` (counted under ``reason``)."""
        if self.state.metrics is not None:
            self.state.metrics.h2_reset(reason)
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.disconnect()
        with contextlib.suppress(H2Error):
            self.h2.reset_stream(stream_id, code)
            self.flush()
        self._check_idle()

    def stream_done(self, stream: H2Stream) -> None:
        """``stream``'s response is complete (its request body may still be arriving)."""
        if self.streams.get(stream.id) is stream:
            if stream.more_body:  # RFC 9113 §8.1: answered early; stop the upload
                self.reset(stream.id, ErrorCodes.NO_ERROR, "answered_early")
                return
            del self.streams[stream.id]
        self._check_idle()

    def flush(self) -> None:
        """Write what ``h2`` has queued, now."""
        self._flush_soon = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.host.write(data)

    def _later(self) -> None:
        """Write what streams queued at the end of this loop turn: a response's HEADERS and
        DATA, and every stream answered in the same turn, go out in one write."""
        if not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self._flush_if_pending)

    def _flush_if_pending(self) -> None:
        if self._flush_soon:
            self.flush()

    # -- timeouts, drain, close ---------------------------------------------------------------

    def _check_idle(self) -> None:
        if self.streams:
            return
        if self.going_away:  # the final GOAWAY is out: nothing more to say
            self._close()
        else:
            self._idle_since = self.state.clock()

    def check_timeouts(self, now: float) -> None:
        limits = self.state.limits
        idle = self._idle_since
        if idle and limits.keepalive_timeout > 0 and now - idle > limits.keepalive_timeout:
            self.draining = True  # nothing in flight: the final GOAWAY at once
            self._count_goaway("idle")
            self._drain_acknowledged()
            return
        if self.draining and not self.going_away and now - self._drain_since > DRAIN_PING_WAIT:
            self._drain_acknowledged()  # the client never answered the drain's PING
        if limits.body_timeout > 0:  # a request body that stopped coming (slow POST)
            for stream in list(self.streams.values()):
                if (
                    stream.more_body
                    and not stream.discard
                    and not stream.chunks  # not when the app is the one not reading
                    and now - stream.data_at > limits.body_timeout
                ):
                    self.state.log.info("http2_body_timeout", peer=self.peer,
                                        path=stream.scope.get("path"))  # fmt: skip
                    self._refuse(stream, 408, "body_timeout")
        if limits.send_timeout > 0:
            for stream in list(self.streams.values()):
                since = stream.window_since
                if since and now - since > limits.send_timeout:
                    self.state.log.info("http2_send_timeout", peer=self.peer,
                                        path=stream.scope.get("path"))  # fmt: skip
                    self.reset(stream.id, ErrorCodes.CANCEL, "send_timeout")

    def next_check(self, now: float) -> float:
        """When ``check_timeouts`` must look again (it just looked at ``now``): every tick
        while streams are open (their body and send timeouts), else the keep-alive timeout or
        the drain's PING wait — no later than the shortest timeout from now."""
        state = self.state
        if self.streams:
            return now + state.pace
        limits = state.limits
        due = now + spare(limits.keepalive_timeout, limits.body_timeout, limits.send_timeout)
        if self._idle_since and limits.keepalive_timeout > 0:
            due = min(due, self._idle_since + limits.keepalive_timeout)
        if self.draining and not self.going_away:
            due = min(due, self._drain_since + DRAIN_PING_WAIT)
        return due

    def drain(self) -> None:
        """Shut down without losing a request in flight (RFC 9113 §6.8, the two-step GOAWAY):
        a GOAWAY naming the highest possible stream and a PING; when the PING comes back, every
        stream the client sent before seeing the GOAWAY has arrived, and a second GOAWAY names
        the last of them. Streams up to it finish; later ones are refused; then the connection
        closes. (The GOAWAYs are written past ``h2``'s state machine, which would send nothing
        after its own ``close_connection``.)"""
        if self.draining or self.closed:
            return
        self.draining = True
        self._drain_since = self.state.clock()
        self.flush()
        self.host.write(GoAwayFrame(0, last_stream_id=MAX_STREAM_ID, error_code=0).serialize())
        self.h2.ping(DRAIN_PING)
        self.flush()
        self._count_goaway("drain")

    def _count_goaway(self, reason: str) -> None:
        if self.state.metrics is not None:
            self.state.metrics.h2_goaway(reason)

    def _drain_acknowledged(self) -> None:
        """The PING of ``drain`` came back: the second GOAWAY, with the real last stream."""
        if self.going_away or self.closed:
            return
        self.going_away = True
        last = self.h2.highest_inbound_stream_id
        self.host.write(GoAwayFrame(0, last_stream_id=last, error_code=0).serialize())
        self._check_idle()

    def _close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        for stream in list(self.streams.values()):
            stream.disconnect()
        self.host.close()


def _declared_length(scope: dict[str, Any]) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _answer(status: int) -> Any:
    """A tiny app answering ``status`` (a request refused before the listener's app)."""
    from ..proto.http import phrase

    body = b"%d %s\n" % (status, phrase(status).encode())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
