"""``HttpProtocol``: HTTP/1.1 on httptools (llhttp), one object per connection.

The class is assembled here from one base per concern, each in a private module beside this
one; calls between them are plain method calls on ``self`` (no wrapper, no extra hop on the
hot path):

* ``_reading.py``   — the input side: feeding llhttp (pipelined reads cut at the queue bound),
  its callbacks, the checks llhttp leaves to us, and the order requests are answered in.
* ``_deadlines.py`` — refusals (``reject()``: answer the status with ``Connection: close``,
  then a lingering close), the header/body/keep-alive/send timeouts, drain.
* ``_output.py``    — the output side: writes, read pausing, waiting for the client,
  ``sendfile``.

This module holds the state (every slot, set in ``__init__``) and the ``asyncio.Protocol``
callbacks. The protocol tracks itself with the connection manager inline (``Tracked``, as
``EchoProtocol`` does). It owns no timer: the handler's periodic ``HttpState.tick()`` calls
``check_timeouts`` when the connection's next look (``next_check``) comes.
``switch_protocol()`` is the seam for an upgrade (WebSocket): the connection, still tracked,
is handed to another protocol object.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from ..core.connections import format_peer
from ._deadlines import LINGER as LINGER
from ._output import PAUSE_BODY as PAUSE_BODY
from ._output import PAUSE_HALT as PAUSE_HALT
from ._output import PAUSE_QUEUE as PAUSE_QUEUE
from ._output import SENDFILE_PIECE as SENDFILE_PIECE
from ._reading import MAX_METHOD as MAX_METHOD
from ._reading import MAX_QUEUE as MAX_QUEUE
from ._reading import _Reading
from .h2 import H2Protocol, preface_state
from .target import address

if TYPE_CHECKING:
    from .h2 import H2Host
    from .state import HttpState

__all__ = ["MAX_QUEUE", "HttpProtocol"]


class HttpProtocol(_Reading, asyncio.Protocol):
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
        "_scope_base",
        "_send_left",
        "_send_since",
        "_sendfile",
        "_te",
        "_upgrade_data",
        "_upgraded",
        "_upgrading",
        "_url",
        "_ws",
        "client",
        "due",
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
        # Every attribute's type is declared on the base that uses it (the slots are here).
        self._aionet_rec = None
        self._aionet_peer = None
        self.due = None  # its bucket in the state's deadline wheel
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self._max_head = state.limits.max_header_size
        # Connection state.
        self._active = None
        self._parsing = None
        self._queue = deque()
        self._paused = 0
        self._halted = False
        self._eof = False
        self._lingering = False
        self._error = None
        self._upgraded: asyncio.BaseProtocol | None = None
        self._upgrade_data = b""
        self._upgrading = False
        self._ws = None
        self._drain_waiter = None
        self.write_paused = False
        self._carry = self._carry_method = b""
        self._backlog = b""
        self._in_message = False
        self._at_boundary = True
        self._begins = 0
        self._head_pending = False
        self._head_since = self._idle_since = self._read_at = self._send_since = state.clock()
        self._send_left = 0
        self._sendfile = None
        self._head_bytes = 0
        # Per-message head state, reset by on_message_begin.
        self._method = None
        self._url = b""
        self._headers = []
        self._feed_size = 0
        self._framing = 0
        self._chunk_start = -1
        self._host_count = 0
        self._te = None
        self._cl = None
        self._expect = False
        self._request_id = None
        self._scope_base = None

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
        self._idle_since = self.state.clock()
        self.state.protocols.add(self)
        self.state.watch(self)
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() == "h2":
            self._http2()

    def data_received(self, data: bytes) -> None:
        rec = self._aionet_rec
        if rec is None:
            return
        rec.bytes_in += len(data)
        rec.last_active = rec.clock.now
        upgraded = self._upgraded
        if upgraded is not None:  # a WebSocket: no HTTP timeout runs any more
            cast("asyncio.Protocol", upgraded).data_received(data)
            return
        self._read_at = self.state.clock()
        if self._halted:
            return
        if self._backlog:  # parsing stopped at the queue bound: keep the order
            self._backlog += data
            return
        if self._carry:
            data, self._carry = self._carry + data, b""
        if self.state.http2 and rec.bytes_in == len(data):  # nothing parsed yet
            found = preface_state(data)  # h2c by prior knowledge: HTTP/2 from the first byte
            if found == 0:
                self._carry = data
                return
            if found == 1:
                self._http2(data)
                return
        self._parse(data)

    def _http2(self, data: bytes = b"") -> None:
        """Hand the connection to HTTP/2 (ALPN ``h2``, or the h2c preface in ``data``)."""
        self.state.protocols.discard(self)
        self.state.unwatch(self)
        self.switch_protocol(H2Protocol(cast("H2Host", self), self.state.h2_max_streams), data)

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
            self.state.unwatch(self)
            if self._upgraded is not None:
                self._upgraded.connection_lost(exc)
            elif self._ws is not None:  # a WebSocket handshake the app had not answered yet
                self._ws.connection_lost(exc)
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
        self.state.watch(self)  # output waits on the client: the send timeout looks each tick

    def resume_writing(self) -> None:
        if self._upgraded is not None:
            self._upgraded.resume_writing()
        self.write_paused = False
        self._wake_writer()

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
