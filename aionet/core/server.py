"""The Server (the runner): owns the loop-side lifecycle of every listener and handler.

``start()`` builds one handler per listener, binds every listener (all or nothing: a listener
that cannot bind unbinds the others and raises ``StartupError`` naming it), calls ``after_bind``
(the daemon drops root there), starts each handler and serves its listener, starts the idle
sweep and sets ``ready``. ``shutdown()`` is the one drain mechanism:

    stop accepting → handler.drain() → wait (on an event) ≤ shutdown_timeout
    → abort what is left → handler.stop()

``serve()`` runs start → wait for ``request_shutdown()`` → shutdown; the CLI wires SIGTERM and
SIGINT to ``request_shutdown`` (a second SIGINT calls ``force_shutdown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..auth.portal import Portal
from ..auth.users import UserStore
from ..errors import ConfigError, StartupError
from .acl import AccessControl, parse_networks
from .connections import ConnectionManager, ListenerSlot, ListenerStats
from .handler import Handler, Services
from .listeners import Listener, Security, build_listeners
from .metrics import process_samples
from .preflight import load_config, resolve_config
from .registry import resolve_listener
from .reload_plan import plan_reload
from .systemd import Notifier
from .tls import TlsError, TlsStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config.models import Config, ListenerConfig
    from .metrics import Sample

__all__ = ["LockoutPeers", "Server"]


class LockoutPeers(Protocol):
    """The other workers' lock-out tables (``core.supervisor.PeerLockouts``)."""

    def request_clear(self, network: str | None, user: str | None) -> None:
        """Ask every other worker to clear these lock-outs."""

    def others(self) -> list[dict[str, Any]]:
        """What every other live worker published."""

    def apply_requests(self) -> None:
        """Apply the clear requests other workers left."""

_log = structlog.get_logger("aionet.server")


class Server:
    """Runs one configuration. Use ``async with Server(cfg) as s`` or ``await s.serve()``.

    Attributes:
        ready: set once every listener is bound and every handler started.
        manager: the process's ConnectionManager (live table, counters).
        listeners: listener name → its bound ``Listener`` objects.
    """

    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        *,
        after_bind: Callable[[], None] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        #: Called by ``start()`` once every socket is bound, before any handler starts (the
        #: daemon writes its pid file and drops root privileges there).
        self.after_bind = after_bind
        #: systemd notifications (READY/RELOADING/STOPPING); a no-op unless the CLI passes one.
        self.notifier = notifier or Notifier()
        #: The file ``reload()`` re-reads (None: the embedded default).
        self.config_path = config_path
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
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[bool]] = set()
        #: Handlers a reload replaced, each finishing its connections (task → handler).
        self._retiring: dict[asyncio.Task[None], Handler] = {}
        #: (index, count) of this process among ``--workers`` (0, 1 without a supervisor).
        self.worker = (0, 1)
        #: Applied to every config ``reload()`` reads (a worker's SO_REUSEPORT and ports).
        self.config_transform: Callable[[Config], Config] | None = None
        #: Other workers' metric samples, added to this process's by ``/metrics``.
        self.peer_samples: Callable[[], list[Sample]] | None = None
        #: With ``--workers``: tells the other workers to clear lock-outs too (and lists theirs).
        self.peer_lockouts: LockoutPeers | None = None
        #: Reloads by result (applied / failed), for the metrics.
        self.reload_counts: dict[str, int] = {}
        #: Set by ``begin_drain()`` (``POST /drain``) and at shutdown: /readyz answers 503.
        self.drain_requested = False
        #: Listener configs as bound: a port-0 bind replaced by the port it got, so that a
        #: reloaded file naming that port keeps the sockets.
        self._bound_as: dict[str, ListenerConfig] = {}

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
        self.handlers = self._make_handlers(
            self.config, list(enumerate(self.config.listeners)), self.users, self.portal, self.tls
        )

    def _make_handlers(
        self,
        config: Config,
        which: list[tuple[int, ListenerConfig]],
        users: UserStore | None,
        portal: Portal | None,
        tls: TlsStore | None,
    ) -> dict[str, Handler]:
        """A handler per listener of ``which`` (index in ``config.listeners``, listener), from
        the options the loader validated (``resolve_config`` has resolved every listener)."""
        data_dir = Path(config.server.data_dir)
        handlers: dict[str, Handler] = {}
        server = self
        for _, lc in which:
            cls, options = resolve_listener(lc)  # carried: validated once, by the loader
            services = Services(
                listener=lc.name,
                data_dir=data_dir,
                log=_log.bind(listener=lc.name),
                users=users,
                portal=portal,
                tls=tls,
                server=server,
                worker=self.worker,
                metrics=any(other.protocol == "admin" for other in config.listeners),
            )
            handlers[lc.name] = cls(options, services)
        return handlers

    async def start(self) -> None:
        """Bind every listener, call ``after_bind``, start the handlers and serve each
        listener once its handler runs, start the sweep, set ``ready``.

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
        resolve_config(self.config)  # a Config built without the loader (nothing if it was)
        self._load_users()
        if self.config.tls.certificates:
            self.tls = TlsStore(self.config.tls.certificates)
        self._build_handlers()
        # Start-up, before any connection: a blocking mkdir is fine here.
        Path(self.config.server.data_dir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        started: list[Handler] = []
        try:
            for lc in self.config.listeners:  # every socket first: no handler runs before
                self._bind(lc, self.handlers[lc.name])  # ``after_bind`` (privilege drop)
            if self.after_bind is not None:
                self.after_bind()
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
                await self._serve(lc.name)
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
        self.notifier.ready(f"serving {len(self.listeners)} listeners")

    def _bind(
        self, lc: ListenerConfig, handler: Handler, stats: ListenerStats | None = None
    ) -> None:
        """A slot for ``handler`` and its bound, not yet serving, listeners (all or none:
        StartupError; the caller unbinds what was bound)."""
        slot = self.manager.add_listener(lc.name, handler, lc.limits, stats)
        bound: list[Listener] = []
        self.listeners[lc.name] = bound
        for listener in build_listeners(lc, slot, self._security(lc)):
            listener.bind()
            bound.append(listener)
        self._bound_as[lc.name] = lc
        ports = {a[1] for lst in bound for a in lst.addresses if isinstance(a, tuple)}
        if lc.bind.kind == "inet" and lc.bind.port == 0 and len(ports) == 1:
            bind = dataclasses.replace(lc.bind, port=ports.pop())
            self._bound_as[lc.name] = lc.model_copy(update={"bind": bind})

    async def _serve(self, name: str) -> None:
        """Start accepting on listener ``name``'s bound sockets."""
        for listener in self.listeners[name]:
            await listener.start()
            for addr in listener.addresses:
                self._log.info(
                    "listener_started",
                    listener=name,
                    protocol=listener.config.protocol,
                    transport=listener.transport_name,
                    address=_format_addr(addr),
                )

    async def _unbind(self, name: str) -> None:
        self._bound_as.pop(name, None)
        for listener in self.listeners.pop(name, []):
            await listener.stop()
            self._log.info("listener_stopped", listener=name, transport=listener.transport_name)

    # -- reload --------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload in a task (signal-handler safe): SIGHUP."""
        if self.state != "running":
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self, config: Config | None = None) -> bool:
        """Apply a new configuration (re-read from ``config_path`` when not given).

        An invalid file, a user store or certificate that cannot be loaded, or a handler that
        fails to start is logged and changes nothing. Otherwise: certificates and users are
        re-read; listeners are diffed by name — unchanged ones keep their sockets, handler and
        connections; a listener whose options, limits, TLS or access rules changed keeps its
        sockets and sends new connections to a new handler while the old handler's connections
        finish (it is drained, then stopped when the last one closes); a listener whose bind
        or protocol changed is unbound and bound anew; removed listeners stop accepting and
        drain; new ones bind. Returns True if the new configuration was applied.
        """
        async with self._reload_lock:
            if self.state != "running":
                return False
            self.notifier.reloading()
            applied = False
            try:
                new = config if config is not None else load_config(self.config_path)
                if config is None and self.config_transform is not None:
                    new = self.config_transform(new)
                resolve_config(new)  # a Config built without the loader (nothing if it was)
                applied = await self._apply(new)
            except ConfigError as exc:
                self._log.error("reload_failed", errors=[str(i) for i in exc.issues])
            finally:
                if self.state == "running":  # READY=1 after STOPPING=1 would confuse systemd
                    status = "config reloaded" if applied else "reload failed, old config kept"
                    self.notifier.ready(f"serving {len(self.listeners)} listeners; {status}")
            result = "applied" if applied else "failed"
            self.reload_counts[result] = self.reload_counts.get(result, 0) + 1
            return applied

    def ready_for_traffic(self) -> bool:
        """Every listener bound and started, and no drain asked for (``/readyz``)."""
        return self.state == "running" and not self.drain_requested

    def samples(self) -> list[Sample]:
        """This process's metric samples (read at scrape time from counters kept anyway)."""
        return process_samples(
            self.manager,
            self.handlers,
            self.portal,
            ready=self.ready_for_traffic(),
            reload_counts=self.reload_counts,
        )

    def clear_lockouts(self, *, network: str | None = None, user: str | None = None) -> int:
        """Clear auth lock-outs here, and in every other worker (``POST /lockouts/clear``)."""
        cleared = self.portal.clear(network=network, user=user) if self.portal else 0
        if self.peer_lockouts is not None:
            self.peer_lockouts.request_clear(network, user)
        return cleared

    async def begin_drain(self) -> None:
        """Stop being ready and ask every handler to finish its sessions, while still
        accepting (a load balancer takes us out of rotation; SIGTERM then stops the rest)."""
        if self.drain_requested:
            return
        self.drain_requested = True
        self._log.info("drain_requested", live_connections=len(self.manager.live))
        for handler in self.handlers.values():
            try:
                await handler.drain()
            except Exception as exc:
                self._log.error("handler_drain_failed", error=repr(exc), exc_info=exc)

    async def _apply(self, new: Config) -> bool:
        """Execute ``plan_reload(old, new, bound)``: prepare what can fail (stores, handlers),
        then apply. False (nothing changed) if preparing failed."""
        old = self.config
        log = self._log
        reload_always = [n for n, h in self.handlers.items() if getattr(h, "reload_always", False)]
        plan = plan_reload(old, new, self._bound_as, reload_always=reload_always)
        # 1. Prepare everything that can fail; nothing running is touched yet.
        users, portal, tls = self.users, self.portal, self.tls
        try:
            if plan.fresh_users:
                users = portal = None
                if new.auth.users_file is not None:
                    users = UserStore.load(new.auth.users_file, rehash_on_login=False)
                    portal = Portal(users, new.auth.throttle)
            if plan.fresh_tls:
                tls = TlsStore(new.tls.certificates) if new.tls.certificates else None
        except (ConfigError, TlsError) as exc:
            issues = [str(i) for i in exc.issues] if isinstance(exc, ConfigError) else [str(exc)]
            log.error("reload_failed", errors=issues)
            if plan.fresh_users and users is not None:
                users.close()
            return False
        build = set(plan.build)
        which = [(i, lc) for i, lc in enumerate(new.listeners) if lc.name in build]
        handlers = self._make_handlers(new, which, users, portal, tls)
        started: list[Handler] = []
        starting = ""
        try:
            for starting, handler in handlers.items():  # noqa: B007 - named in the error
                await handler.start()
                started.append(handler)
        except Exception as exc:
            error = f"listener {starting!r}: handler failed to start: {exc}"
            log.error("reload_failed", errors=[error])
            for handler in reversed(started):
                with contextlib.suppress(Exception):
                    await handler.stop()
            if plan.fresh_users and users is not None:
                users.close()
            return False
        # 2. Apply. From here on nothing is refused: a bind that fails is logged.
        if plan.fresh_users:
            if self.users is not None:
                self.users.close()
            self.users, self.portal = users, portal
        elif self.users is not None:
            self.reload_users()
        if plan.fresh_tls:
            self.tls = tls
        else:
            self.reload_tls()
        self.config = new
        self.manager.limits = new.server.limits
        for name in plan.removed:
            await self._unbind(name)
            previous = self.handlers.pop(name, None)
            if previous is not None:
                self._retire(name, previous, self.manager.slots.get(name))
        bound: list[str] = []
        failed: list[str] = []
        new_lcs = {lc.name: lc for lc in new.listeners}
        old_names = {lc.name for lc in old.listeners}
        for name, handler in handlers.items():
            if name in plan.changed:
                self._retarget(new_lcs[name], handler)
            elif await self._rebind(new_lcs[name], handler, keep_stats=name in old_names):
                bound.append(name)
            else:
                failed.append(name)
                continue
            self.handlers[name] = handler
        log.info(
            "config_reloaded",
            added=[n for n in plan.added if n in bound],
            changed=list(plan.changed),
            rebound=[n for n in plan.rebound if n in bound],
            removed=list(plan.removed),
            failed=failed,
            restart_required=list(plan.restart_required),
        )
        return True

    def _retarget(self, lc: ListenerConfig, handler: Handler) -> None:
        """Keep ``lc``'s bound sockets; new connections go to ``handler``, the old one drains."""
        old_slot = self.manager.slots[lc.name]
        slot = self.manager.add_listener(lc.name, handler, lc.limits, old_slot.stats)
        security = self._security(lc)
        for listener in self.listeners.get(lc.name, []):
            listener.retarget(slot, security)
        self._retire(lc.name, self.handlers[lc.name], old_slot)

    async def _rebind(self, lc: ListenerConfig, handler: Handler, *, keep_stats: bool) -> bool:
        """Unbind ``lc.name`` (if bound), retire its handler, bind and serve ``handler``.
        False (logged, nothing left bound) if the bind fails."""
        name = lc.name
        old_slot = self.manager.slots.get(name)
        await self._unbind(name)
        previous = self.handlers.pop(name, None)
        if previous is not None:
            self._retire(name, previous, old_slot)
        stats = old_slot.stats if keep_stats and old_slot is not None else None  # same listener
        try:
            self._bind(lc, handler, stats)
            await self._serve(name)
        except StartupError as exc:
            self._log.error("reload_listener_failed", listener=name, error=str(exc))
            await self._unbind(name)
            self._retire(name, handler, self.manager.slots.get(name))
            return False
        return True

    def _retire(self, name: str, handler: Handler, slot: ListenerSlot | None = None) -> None:
        """Drain ``handler`` now; stop it once the connections its slot admitted are gone."""
        task = asyncio.get_running_loop().create_task(self._retire_handler(name, handler, slot))
        self._retiring[task] = handler
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)

    async def _retire_handler(self, name: str, handler: Handler, slot: ListenerSlot | None) -> None:
        try:
            await handler.drain()
        except Exception as exc:
            self._log.error("handler_drain_failed", listener=name, error=repr(exc), exc_info=exc)
        if slot is not None:
            if self.manager.slots.get(name) is slot:
                del self.manager.slots[name]
            await slot.wait_empty()
        try:
            await handler.stop()
        except Exception as exc:
            self._log.error("handler_stop_failed", listener=name, error=repr(exc), exc_info=exc)
        self._log.info("handler_retired", listener=name)

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
        self.drain_requested = True
        self.notifier.stopping()
        timeout = self.config.server.shutdown_timeout if timeout is None else timeout
        self.manager.begin_drain()
        await self._unbind_all()
        live = len(self.manager.live)
        self._log.info("shutdown_started", live_connections=live, timeout=timeout)
        if self._reloads:  # a reload in progress finishes first (a later one sees "stopping")
            _done, pending = await asyncio.wait(list(self._reloads), timeout=timeout)
            for reload in pending:
                reload.cancel()
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()  # their handlers are drained (again) and stopped with the rest
        handlers = [*self.handlers.values(), *(h for _, h in retiring)]
        for handler in handlers:
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
        for handler in handlers:
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


def _format_addr(addr: Any) -> str:
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{addr}"
