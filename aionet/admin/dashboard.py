"""The live dashboard of the admin listener: a self-contained page and its WebSocket feed.

    GET /dashboard          the page (HTML, inline script and style: nothing from elsewhere)
    GET /dashboard/ticket   a fresh feed ticket, as JSON (the page asks for one to reconnect)
    WS  /dashboard/ws       the feed: one JSON frame per ``interval`` (``Feed``)

The feed sends what ``/metrics`` would show, summed across workers the same way, reduced to
what the charts draw: per listener its open connections, accepted and refused, bytes and
datagrams, HTTP status classes and the latency histogram, WebSocket sessions, SMTP messages,
FTP transfers, IMAP sessions. Totals only: the page turns them into rates from one frame to
the next (a frame that arrives late or is skipped costs nothing but resolution).

One sampler serves every open dashboard (N dashboards cost one sample per interval), and each
subscriber holds only the latest frame: a dashboard that reads slowly skips frames, it never
makes the server queue them.

Who may open the feed: the credentials ``/metrics`` takes (a bearer token, HTTP Basic with a
viewer or admin user) or a **ticket**. Browsers cannot set headers on a WebSocket, and whether
they resend cached Basic credentials on one differs between them, so the page carries a
ticket (an expiry and an HMAC under the server's secret, shared by its workers) and offers it
as a subprotocol (``aionet-ticket.EXPIRY.MAC``, next to ``aionet.dashboard.v1``): no
credential in the URL, none in the logs. A page on another site cannot read the ticket (the
page and ``/dashboard/ticket`` are same-origin reads, never granted by CORS), and a handshake
whose ``Origin`` names another host is refused whatever it carries (cross-site WebSocket
hijacking).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..core.samples import Sample

__all__ = [
    "SUBPROTOCOL",
    "TICKET_TTL",
    "Feed",
    "check_ticket",
    "make_ticket",
    "page",
    "snapshot",
]

#: The subprotocol the feed speaks (the page offers it; the server selects it).
SUBPROTOCOL = "aionet.dashboard.v1"
#: The prefix of the ticket subprotocol.
TICKET_PREFIX = "aionet-ticket."
#: How long a ticket opens the feed (the page fetches a new one to reconnect).
TICKET_TTL = 60.0

#: Per-listener totals: metric name → key in the frame (summed over other labels).
_TOTALS = {
    "aionet_connections_open": "open",
    "aionet_connections_accepted": "accepted",
    "aionet_connections_refused": "refused",
    "aionet_received_bytes": "bytes_in",
    "aionet_sent_bytes": "bytes_out",
    "aionet_datagrams_received": "datagrams_in",
    "aionet_datagrams_sent": "datagrams_out",
    "aionet_handler_errors": "errors",
    "aionet_tls_handshake_failures": "tls_failures",
    "aionet_websocket_open": "ws_open",
    "aionet_smtp_messages_accepted": "smtp_accepted",
    "aionet_smtp_rejected": "smtp_rejected",
    "aionet_ftp_uploads": "ftp_uploads",
    "aionet_ftp_downloads": "ftp_downloads",
    "aionet_imap_sessions": "imap_sessions",
}
#: Per-listener values kept by one label: metric name → (key in the frame, label).
_BY_LABEL = {
    "aionet_http_requests": ("http", "code"),
    "aionet_websocket_messages": ("ws_messages", "direction"),
}
_LATENCY = "aionet_http_request_duration_seconds"


def make_ticket(secret: bytes, now: float | None = None, ttl: float = TICKET_TTL) -> str:
    """A ticket that opens the feed until ``now + ttl`` (a subprotocol token: digits, hex)."""
    expiry = int((time.time() if now is None else now) + ttl)
    return f"{TICKET_PREFIX}{expiry}.{_mac(secret, expiry)}"


def check_ticket(secret: bytes, offered: Iterable[str], now: float | None = None) -> bool:
    """Whether one of the ``offered`` subprotocols is a ticket of ``secret`` not yet expired."""
    moment = time.time() if now is None else now
    for value in offered:
        if not value.startswith(TICKET_PREFIX):
            continue
        expiry, _, mac = value[len(TICKET_PREFIX) :].partition(".")
        if not expiry.isdigit() or len(expiry) > 12:
            continue
        if hmac.compare_digest(mac, _mac(secret, int(expiry))) and int(expiry) >= moment:
            return True
    return False


def _mac(secret: bytes, expiry: int) -> str:
    return hmac.new(secret, f"dashboard:{expiry}".encode(), hashlib.sha256).hexdigest()[:32]


def snapshot(samples: Iterable[Sample], protocols: dict[str, str]) -> dict[str, Any]:
    """One feed frame: the totals the charts draw, per listener (see the module docstring)."""
    listeners: dict[str, dict[str, Any]] = {
        name: {"protocol": protocol} for name, protocol in protocols.items()
    }
    workers, ready = 0.0, 0.0
    for s in samples:
        if s.name == "aionet_workers":
            workers += float(s.value)  # type: ignore[arg-type]
            continue
        if s.name == "aionet_ready":
            ready += float(s.value)  # type: ignore[arg-type]
            continue
        tags = dict(s.labels)
        name = tags.get("listener")
        if name is None:
            continue
        row = listeners.setdefault(name, {"protocol": protocols.get(name, "")})
        if s.name in _TOTALS:
            key = _TOTALS[s.name]
            row[key] = row.get(key, 0) + s.value
        elif s.name in _BY_LABEL:
            key, label = _BY_LABEL[s.name]
            values = row.setdefault(key, {})
            values[tags.get(label, "")] = values.get(tags.get(label, ""), 0) + s.value
        elif s.name == _LATENCY and isinstance(s.value, dict):
            row["latency"] = {
                "bounds": [b for b, _ in s.value["buckets"]],
                "counts": [n for _, n in s.value["buckets"]],  # cumulative, as exposed
                "sum": s.value["sum"],
            }
    return {
        "time": round(time.time(), 3),
        "pid": os.getpid(),  # the worker serving this feed
        "workers": int(workers),
        "ready": int(ready),
        "listeners": listeners,
    }


class _Subscriber:
    __slots__ = ("closed", "frame", "wake")

    def __init__(self, frame: str) -> None:
        self.frame = frame
        self.wake = asyncio.Event()
        self.wake.set()  # the current frame goes out at once
        self.closed = False


class Feed:
    """The dashboard's WebSocket feed: one sampler while anyone watches, latest frame each."""

    def __init__(self, sample: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
        self.sample = sample
        self.interval = interval
        self.subscribers: set[_Subscriber] = set()
        self._sampler: asyncio.Task[None] | None = None

    def frame(self) -> str:
        return json.dumps(self.sample(), separators=(",", ":"))

    async def serve(self, receive: Any, send: Any) -> None:
        """Stream frames to one accepted WebSocket until it closes."""
        sub = _Subscriber(self.frame())
        self.subscribers.add(sub)
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())
        listener = asyncio.get_running_loop().create_task(self._until_closed(receive, sub))
        try:
            while True:
                await sub.wake.wait()
                sub.wake.clear()
                if sub.closed:
                    break
                await send({"type": "websocket.send", "text": sub.frame})
        except OSError:  # ClientDisconnected: the session ended under the send
            pass
        finally:
            listener.cancel()
            self.subscribers.discard(sub)
            if not self.subscribers and self._sampler is not None:
                self._sampler.cancel()
                self._sampler = None

    async def _until_closed(self, receive: Any, sub: _Subscriber) -> None:
        """Read (and ignore) what the client sends, until it goes away."""
        with contextlib.suppress(OSError):
            while (await receive())["type"] != "websocket.disconnect":
                pass
        sub.closed = True
        sub.wake.set()

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            frame = self.frame()
            for sub in self.subscribers:
                sub.frame = frame
                sub.wake.set()


def page(ticket: str) -> bytes:
    """The dashboard page, with a feed ticket in it."""
    return _template().replace(b"{{TICKET}}", ticket.encode("ascii"))


def content_security_policy() -> str:
    """Only the page's own inline script and style run; it connects to its own origin only.
    (Built once: the hashes of the template's script and style.)"""
    if "csp" not in _cache:
        template = _template().decode()
        script = template.split("<script>", 1)[1].split("</script>", 1)[0]
        style = template.split("<style>", 1)[1].split("</style>", 1)[0]
        _cache["csp"] = (
            "default-src 'none'; "
            f"script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ).encode()
    return _cache["csp"].decode()


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


_cache: dict[str, bytes] = {}


def _template() -> bytes:
    if "page" not in _cache:
        _cache["page"] = resources.files(__package__).joinpath("dashboard.html").read_bytes()
    return _cache["page"]
