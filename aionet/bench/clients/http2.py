"""``aionet bench http --http2 [--streams N] URL``: HTTP/2 requests on python-hyper's ``h2``.

``https://`` URLs negotiate ``h2`` by ALPN (a server that picks anything else is an error,
never a quiet fall-back to HTTP/1.1); ``http://`` URLs speak h2c by prior knowledge (RFC 9113
§3.3), as ``h2load`` does. ``--streams N`` (h2load's ``-m``; default 1) keeps N requests in
flight on each of the ``-c`` connections, so ``-c 64 --streams 10`` is 640 concurrent requests
on 64 connections. Latency is per request: from queueing its HEADERS (the frames of one loop
turn leave in one write) to the arrival of the bytes that end its stream.

How it fits the runner: each stream is a request loop of its own (``Target.streams``) with its
own ``Session`` (``_Lane``); ``connect()`` attaches a lane to a pooled connection that has
fewer than N lanes, opening one when none has room. A connection is ready once the server's
SETTINGS arrived; its SETTINGS_MAX_CONCURRENT_STREAMS, when lower than N, holds the extra
lanes until a stream ends.

Failures: a status not accepted (``--expect``) is ``status NNN`` and a stream the server reset
is ``reset``; both keep the connection. A GOAWAY stops new streams on the connection and the
ones the server will still answer finish; those above its last stream id are ``goaway``. A
request that outlives ``--timeout`` aborts its connection (as h2load's timeouts do), so the
other streams in flight on it are counted as ``closed``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ..target import BenchError, Session, client_tls_context
from ._connect import shielded_connect
from .http import HttpTarget

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

__all__ = ["Http2Target"]

#: Headers that name the connection, not the request: HTTP/2 forbids them (RFC 9113 §8.2.2).
CONNECTION_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
STREAM_WINDOW = 1 << 20  # our receive window per stream, and the connection's extra window
CONNECTION_WINDOW = 1 << 24
LAST_STREAM_ID = (1 << 31) - 1
_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,  # built once per URL, checked then
    normalize_outbound_headers=False,
    validate_inbound_headers=False,  # a load generator: only :status is read
)

Headers = list[tuple[bytes, bytes]]


class _Client(h2.connection.H2Connection):
    """h2's client, except that a GOAWAY does not end it: the streams at or below the GOAWAY's
    last stream id are still answered (RFC 9113 §6.8), and h2 would refuse their frames. New
    streams stop by our own rule (``_H2Connection.open``). The frames h2 drops from its send
    buffer at a GOAWAY (HEADERS of streams the server may still serve) are kept in ``unsent``.
    (``_receive_goaway_frame`` is h2's; h2 is pinned below 5 in pyproject.toml.)
    """

    unsent = b""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        self.unsent += self.data_to_send()
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return result


class _Lane(Session):
    """One request loop's view of a shared connection: one stream in flight at a time."""

    def __init__(self, conn: _H2Connection) -> None:
        self.conn = conn
        self.open = True
        self.sid = 0  # the stream in flight, 0 when idle
        self.status = 0
        self.waiter: asyncio.Future[None] | None = None
        self.attached = True

    async def request(self) -> int:
        conn = self.conn
        while conn.open and len(conn.streams) >= conn.max_streams:  # the server's limit
            await conn.wait_for_room()
        if not conn.open:  # a GOAWAY or a close came first: nothing was sent, nothing counts,
            self.open = False  # and the runner moves this loop to another connection
            return 0
        headers, body = next(conn.requests)
        waiter = self.waiter = conn.loop.create_future()
        self.sid = conn.start(self, headers, body)
        self.sent_ns = time.perf_counter_ns()
        await waiter
        return 1

    def finish(self, at: int) -> None:
        self.sid = 0
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if self.status in self.conn.accepted:
            self.done_ns = at
            waiter.set_result(None)
        else:
            waiter.set_exception(BenchError(f"status {self.status}"))

    def fail(self, exc: BenchError) -> None:
        self.sid = 0
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        """With a stream in flight (a timeout, the end of the run): the connection goes. Idle
        (its connection is gone or draining): the lane leaves it, the last one closes it."""
        self.open = False
        if self.sid:
            self.conn.abort("aborted with its connection: another stream on it timed out")
        if self.attached:
            self.attached = False
            self.conn.detach(self)


class _H2Connection(asyncio.Protocol):
    """The connection: h2's state machine fed by ``data_received``, streams → lanes."""

    transport: asyncio.Transport

    def __init__(self, target: Http2Target) -> None:
        self.target = target
        self.loop = asyncio.get_running_loop()
        self.accepted = target.accepted
        self.requests: Iterator[tuple[Headers, bytes]] = target.request_cycle()
        self.h2 = _Client(_CONFIG)
        self.streams: dict[int, _Lane] = {}
        self.pending: dict[int, memoryview] = {}  # request bodies waiting for window
        self.lanes: set[_Lane] = set()  # attached (or waiting for the connection to open)
        self.open = True  # new streams may start
        self.max_streams = target.streams
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.ready.add_done_callback(_retrieve)
        self.opening: asyncio.Future[None] | None = None
        self.room: collections.deque[asyncio.Future[None]] = collections.deque()
        self.flushing = False
        self.transport_set = False

    # -- transport -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport_set = True
        h2c = self.h2
        h2c.initiate_connection()
        h2c.update_settings(
            {
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            }
        )
        h2c.increment_flow_control_window(CONNECTION_WINDOW)
        transport.write(h2c.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        at = time.perf_counter_ns()
        if not self.ready.done() and data[:5] == b"HTTP/":  # h2 would wait for a 4 MB frame
            line = data.split(b"\r\n", 1)[0].decode("latin-1")[:80]
            self._protocol_error(f"the server does not speak HTTP/2 here: it answered {line!r}")
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(str(exc) or type(exc).__name__)
            return
        for event in events:
            self._event(event, at)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(BenchError("closed", "connection closed by the peer"))

    def _protocol_error(self, detail: str) -> None:
        self._lost(BenchError("protocol", detail))
        self.transport.abort()

    # -- h2 events -----------------------------------------------------------------------------

    def _event(self, event: h2.events.Event, at: int) -> None:
        # A frame with END_STREAM yields its own event and then StreamEnded.
        if isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.ResponseReceived):
            lane = self.streams.get(event.stream_id)
            if lane is not None:
                lane.status = _status(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self._ended(event.stream_id, at)
        elif isinstance(event, h2.events.StreamReset):
            self._stream_failed(event.stream_id, BenchError("reset", _reset(event)))
        elif isinstance(event, h2.events.WindowUpdated):
            self._resume_bodies()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event)

    def _ended(self, sid: int, at: int) -> None:
        lane = self.streams.pop(sid, None)
        if lane is None:
            return
        if self.pending.pop(sid, None) is not None:  # answered before its body was all sent
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)
        lane.finish(at)
        self._room_freed()

    def _stream_failed(self, sid: int, error: BenchError) -> None:
        lane = self.streams.pop(sid, None)
        self.pending.pop(sid, None)
        if lane is not None:
            lane.fail(error)
            self._room_freed()

    def _settings(self) -> None:
        limit = self.h2.remote_settings.max_concurrent_streams
        self.max_streams = max(1, min(self.target.streams, limit))
        if not self.ready.done():
            self.ready.set_result(None)
        self._room_freed()

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """No new streams; the ones at or below the last stream id are still answered."""
        self.stop_new_streams()
        unsent, self.h2.unsent = self.h2.unsent, b""
        if unsent and not self.transport.is_closing():
            self.transport.write(unsent)
        last = event.last_stream_id if event.last_stream_id is not None else LAST_STREAM_ID
        code = getattr(event.error_code, "name", event.error_code)
        detail = f"refused by GOAWAY ({code}, last stream {last})"
        for sid in [s for s in self.streams if s > last]:
            self._stream_failed(sid, BenchError("goaway", detail))
        self._close_when_idle()

    # -- sending -------------------------------------------------------------------------------

    def start(self, lane: _Lane, headers: Headers, body: bytes) -> int:
        """Open a stream for ``lane``'s request; its frames leave with this loop turn's write."""
        h2c = self.h2
        sid = h2c.get_next_available_stream_id()
        h2c.send_headers(sid, headers, end_stream=not body)
        lane.status = 0
        self.streams[sid] = lane
        if body:
            self.pending[sid] = memoryview(body)
            self._send_body(sid)
        if sid >= LAST_STREAM_ID - 2 * self.target.streams:  # stream ids run out: a new one
            self.stop_new_streams()
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self.flush)
        return sid

    def _send_body(self, sid: int) -> None:
        h2c, body = self.h2, self.pending[sid]
        while body:
            size = min(len(body), h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
            if size <= 0:
                self.pending[sid] = body
                return
            h2c.send_data(sid, body[:size].tobytes(), end_stream=size == len(body))
            body = body[size:]
        del self.pending[sid]

    def _resume_bodies(self) -> None:
        for sid in list(self.pending):
            self._send_body(sid)

    def flush(self) -> None:
        self.flushing = False
        data = self.h2.data_to_send()
        if data and self.transport_set and not self.transport.is_closing():
            self.transport.write(data)

    async def wait_for_room(self) -> None:
        waiter = self.loop.create_future()
        self.room.append(waiter)
        await waiter

    def _room_freed(self) -> None:
        """A stream slot is free (one waiting lane goes), or no new stream will start here
        (every waiting lane goes, to find its connection closed to new streams)."""
        while self.room and (not self.open or len(self.streams) < self.max_streams):
            waiter = self.room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if self.open:
                    return
        self._close_when_idle()

    # -- life ----------------------------------------------------------------------------------

    def stop_new_streams(self) -> None:
        """No new stream here: every lane's next request goes to another connection."""
        self.open = False
        self.target.forget(self)
        for lane in self.lanes:
            lane.open = False
        for waiter in self.room:
            if not waiter.done():
                waiter.set_result(None)
        self.room.clear()

    def detach(self, lane: _Lane) -> None:
        self.lanes.discard(lane)
        if not self.lanes:
            self.abort()

    def _close_when_idle(self) -> None:
        if not self.open and not self.streams and self.transport_set:
            self.transport.close()

    def abort(self, why: str = "aborted") -> None:
        self.stop_new_streams()
        if self.transport_set:
            self.transport.abort()
        if self.opening is not None and not self.opening.done():
            self.opening.cancel()
        self._lost(BenchError("closed", why))

    def _lost(self, error: BenchError) -> None:
        self.stop_new_streams()
        if not self.ready.done():
            self.ready.set_exception(error)
        streams, self.streams = self.streams, {}
        self.pending.clear()
        for lane in streams.values():
            lane.fail(error)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # seen: a failed connect is reported by the lanes that awaited it


def _status(headers: Any) -> int:
    for name, value in headers:
        if name == b":status":
            return int(value)
    return 0


def _reset(event: h2.events.StreamReset) -> str:
    code = event.error_code
    return f"stream reset by the server ({getattr(code, 'name', code)})"


class Http2Target(HttpTarget):
    """``aionet bench http --http2``: the HTTP target's URLs, method, headers and body."""

    def __init__(self, urls: list[str], *, streams: int = 1, **kwargs: Any) -> None:
        if kwargs.get("keepalive") is False:
            raise ValueError("--no-keepalive is HTTP/1.1's; with --http2 every stream shares")
        if streams < 1:
            raise ValueError("--streams must be at least 1")
        super().__init__(urls, **kwargs)
        self.streams = streams
        self._pool: list[_H2Connection] = []
        self.h2_requests = [self._h2_request(url) for url in urls]

    def _h2_request(self, url: str) -> tuple[Headers, bytes]:
        from urllib.parse import urlsplit

        p = urlsplit(url)
        authority = p.netloc.rpartition("@")[2]
        extra: Headers = []
        for line in self.header_lines:
            name, sep, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if not sep or not name:
                raise ValueError(f"-H {line!r}: want 'Name: value'")
            if name in CONNECTION_HEADERS or (name == "te" and value.lower() != "trailers"):
                raise ValueError(f"-H {line!r}: a connection header, not allowed in HTTP/2")
            if name == "host":
                authority = value
            else:
                extra.append((name.encode(), value.encode("latin-1")))
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            extra.append((b"content-length", str(len(self.body)).encode()))
        path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        pseudo = [
            (b":method", self.method.encode()),
            (b":scheme", p.scheme.encode()),
            (b":authority", authority.encode("ascii" if authority.isascii() else "idna")),
            (b":path", path.encode("latin-1")),
        ]
        return pseudo + extra, self.body

    def request_cycle(self) -> Iterator[tuple[Headers, bytes]]:
        import itertools

        return itertools.cycle(self.h2_requests)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, body: bytes) -> Http2Target:
        return cls(
            args.urls,
            streams=1 if args.streams is None else args.streams,
            method=args.method,
            headers=args.header,
            body=body,
            keepalive=not args.no_keepalive,
            expect=args.expect,
            args=args,
        )

    def prepare(self) -> None:
        if self.https:
            self.tls = client_tls_context(self._tls_args(), ["h2"])

    async def connect(self) -> _Lane:
        conn = next((c for c in self._pool if c.open and len(c.lanes) < self.streams), None)
        if conn is None:
            conn = _H2Connection(self)
            self._pool.append(conn)
            conn.opening = asyncio.ensure_future(self._open(conn))
            conn.opening.add_done_callback(_retrieve)
        opening = conn.opening
        assert opening is not None  # set before the connection joins the pool
        lane = _Lane(conn)
        conn.lanes.add(lane)
        try:
            await asyncio.shield(opening)
        except BaseException:
            lane.attached = False
            conn.detach(lane)  # the last lane to give up closes (or cancels) the connection
            raise
        return lane

    async def _open(self, conn: _H2Connection) -> None:
        loop = asyncio.get_running_loop()
        sni = getattr(self._args, "sni", None)
        transport, _ = await shielded_connect(
            loop.create_connection(
                lambda: conn,
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=(sni or self.host) if self.tls is not None else None,
            )
        )
        if self.tls is not None:
            chosen = transport.get_extra_info("ssl_object").selected_alpn_protocol()
            if chosen != "h2":
                conn.abort()
                raise BenchError("alpn", f"the server did not choose h2 by ALPN (chose {chosen})")
        await conn.ready

    def forget(self, conn: _H2Connection) -> None:
        with contextlib.suppress(ValueError):
            self._pool.remove(conn)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "http2": True, "streams": self.streams}
