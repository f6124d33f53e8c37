"""The Server (the runner): owns the loop-side lifecycle of every listener and handler.

``start()`` builds one handler per listener, starts the handlers, binds every listener (all or
nothing: a listener that cannot bind unbinds the others and raises ``StartupError`` naming it),
starts the idle sweep and sets ``ready``. ``shutdown()`` is the one drain mechanism:

    stop accepting → handler.drain() → wait (on an event) ≤ shutdown_timeout
    → abort what is left → handler.stop()

``serve()`` runs start → wait for ``request_shutdown()`` → shutdown; the CLI wires SIGTERM and
SIGINT to ``request_shutdown`` (a second SIGINT calls ``force_shutdown``).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from ..auth.portal import Portal
from ..auth.users import UserStore
from ..config.loader import resolve_listener
from ..errors import ConfigError, ConfigIssue, RegistryError, StartupError
from .acl import AccessControl, parse_networks
from .connections import ConnectionManager
from .handler import Handler, Services
from .listeners import Listener, Security, build_listeners
from .tls import TlsError, TlsStore

if TYPE_CHECKING:
    from ..config.models import Config, ListenerConfig

__all__ = ["Server"]

_log = structlog.get_logger("aionet.server")


class Server:
    """Runs one configuration. Use ``async with Server(cfg) as s`` or ``await s.serve()``.

    Attributes:
        ready: set once every listener is bound and every handler started.
        manager: the process's ConnectionManager (live table, counters).
        listeners: listener name → its bound ``Listener`` objects.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.manager = ConnectionManager(config.server.limits)
        self.handlers: dict[str, Handler] = {}
        self.users: UserStore | None = None
        self.tls: TlsStore | None = None
        self.portal: Portal | None = None
        self.listeners: dict[str, list[Listener]] = {}
        self.ready = asyncio.Event()
        self.state = "new"
        self.exit_code = 0
        self._stop_requested: asyncio.Event | None = None
        self._forced = False
        self._log = _log.bind()

    # -- addresses -----------------------------------------------------------------------------

    def addresses(self, name: str) -> list[Any]:
        """Every bound address of listener ``name`` (``(host, port)`` tuples or unix paths)."""
        return [addr for lst in self.listeners.get(name, []) for addr in lst.addresses]

    def address(self, name: str, transport: str | None = None) -> Any:
        """The first bound address of listener ``name`` (optionally of one transport kind)."""
        for lst in self.listeners.get(name, []):
            if (transport is None or lst.transport_name.startswith(transport)) and lst.addresses:
                return lst.addresses[0]
        raise KeyError(f"listener {name!r} has no bound {transport or ''} address".strip())

    # -- start ---------------------------------------------------------------------------------

    def _security(self, lc: ListenerConfig) -> Security:
        """TLS context, access control and PROXY settings of one listener."""
        tls = None
        if lc.tls is not None:
            assert self.tls is not None  # the loader checked the certificate names exist
            tls = self.tls.listener(lc.tls)
        return Security(
            tls=tls,
            access=AccessControl(lc.access) if lc.access.active else None,
            proxies=parse_networks(lc.trusted_proxies) if lc.proxy_protocol else None,
            proxy_timeout=lc.proxy_timeout,
        )

    def reload_tls(self) -> bool:
        """Re-read every certificate: new handshakes use the new ones, live connections keep
        theirs. A broken pair is logged and the old certificates stay. True if reloaded."""
        if self.tls is None:
            return False
        try:
            self.tls.reload()
        except TlsError as exc:
            self._log.error("tls_reload_failed", error=str(exc))
            return False
        return True

    def reload_users(self) -> bool:
        """Re-read the users file; a corrupt file is logged with its positions and the current
        users stay. True if reloaded."""
        if self.users is None:
            return False
        try:
            self.users.reload()
        except ConfigError as exc:
            self._log.error("users_reload_failed", errors=[str(i) for i in exc.issues])
            return False
        self._log.info("users_reloaded", users=len(self.users.snapshot))
        return True

    def _load_users(self) -> None:
        """The shared user store and portal (ConfigError with FILE:LINE:COL if corrupt)."""
        auth = self.config.auth
        if auth.users_file is None:
            return
        # The daemon never rewrites the operator's users file (no rehash on login).
        self.users = UserStore.load(auth.users_file, rehash_on_login=False)
        self.portal = Portal(self.users, auth.throttle)

    def _build_handlers(self) -> None:
        data_dir = Path(self.config.server.data_dir)
        issues: list[ConfigIssue] = []
        for i, lc in enumerate(self.config.listeners):
            try:
                cls, options = resolve_listener(lc)
            except RegistryError as exc:
                issues.append(ConfigIssue("<config>", 0, 0, f"listeners[{i}].protocol", str(exc)))
                continue
            except ValidationError as exc:
                issues.extend(_options_issues(i, exc))
                continue
            services = Services(
                listener=lc.name,
                data_dir=data_dir,
                log=_log.bind(listener=lc.name),
                users=self.users,
                portal=self.portal,
                tls=self.tls,
            )
            self.handlers[lc.name] = cls(options, services)
        if issues:
            raise ConfigError(issues)

    async def start(self) -> None:
        """Start handlers, bind listeners, start the sweep, set ``ready``.

        Raises:
            ConfigError: a listener's handler or options cannot be resolved (dict configs).
            StartupError: a handler failed to start or a listener failed to bind; everything
                already started is stopped again before this is raised.
        """
        if self.state != "new":
            raise RuntimeError(f"Server.start() called in state {self.state!r}")
        self.state = "starting"
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        self._load_users()
        if self.config.tls.certificates:
            self.tls = TlsStore(self.config.tls.certificates)
        self._build_handlers()
        # Start-up, before any connection: a blocking mkdir is fine here.
        Path(self.config.server.data_dir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        started: list[Handler] = []
        try:
            for lc in self.config.listeners:
                handler = self.handlers[lc.name]
                try:
                    await handler.start()
                except Exception as exc:
                    raise StartupError(
                        f"listener {lc.name!r}: handler {type(handler).__name__} failed to "
                        f"start: {exc}"
                    ) from exc
                started.append(handler)
                slot = self.manager.add_listener(lc.name, handler, lc.limits)
                bound: list[Listener] = []
                self.listeners[lc.name] = bound
                for listener in build_listeners(lc, slot, self._security(lc)):
                    await listener.start()
                    bound.append(listener)
                    for addr in listener.addresses:
                        self._log.info(
                            "listener_started",
                            listener=lc.name,
                            protocol=lc.protocol,
                            transport=listener.transport_name,
                            address=_format_addr(addr),
                        )
        except BaseException:
            await self._unbind_all()
            for handler in reversed(started):
                with contextlib.suppress(Exception):
                    await handler.stop()
            self.state = "stopped"
            raise
        self.manager.start()
        self.state = "running"
        self.ready.set()

    # -- stop ----------------------------------------------------------------------------------

    async def _unbind_all(self) -> None:
        for name, bound in self.listeners.items():
            for listener in bound:
                await listener.stop()
                self._log.info("listener_stopped", listener=name, transport=listener.transport_name)

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting → drain handlers → wait ≤ timeout → abort the rest → stop handlers."""
        if self.state in ("stopping", "stopped"):
            return
        if self.state != "running":
            self.state = "stopped"
            return
        self.state = "stopping"
        timeout = self.config.server.shutdown_timeout if timeout is None else timeout
        self.manager.begin_drain()
        await self._unbind_all()
        live = len(self.manager.live)
        self._log.info("shutdown_started", live_connections=live, timeout=timeout)
        for handler in self.handlers.values():
            try:
                await handler.drain()
            except Exception as exc:
                self._log.error("handler_drain_failed", error=repr(exc), exc_info=exc)
        drained = self._forced is False and await self.manager.wait_empty(timeout)
        if not drained:
            aborted = self.manager.abort_all()
            self._log.warning("shutdown_aborted_connections", aborted=aborted)
            await self.manager.wait_empty(1.0)
        await self._cancel_stream_tasks()
        for handler in self.handlers.values():
            try:
                await handler.stop()
            except Exception as exc:
                self._log.error("handler_stop_failed", error=repr(exc), exc_info=exc)
        await self.manager.stop()
        if self.users is not None:
            self.users.close()
        self.state = "stopped"
        self._log.info("shutdown_complete")

    async def _cancel_stream_tasks(self) -> None:
        tasks = [rec.task for rec in self.manager.live.values() if rec.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def request_shutdown(self) -> None:
        """Ask ``serve()`` to shut down gracefully (signal-handler safe)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    def force_shutdown(self) -> None:
        """Skip the rest of the drain wait: abort every connection now."""
        self._forced = True
        self.exit_code = 1
        self.manager.abort_all()
        self.request_shutdown()

    async def serve(self) -> None:
        """start() → wait for request_shutdown() → shutdown()."""
        self._stop_requested = asyncio.Event()
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            await self.shutdown()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -- errors --------------------------------------------------------------------------------

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Route exceptions from protocol callbacks (handler bugs) to the log, counted."""
        exc = context.get("exception")
        protocol = context.get("protocol")
        rec = getattr(protocol, "_aionet_rec", None)
        slot = getattr(protocol, "_aionet_slot", None)
        if slot is not None and isinstance(exc, BaseException):
            slot.handler_error(rec, exc)
            return
        self._log.error(
            "loop_error",
            message=context.get("message"),
            error=repr(exc) if exc else None,
            exc_info=exc,
        )


def _options_issues(index: int, exc: ValidationError) -> list[ConfigIssue]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        out.append(ConfigIssue("<config>", 0, 0, f"listeners[{index}].options.{loc}", err["msg"]))
    return out


def _format_addr(addr: Any) -> str:
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{addr}"
