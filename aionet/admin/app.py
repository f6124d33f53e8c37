"""The admin endpoint as a small ASGI app, served by aionet's own HTTP protocol.

    GET  /healthz       200 while the process runs (liveness; no credentials)
    GET  /readyz        200 once every listener is bound and started, 503 while draining
    GET  /metrics       Prometheus text exposition                      (viewer or admin)
    GET  /connections   the live table as JSON, ?listener=NAME filters  (viewer or admin)
    POST /reload        re-read the config file, as SIGHUP does         (admin)
    POST /drain         stop being ready, ask sessions to finish        (admin)
    POST /undrain       call a drain off: ready again                   (admin)
    GET  /lockouts      auth lock-outs and failures being counted (JSON) (viewer or admin)
    POST /lockouts/clear  clear them: ?network=ADDR and/or ?user=NAME, or all  (admin)
    GET  /              the endpoints, as JSON                          (viewer or admin)
    GET  /dashboard     the live dashboard (a page; its feed is the WebSocket
                        /dashboard/ws, see ``aionet.admin.dashboard``)   (viewer or admin)

Credentials: ``Authorization: Bearer TOKEN`` where the SHA-256 of TOKEN is listed under the
listener's ``tokens`` (tokens are random, so a fast hash is the right one: nothing to
brute-force), or ``Authorization: Basic`` with a user of the shared user store whose roles
include ``admin`` or ``viewer`` (through the auth portal, throttled like every protocol).

Cross-site requests: a browser resends cached Basic credentials to any page's form, so a
state-changing request (POST) needs more than them: a bearer token (browsers never attach one
on their own), or Basic plus the header ``X-Aionet-Request: 1`` (a cross-site page cannot set
it without a CORS preflight, which this endpoint never grants). Any request a browser marks
cross-site (``Sec-Fetch-Site: cross-site``, or an ``Origin`` naming another host) is refused
with 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from ..auth.portal import Credentials
from ..core.connections import format_peer
from ..core.metrics import CONTENT_TYPE, merge, render
from . import dashboard

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core.handler import ServerView

__all__ = ["AdminApp", "hash_token"]

_JSON = b"application/json"
#: Roles that may read (GET) and write (POST).
READ_ROLES = ("viewer", "admin")
WRITE_ROLES = ("admin",)


class Token(Protocol):
    """What the app needs of a configured bearer token (``handlers.admin.TokenSpec`` is one)."""

    @property
    def role(self) -> str: ...

    @property
    def sha256(self) -> str: ...


def hash_token(token: str) -> str:
    """The hex SHA-256 of a bearer token, as ``tokens: [{sha256: ...}]`` lists it."""
    return hashlib.sha256(token.encode()).hexdigest()


class AdminApp:
    """ASGI 3 app over a running ``Server``. ``samples`` may add other workers' metrics."""

    def __init__(
        self, server: ServerView, tokens: Sequence[Token], *, feed_interval: float = 1.0
    ) -> None:
        self.server = server
        self.tokens = tokens
        self.feed = dashboard.Feed(self._dashboard_frame, feed_interval)
        self.routes: dict[str, tuple[str, Any, tuple[str, ...] | None]] = {
            "/": ("GET", self.index, READ_ROLES),
            "/healthz": ("GET", self.healthz, None),
            "/readyz": ("GET", self.readyz, None),
            "/metrics": ("GET", self.metrics, READ_ROLES),
            "/connections": ("GET", self.connections, READ_ROLES),
            "/reload": ("POST", self.reload, WRITE_ROLES),
            "/drain": ("POST", self.drain, WRITE_ROLES),
            "/undrain": ("POST", self.undrain, WRITE_ROLES),
            "/lockouts": ("GET", self.lockouts, READ_ROLES),
            "/lockouts/clear": ("POST", self.clear_lockouts, WRITE_ROLES),
            "/dashboard": ("GET", self.dashboard_page, READ_ROLES),
            "/dashboard/ticket": ("GET", self.dashboard_ticket, READ_ROLES),
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # lifespan: nothing to set up
        route = self.routes.get(scope["path"])
        if route is None:
            await _send(send, 404, b"not found\n")
            return
        method, endpoint, roles = route
        allowed = ("GET", "HEAD") if method == "GET" else (method,)
        if scope["method"] not in allowed:
            await _send(
                send, 405, b"method not allowed\n", [(b"allow", ", ".join(allowed).encode())]
            )
            return
        if roles is not None:
            refusal = _cross_site(scope, write=method == "POST") or await self._authorize(
                scope, roles
            )
            if refusal is not None:
                await _send(send, *refusal)
                return
        status, body, headers = await endpoint(scope)
        if scope["method"] == "HEAD":
            headers = [*headers, (b"content-length", str(len(body)).encode())]
            body = b""
        await _send(send, status, body, headers)

    # -- authorization -------------------------------------------------------------------------

    async def _authorize(
        self, scope: dict[str, Any], roles: tuple[str, ...]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """None if the credentials carry one of ``roles``, else (status, body, headers)."""
        # One challenge per header, Basic first: Chromium reads only the first challenge of a
        # WWW-Authenticate header, so `Bearer ..., Basic ...` in one header never prompted.
        challenge = [
            (b"www-authenticate", b'Basic realm="aionet"'),
            (b"www-authenticate", b'Bearer realm="aionet"'),
        ]
        header = _header(scope, b"authorization")
        if header is None:
            return 401, b"credentials required\n", challenge
        scheme, _, value = header.partition(" ")
        held: tuple[str, ...] | None = None
        if scheme.lower() == "bearer":
            spec = self._token(value.strip())
            held = (spec.role,) if spec is not None else None
        elif scheme.lower() == "basic":
            held = await self._basic(value.strip(), scope)
        if held is None:
            return 401, b"invalid credentials\n", challenge
        if not any(role in roles for role in held):
            return 403, b"this needs the admin role\n", []
        return None

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``/dashboard/ws``, the dashboard's feed: a ticket from the page or the credentials
        ``/metrics`` takes; never a handshake from another site (see ``dashboard``)."""
        await receive()  # websocket.connect
        if scope["path"] != "/dashboard/ws":
            await _deny(send, 404, b"not found\n")
            return
        refusal = _cross_site(scope, write=False)
        if refusal is None and not dashboard.check_ticket(
            self.server.secret, scope.get("subprotocols", ())
        ):
            refusal = await self._authorize(scope, READ_ROLES)
        if refusal is not None:
            await _deny(send, *refusal)
            return
        offered = scope.get("subprotocols", ())
        chosen = dashboard.SUBPROTOCOL if dashboard.SUBPROTOCOL in offered else None
        await send({"type": "websocket.accept", "subprotocol": chosen})
        await self.feed.serve(receive, send)

    def _dashboard_frame(self) -> dict[str, Any]:
        return dashboard.snapshot(self._samples(), self.server.listener_protocols())

    def _token(self, token: str) -> Token | None:
        digest = hash_token(token)
        found = None
        for spec in self.tokens:  # compare against every entry: no early exit
            if hmac.compare_digest(digest, spec.sha256.lower()):
                found = spec
        return found

    async def _basic(self, value: str, scope: dict[str, Any]) -> tuple[str, ...] | None:
        portal = self.server.portal
        if portal is None:
            return None
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client = scope.get("client")
        ip = client[0] if client else None
        found = await portal.authenticate(Credentials(user, password), "admin", ip)
        return found.roles if found is not None else None

    # -- endpoints -----------------------------------------------------------------------------

    async def healthz(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        return 200, b"ok\n", [(b"content-type", b"text/plain; charset=utf-8")]

    async def readyz(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        server = self.server
        if server.ready_for_traffic():
            return 200, b"ready\n", [(b"content-type", b"text/plain; charset=utf-8")]
        state = "draining" if server.drain_requested else server.state
        return 503, f"{state}\n".encode(), [(b"content-type", b"text/plain; charset=utf-8")]

    def _samples(self) -> list[Any]:
        samples = self.server.samples()
        peers = self.server.peer_samples
        if peers is not None:  # the other workers' (summed: see aionet.core.supervisor)
            samples = merge([samples, peers()])
        return samples

    async def metrics(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        return 200, render(self._samples()), [(b"content-type", CONTENT_TYPE.encode())]

    async def dashboard_page(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        body = dashboard.page(dashboard.make_ticket(self.server.secret))
        return 200, body, [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"cache-control", b"no-store"),  # it carries a ticket
            (b"content-security-policy", dashboard.content_security_policy().encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def dashboard_ticket(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        ticket = dashboard.make_ticket(self.server.secret)
        here = {"ticket": ticket, "ttl": dashboard.TICKET_TTL, "pid": os.getpid()}
        body = json.dumps(here).encode() + b"\n"
        return 200, body, [(b"content-type", _JSON), (b"cache-control", b"no-store")]

    async def connections(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        only = set(query.get("listener", []))
        now, clock = time.time(), self.server.manager.clock
        rows = [
            {
                "id": rec.id,
                "listener": rec.slot.name,
                "peer": format_peer(rec.peer),
                "started": round(now - (time.monotonic() - rec.started), 3),
                "duration": round(time.monotonic() - rec.started, 3),
                "idle": round(max(0.0, clock.now - rec.last_active), 3),
                "bytes_in": rec.bytes_in,
                "bytes_out": rec.bytes_out,
                "kind": rec.kind,
            }
            for rec in list(self.server.manager.live.values())
            if not only or rec.slot.name in only
        ]
        worker = self.server.worker[0]
        body = json.dumps(
            {"pid": os.getpid(), "worker": worker, "count": len(rows), "connections": rows},
            indent=1,
        )
        return 200, body.encode() + b"\n", [(b"content-type", b"application/json")]

    async def reload(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        ok = await self.server.reload()
        errors = list(self.server.reload_errors)
        body = json.dumps({"reloaded": ok} | ({} if ok else {"errors": errors}), indent=1)
        return (200 if ok else 409), body.encode() + b"\n", [(b"content-type", b"application/json")]

    async def drain(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        await self.server.begin_drain()
        return 202, b'{"draining": true}\n', [(b"content-type", b"application/json")]

    async def undrain(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        undone = await self.server.end_drain()
        body = json.dumps({"draining": self.server.drain_requested, "undone": undone})
        return (200 if undone else 409), body.encode() + b"\n", [(b"content-type", _JSON)]

    async def index(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        endpoints = [
            {"path": path, "method": method, "roles": list(roles) if roles else None}
            for path, (method, _, roles) in self.routes.items()
        ]
        body = json.dumps({"endpoints": endpoints}, indent=1)
        return 200, body.encode() + b"\n", [(b"content-type", _JSON)]

    async def lockouts(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        portal = self.server.portal
        if portal is None:
            return 404, b"no auth.users_file: no lock-outs\n", []
        here = {"pid": os.getpid(), **portal.lockouts()}
        peers = self.server.peer_lockouts
        if peers is not None:  # with --workers: each keeps its own tables
            here["worker"] = self.server.worker[0]
            here["other_workers"] = peers.others()
        body = json.dumps(here, indent=1)
        return 200, body.encode() + b"\n", [(b"content-type", b"application/json")]

    async def clear_lockouts(self, scope: dict[str, Any]) -> tuple[int, bytes, list[Any]]:
        portal = self.server.portal
        if portal is None:
            return 404, b"no auth.users_file: no lock-outs\n", []
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        network = query.get("network", [None])[0]
        user = query.get("user", [None])[0]
        cleared = self.server.clear_lockouts(network=network, user=user)
        body = json.dumps({"cleared": cleared, "network": network, "user": user})
        return 200, body.encode() + b"\n", [(b"content-type", b"application/json")]


def _cross_site(
    scope: dict[str, Any], *, write: bool
) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
    """A 403 for a request a browser sent from another site, or a POST that carries only the
    credentials a browser attaches by itself (cached Basic auth); else None."""
    site = _header(scope, b"sec-fetch-site")
    origin = _header(scope, b"origin")
    host = _header(scope, b"host")
    foreign_origin = origin is not None and (
        origin == "null" or host is None or origin.split("://", 1)[-1] != host
    )
    if site == "cross-site" or foreign_origin:
        return 403, b"cross-site request refused\n", []
    if write:
        scheme = (_header(scope, b"authorization") or "").partition(" ")[0].lower()
        if scheme == "basic" and _header(scope, b"x-aionet-request") is None:
            return 403, b"POST with Basic credentials needs the header X-Aionet-Request: 1\n", []
    return None


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _deny(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Refuse a WebSocket handshake with a real HTTP response (``websocket.http.response``)."""
    headers = [*(headers or []), (b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


async def _send(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = list(headers or [])
    if not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    if not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
