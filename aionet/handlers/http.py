"""``protocol: http`` — HTTP/1.1 on httptools, hosting an ASGI app, a WSGI app, or files.

Options (``listener.options``)::

    app: "pkg.module:attr"       # an ASGI 3 app (http + lifespan scopes), imported with
                                 # app_dir (default: the working directory) on sys.path, or
    wsgi: "pkg.module:attr"      # a PEP 3333 app run on a thread pool of wsgi_threads, or
    static_dir: ./public         # neither: the built-in app serves this directory; without
                                 # it (or at / without index.html) a small status page
    max_header_size: 64KiB       # larger request head → 431
    max_body_size: 10MiB         # larger request body → 413 (declared or streamed)
    header_timeout: 10s          # request head not complete in time → 408 (slowloris)
    keepalive_timeout: 5s        # idle keep-alive connections close after this
    send_timeout: 60s            # a response the client stops reading: closed (nginx send_timeout)
    body_timeout: 60s            # no request body bytes for this long → 408 (client_body_timeout)
    access_log: true             # one ``http_request`` event per request (aionet.access)
    proxy_headers: false         # believe Forwarded / X-Forwarded-For / -Proto ...
    forwarded_allow_ips: [127.0.0.1, "::1"]   # ... from these proxies only (uvicorn's names)

WebSocket (ASGI ``websocket`` scope; served when ``app`` is set)::

    ws_max_size: 16MiB           # a larger message (reassembled, decompressed) → close 1009
    ws_ping_interval: 20s        # ping an idle-looking peer this often (0: never) ...
    ws_ping_timeout: 20s         # ... and drop it when no pong comes back within this
    ws_close_timeout: 10s        # the peer must finish the close handshake within this
    ws_write_limit: 64KiB        # outgoing data queued per connection before send() waits
    ws_per_message_deflate: true # negotiate permessage-deflate when the client offers it

HTTP/2 (``aionet.http.h2``)::

    http2: false                 # cleartext: accept h2c by prior knowledge on this port too
    h2_max_streams: 100          # SETTINGS_MAX_CONCURRENT_STREAMS
    # TLS: list h2 in the listener's ``tls.alpn`` (e.g. [h2, http/1.1]) to offer it by ALPN.

The hot path lives in ``aionet.http.protocol``; this module wires the options, the app (and
its lifespan), the periodic tick that enforces timeouts, drain and the 503 refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..config.types import ConfigPath, Duration, Size
from ..core.handler import HandlerOptions, ProtocolHandler
from ..core.logging import HotLogger
from ..core.registry import import_callable_option, import_from_string
from ..http.lifespan import Lifespan
from ..http.protocol import HttpProtocol
from ..http.state import HttpLimits, HttpMetrics, HttpState
from ..http.static import StaticApp
from ..http.websocket import WsLimits
from ..http.wsgi import WsgiAdapter
from ..proto.forwarded import ForwardedPolicy
from ..proto.http import refusal_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core.handler import Services
    from ..core.metrics import Sample
    from ..http.types import ASGIApp

__all__ = ["HttpHandler"]


def _importable(value: str | None, info: ValidationInfo) -> str | None:
    """Check that ``pkg.module:attr`` imports to a callable (so ``aionet check`` reports it).

    ``app_dir`` is put at the front of ``sys.path`` first, as uvicorn's ``--app-dir`` is (the
    config loader has put every listener's there already, and the config file's directory, so
    what a reference imports does not depend on the order of the listeners).
    """
    if value is None:
        return None
    app_dir = info.data.get("app_dir")
    if app_dir is not None:
        _prepend_path(os.path.abspath(app_dir))
    return import_callable_option(value)


def _prepend_path(directory: str) -> None:
    if directory not in sys.path:
        sys.path.insert(0, directory)


class HttpOptions(HandlerOptions):
    """``listener.options`` of an ``http`` listener."""

    #: Prepended to ``sys.path`` before ``app``/``wsgi`` are imported (relative to the config
    #: file's directory, which is on it anyway).
    app_dir: ConfigPath | None = None
    app: str | None = None
    wsgi: str | None = None
    static_dir: ConfigPath | None = None
    #: Believe ``Forwarded``/``X-Forwarded-For``/``X-Forwarded-Proto`` from these proxies
    #: (uvicorn's names): the ASGI/WSGI client and scheme and the access log's ``client``.
    proxy_headers: bool = False
    forwarded_allow_ips: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    root_path: str = ""
    lifespan: Literal["auto", "on", "off"] = "auto"
    wsgi_threads: int = Field(default=16, ge=1, le=1024)
    max_header_size: Size = 64 * 1024
    max_body_size: Size = 10 * 1024 * 1024
    header_timeout: Duration = 10.0
    keepalive_timeout: Duration = 5.0
    send_timeout: Duration = 60.0
    body_timeout: Duration = 60.0
    access_log: bool = True
    server_header: str | None = "aionet"
    ws_max_size: Size = 16 * 1024 * 1024
    ws_ping_interval: Duration = 20.0
    ws_ping_timeout: Duration = 20.0
    ws_close_timeout: Duration = 10.0
    ws_write_limit: Size = 64 * 1024
    ws_per_message_deflate: bool = True
    http2: bool = False
    h2_max_streams: int = Field(default=100, ge=1, le=10_000)

    _check_app = field_validator("app", "wsgi")(_importable)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        ForwardedPolicy(value)  # raises ValueError naming a bad entry
        return value

    @field_validator("max_header_size")
    @classmethod
    def _header_floor(cls, value: int) -> int:
        if value < 1024:
            raise ValueError("max_header_size must be at least 1KiB")
        return value

    @model_validator(mode="after")
    def _one_app(self) -> Self:
        chosen = [name for name in ("app", "wsgi", "static_dir") if getattr(self, name)]
        if len(chosen) > 1:
            raise ValueError(f"choose one of app, wsgi and static_dir (got {', '.join(chosen)})")
        return self


class HttpHandler(ProtocolHandler):
    """``protocol: http``: HTTP/1.1 serving an ASGI app, a WSGI app or the built-in app."""

    Options = HttpOptions
    options: HttpOptions

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        opts = self.options
        self._wsgi: WsgiAdapter | None = None
        self._lifespan: Lifespan | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._started_at = 0.0
        limits = HttpLimits(
            max_header_size=opts.max_header_size,
            max_body_size=opts.max_body_size,
            header_timeout=opts.header_timeout,
            keepalive_timeout=opts.keepalive_timeout,
            send_timeout=opts.send_timeout,
            body_timeout=opts.body_timeout,
        )
        self.state = HttpState(
            self._build_app(),
            limits,
            self.log,
            access=HotLogger("aionet.access", listener=services.listener)
            if opts.access_log
            else None,
            server_header=opts.server_header,
            root_path=opts.root_path,
            metrics=HttpMetrics() if services.metrics else None,
            forwarded=ForwardedPolicy(opts.forwarded_allow_ips) if opts.proxy_headers else None,
            guard=services.clients,
            websocket=WsLimits(
                max_size=opts.ws_max_size,
                ping_interval=opts.ws_ping_interval,
                ping_timeout=opts.ws_ping_timeout,
                close_timeout=opts.ws_close_timeout,
                write_limit=opts.ws_write_limit,
                per_message_deflate=opts.ws_per_message_deflate,
            )
            if self._hosts_websocket()
            else None,
        )
        self.state.http2 = opts.http2
        self.state.h2_max_streams = opts.h2_max_streams

    @classmethod
    def preflight(cls, options: HandlerOptions) -> list[tuple[tuple[str | int, ...], str]]:
        """``static_dir`` must be a directory (``aionet check`` and ``run``, before binding)."""
        static = options.static_dir if isinstance(options, HttpOptions) else None
        if static is not None and not static.is_dir():
            return [(("static_dir",), f"static_dir {str(static)!r} is not a directory")]
        return []

    def _hosts_websocket(self) -> bool:
        """Whether the app may take the ``websocket`` scope (an ASGI app; WSGI and files not)."""
        return self.options.app is not None

    def _build_app(self) -> ASGIApp:
        opts = self.options
        if opts.app is not None:
            app: Any = import_from_string(opts.app)
            self._lifespan = Lifespan(app, self.log, opts.lifespan)
            return app  # type: ignore[no-any-return]
        if opts.wsgi is not None:
            self._wsgi = WsgiAdapter(import_from_string(opts.wsgi), opts.wsgi_threads)  # type: ignore[arg-type]
            return self._wsgi
        return StaticApp(opts.static_dir, self._stats)

    def metrics(self) -> list[Sample]:
        return self.state.metrics.samples() if self.state.metrics is not None else []

    def _stats(self) -> dict[str, Any]:
        state = self.state
        loop = asyncio.get_running_loop()
        return {
            "listener": self.services.listener,
            "uptime_s": round(loop.time() - self._started_at, 1),
            "open_connections": len(state.protocols),
            "requests": state.requests,
            "event_loop": type(loop).__module__.split(".")[0],
        }

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check ``static_dir``, run the ASGI lifespan startup, start the periodic tick.

        Raises:
            FileNotFoundError: ``static_dir`` is not a directory.
            LifespanError: the app's lifespan startup failed.
        """
        static = self.options.static_dir
        if static is not None and not static.is_dir():
            raise FileNotFoundError(f"static_dir {str(static)!r} is not a directory")
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        if self._lifespan is not None:
            self.state.lifespan_state = await self._lifespan.startup()
        self._ticker = loop.create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        state = self.state
        interval = state.tick_interval()
        while True:
            await asyncio.sleep(interval)
            state.tick()

    async def drain(self) -> None:
        """Idle keep-alive connections close now; busy ones answer with Connection: close."""
        self.state.drain()

    async def undrain(self) -> None:
        """New connections keep alive again (those told to close already have)."""
        self.state.draining = False

    async def stop(self) -> None:
        """Cancel what is still running, run the lifespan shutdown, stop the thread pool."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        tasks = list(self.state.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        if self._wsgi is not None:
            self._wsgi.close()

    def forwarders(self) -> Callable[[str], bool] | None:
        """``proxy_headers``: the trusted proxies pass access rules and per-IP caps at accept;
        each request's forwarded client meets them instead (``HttpProtocol._start``)."""
        forwarded = self.state.forwarded
        return forwarded.trusts if forwarded is not None else None

    def refusal(self) -> bytes:
        """``503 Service Unavailable`` with ``Connection: close`` and a Content-Length."""
        return refusal_response()

    def protocol_factory(self) -> asyncio.Protocol:
        return HttpProtocol(self.state)
