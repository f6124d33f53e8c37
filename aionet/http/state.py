"""``HttpState``: what every connection of one ``http`` listener shares.

One object per handler, read on the hot path by attribute: the app, the limits, the cached
``Date`` prelude, a coarse monotonic clock, the live connections (for drain and the timeout
sweep) and running request tasks (cancelled at stop). ``tick()`` advances the clock and the
date and enforces the timeouts; the handler calls it periodically, so no connection owns a
timer. A tick looks only at the connections that may be due: each live connection waits in a
deadline wheel (the connection manager's) under the moment it next needs ``check_timeouts`` —
its current deadline, or sooner — so the cost of a tick follows the deadlines that come due,
not the number of connections (10,000 idle WebSockets are looked at once a ping interval
each, not on every tick). The moments a deadline counts from (a request head begun, a
connection gone idle, output stalled) are stamped with ``time.monotonic()`` itself, not the
coarse clock: after the loop stalled, the coarse clock lags by the stall, and a stamp
taken from it would make the next tick close a connection early (seen as a keep-alive closed
after 75 ms of a 300 ms timeout on a loaded CI machine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..core.connections import Bucket, DeadlineWheel
from ..core.metrics import Histogram, Sample
from ..proto.http import DateCache, HeaderCache, RequestIds

if TYPE_CHECKING:
    from collections.abc import Callable

    from structlog.typing import FilteringBoundLogger

    from ..core.acl import ClientGuard
    from ..proto.forwarded import ForwardedPolicy
    from ..proto.http import HttpError
    from .h2 import H2Protocol
    from .types import ASGIApp
    from .websocket import WebSocket, WsLimits

__all__ = ["ASGI_VERSION", "EXTENSIONS", "WS_EXTENSIONS", "HttpLimits", "HttpState"]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
#: Seconds an idle keep-alive connection stays open once a drain starts (see
#: ``HttpProtocol.drain``): a request already on its way is answered, then the connection closes.
DRAIN_IDLE_GRACE = 0.25
#: The longest a live connection waits between two looks when no timeout applies at all.
SPARE = 60.0
#: ``due`` of a connection the tick no longer watches (closed, or handed to another protocol).
_UNWATCHED = Bucket()
#: Response extensions every request scope advertises (the static app uses zero-copy send).
EXTENSIONS: dict[str, dict[str, Any]] = {
    "http.response.zerocopysend": {},
    "http.response.pathsend": {},
}

#: The extensions a ``websocket`` scope advertises (an app may deny with any HTTP response).
WS_EXTENSIONS: dict[str, dict[str, Any]] = {"websocket.http.response": {}}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The framing limits and timeouts of one listener (seconds and bytes; 0 = off)."""

    max_header_size: int = 64 * 1024
    max_body_size: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    #: A response not read by the client: its write buffer made no progress for this long.
    send_timeout: float = 60.0
    #: A request body not sent by the client: no bytes of it arrived for this long.
    body_timeout: float = 60.0

    def shortest(self) -> float:
        """The shortest timeout that is on (``spare``): what paces the tick, and how long an
        HTTP/1.1 connection with no deadline of its own waits for its next look."""
        return spare(
            self.header_timeout, self.keepalive_timeout, self.send_timeout, self.body_timeout
        )


class HttpMetrics:
    """Requests by status class and a latency histogram: two increments and a bisect; and
    the WebSocket sessions: open, messages and payload bytes each way, closes by code."""

    __slots__ = (
        "by_class",
        "h2_by_class",
        "h2_goaways",
        "h2_open",
        "h2_opened",
        "h2_resets",
        "latency",
        "ws_bytes",
        "ws_closes",
        "ws_messages",
        "ws_open",
    )

    def __init__(self) -> None:
        self.by_class = [0] * 6  # index: status // 100 (HTTP/1.0 and 1.1)
        self.h2_by_class = [0] * 6  # the same for HTTP/2
        self.latency = Histogram()
        self.h2_open = self.h2_opened = 0
        self.h2_resets: dict[str, int] = {}  # streams reset, by reason
        self.h2_goaways: dict[str, int] = {}  # GOAWAYs sent, by reason
        self.ws_open = 0
        self.ws_messages = [0, 0]  # received, sent
        self.ws_bytes = [0, 0]
        self.ws_closes: dict[int, int] = {}

    def ws_opened(self) -> None:
        self.ws_open += 1

    def ws_closed(self, code: int) -> None:
        self.ws_open -= 1
        self.ws_closes[code] = self.ws_closes.get(code, 0) + 1

    def ws_received(self, size: int) -> None:
        self.ws_messages[0] += 1
        self.ws_bytes[0] += size

    def ws_sent(self, size: int) -> None:
        self.ws_messages[1] += 1
        self.ws_bytes[1] += size

    def observe(self, status: int, seconds: float, h2: bool = False) -> None:
        (self.h2_by_class if h2 else self.by_class)[min(status // 100, 5)] += 1
        latency = self.latency  # Histogram.observe, inline: this runs once per request
        latency.counts[bisect_left(latency.bounds, seconds)] += 1
        latency.total += seconds

    def h2_reset(self, reason: str) -> None:
        self.h2_resets[reason] = self.h2_resets.get(reason, 0) + 1

    def h2_goaway(self, reason: str) -> None:
        self.h2_goaways[reason] = self.h2_goaways.get(reason, 0) + 1

    def samples(self) -> list[Sample]:
        out = [
            Sample(
                "aionet_http_requests",
                "counter",
                "HTTP requests answered, by status class and version (1.1 counts 1.0 too).",
                (("code", f"{i}xx"), ("version", version)),
                n,
            )
            for version, counts in (("1.1", self.by_class), ("2", self.h2_by_class))
            for i, n in enumerate(counts)
            if i
        ]
        out.append(Sample("aionet_http2_connections_open", "gauge", "HTTP/2 connections open.",
                          (), self.h2_open))  # fmt: skip
        out.append(Sample("aionet_http2_connections", "counter",
                          "Connections that became HTTP/2 (ALPN h2 or the h2c preface).",
                          (), self.h2_opened))  # fmt: skip
        out.extend(
            Sample("aionet_http2_streams_reset", "counter",
                   "HTTP/2 streams reset, by reason (client: by the client).",
                   (("reason", reason),), n)
            for reason, n in sorted(self.h2_resets.items())
        )
        out.extend(
            Sample("aionet_http2_goaways", "counter", "HTTP/2 GOAWAY frames sent, by reason.",
                   (("reason", reason),), n)
            for reason, n in sorted(self.h2_goaways.items())
        )
        out.append(
            Sample(
                "aionet_http_request_duration_seconds",
                "histogram",
                "Time from the request head to the end of the response.",
                (),
                self.latency.value(),
            )
        )
        out.append(
            Sample("aionet_websocket_open", "gauge", "WebSocket sessions open.", (), self.ws_open)
        )
        for i, direction in enumerate(("in", "out")):
            out.append(
                Sample(
                    "aionet_websocket_messages",
                    "counter",
                    "WebSocket messages, by direction (in: from clients).",
                    (("direction", direction),),
                    self.ws_messages[i],
                )
            )
            out.append(
                Sample(
                    "aionet_websocket_bytes",
                    "counter",
                    "WebSocket message payload bytes, by direction (in: from clients).",
                    (("direction", direction),),
                    self.ws_bytes[i],
                )
            )
        out.extend(
            Sample(
                "aionet_websocket_closes",
                "counter",
                "WebSocket sessions ended, by close code (1006: the connection was lost).",
                (("code", str(code)),),
                n,
            )
            for code, n in sorted(self.ws_closes.items())
        )
        return out


def spare(*timeouts: float) -> float:
    """The shortest of ``timeouts`` that is on (> 0), else ``SPARE``: how long a connection
    may wait in the wheel with no deadline of its own — a deadline that starts later lasts at
    least this long, so it cannot end before the next look."""
    return min((t for t in timeouts if t > 0), default=SPARE)


class Watched(Protocol):
    """What the tick needs of a connection: ``check_timeouts``, when to call it next, and the
    wheel's slot (``due``)."""

    due: Bucket | None

    def check_timeouts(self, now: float) -> None:
        """Enforce the timeouts whose deadline passed (called by the tick)."""

    def next_check(self, now: float) -> float:
        """When ``check_timeouts`` must run next, right after it ran at ``now``: the current
        deadline, or sooner; never later than a deadline that can begin before it without a
        ``HttpState.watch()``."""


class ManagedConnection(Watched, Protocol):
    """What a listener's ``HttpState`` uses of each live connection (``HttpProtocol`` is one)."""

    def drain(self) -> None:
        """Stop keeping the connection alive: finish the request in flight, then close."""

    def close_if_idle(self) -> None:
        """Close now if no request is in flight (the end of a drain's grace)."""


class HttpState:
    """Shared by the ``HttpProtocol`` objects of one listener."""

    __slots__ = (
        "access",
        "app",
        "clock",
        "date",
        "draining",
        "forwarded",
        "guard",
        "h2",
        "h2_max_streams",
        "headers",
        "http2",
        "ids",
        "lifespan_state",
        "limits",
        "log",
        "metrics",
        "now",
        "pace",
        "protocols",
        "requests",
        "root_path",
        "sendfile",
        "started",
        "tasks",
        "websocket",
        "websockets",
        "wheel",
    )

    def __init__(
        self,
        app: ASGIApp,
        limits: HttpLimits,
        log: FilteringBoundLogger,
        *,
        access: FilteringBoundLogger | None = None,
        server_header: str | None = "aionet",
        root_path: str = "",
        metrics: HttpMetrics | None = None,
        forwarded: ForwardedPolicy | None = None,
        guard: ClientGuard | None = None,
        websocket: WsLimits | None = None,
    ) -> None:
        self.app = app
        #: Per-request counters for ``/metrics``, or None when no admin listener reads them.
        self.metrics = metrics
        self.limits = limits
        self.log = log
        # The access logger, or None when access logging is off or filtered out by level.
        self.access = access if access is not None and _enabled(access) else None
        self.root_path = root_path
        #: ``proxy_headers``: whose Forwarded/X-Forwarded-* headers are believed, or None.
        self.forwarded = forwarded
        #: The listener's access rules and per-IP cap, applied per request to the client a
        #: trusted proxy forwards (its connections passed them at accept); None: not applied.
        self.guard = guard if forwarded is not None else None
        self.date = DateCache(server_header)
        self.ids = RequestIds()
        self.headers = HeaderCache()
        self.now = time.monotonic()
        #: What deadline stamps read (``time.monotonic``; a test's fake clock can stand in).
        self.clock: Callable[[], float] = time.monotonic
        self.started = time.time()
        self.protocols: set[ManagedConnection] = set()
        #: WebSocket limits, or None when the listener serves no WebSocket (not an ASGI app).
        self.websocket = websocket
        #: The live WebSocket sessions (pings, the close handshake timeout, drain).
        self.websockets: set[WebSocket] = set()
        #: Whether a cleartext connection may start HTTP/2 by prior knowledge (``http2``).
        self.http2 = False
        #: ``SETTINGS_MAX_CONCURRENT_STREAMS`` of an HTTP/2 connection (``h2_max_streams``).
        self.h2_max_streams = 100
        #: The live HTTP/2 connections (timeouts, drain).
        self.h2: set[H2Protocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.lifespan_state: dict[str, Any] | None = None
        self.draining = False
        self.requests = 0
        #: False once the loop turned out to have no ``sendfile`` (uvloop): don't ask again.
        self.sendfile = True
        #: Every live connection (HTTP/1.1, WebSocket, HTTP/2), filed by its next look.
        self.wheel = DeadlineWheel()
        #: Seconds between ticks: how often a connection with output waiting is looked at.
        self.pace = self.tick_interval()

    def watch(self, conn: Watched) -> None:
        """Look at ``conn`` on the next tick (a new connection, or a deadline that may now end
        sooner than the one it is filed under); from then on, at its ``next_check()``. A
        connection no longer watched (``unwatch``) stays so."""
        if conn.due is not _UNWATCHED:
            self.wheel.file(conn, self.now)

    @staticmethod
    def unwatch(conn: Watched) -> None:
        """Stop looking at ``conn`` (closed, or handed over)."""
        if conn.due is not None and conn.due is not _UNWATCHED:
            DeadlineWheel.unfile(conn)
        conn.due = _UNWATCHED

    def tick(self) -> None:
        """Advance the clock and the Date header; enforce the timeouts of the connections
        whose next look has come."""
        self.now = now = self.clock()
        self.date.update(time.time())
        self.pace = self.tick_interval()
        wheel = self.wheel
        for conn in wheel.pop_due(now):
            conn.check_timeouts(now)
            if conn.due is None:  # not closed, nor filed again (``watch``) meanwhile
                wheel.file(conn, conn.next_check(now))

    def tick_interval(self) -> float:
        """How often ``tick()`` should run: a quarter of the shortest timeout, 20 ms to 0.5 s."""
        shortest = self.limits.shortest()
        return min(0.5, max(0.02, (2.0 if shortest == SPARE else shortest) / 4))

    def log_refusal(self, err: HttpError, peer: str) -> None:
        """The access-log line of a request refused by the framing checks."""
        if self.access is not None:
            self.access.info(
                "http_request",
                method=None,
                path=err.target,
                status=err.status,
                bytes=0,
                duration=0.0,
                peer=peer,
                request_id=None,
                error=err.reason,
            )

    def drain(self) -> None:
        """Stop keep-alive everywhere: idle connections close after ``DRAIN_IDLE_GRACE``
        (unless a request arrives first: it is answered with ``Connection: close``), busy ones
        after their reply."""
        self.draining = True
        self.now = self.clock()
        for proto in list(self.protocols):
            proto.drain()
        for ws in list(self.websockets):
            ws.drain()
        for conn in list(self.h2):
            conn.drain()
        every: list[Watched] = [*self.protocols, *self.websockets, *self.h2]
        for watched in every:
            self.watch(watched)  # their deadlines are the drain's now
        asyncio.get_running_loop().call_later(DRAIN_IDLE_GRACE, self._close_idle)

    def _close_idle(self) -> None:
        for proto in list(self.protocols):
            proto.close_if_idle()


def _enabled(log: FilteringBoundLogger) -> bool:
    is_enabled = getattr(log, "is_enabled_for", None)
    return is_enabled is None or bool(is_enabled(logging.INFO))
