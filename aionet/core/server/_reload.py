"""Reload: read the new config, plan it (``core.reload_plan``), execute the plan.

An invalid file, a user store or certificate that cannot be loaded, or a handler that fails
to start changes nothing; otherwise listeners are kept, retargeted to a new handler (their
sockets stay bound, the old handler drains its connections and is then stopped), rebound, or
removed, as ``plan_reload`` decided.

A base of ``Server`` (``_server``); the attributes are set by ``Server.__init__``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from ...auth.portal import Portal
from ...auth.users import UserStore
from ...errors import ConfigError, StartupError
from ..preflight import load_config, resolve_config
from ..reload_plan import plan_reload
from ..tls import TlsError, TlsStore
from ._fds import ensure_fd_limit
from ._setup import _Setup

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...config.models import Config, ListenerConfig
    from ..connections import ListenerSlot
    from ..handler import Handler
    from ..systemd import Notifier


class _Reloads(_Setup):
    """SIGHUP: re-read, plan, apply (the attributes are set by ``Server``)."""

    state: str
    notifier: Notifier
    config_path: str | None
    config_transform: Callable[[Config], Config] | None
    reload_counts: dict[str, int]
    manage_fd_limit: bool
    _reload_lock: asyncio.Lock
    _reloads: set[asyncio.Task[bool]]
    _retiring: dict[asyncio.Task[None], Handler]

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
            self.reload_errors: list[str] = []
            applied = False
            try:
                new = config if config is not None else load_config(self.config_path)
                if config is None and self.config_transform is not None:
                    new = self.config_transform(new)
                resolve_config(new)  # a Config built without the loader (nothing if it was)
                applied = await self._apply(new)
            except ConfigError as exc:
                self._reload_failed([str(i) for i in exc.issues])
            finally:
                if self.state == "running":  # READY=1 after STOPPING=1 would confuse systemd
                    status = "config reloaded" if applied else "reload failed, old config kept"
                    self.notifier.ready(f"serving {len(self.listeners)} listeners; {status}")
            result = "applied" if applied else "failed"
            self.reload_counts[result] = self.reload_counts.get(result, 0) + 1
            return applied

    def _reload_failed(self, errors: list[str]) -> None:
        """Log why a reload was refused, and keep it for ``POST /reload``'s answer."""
        self.reload_errors = errors
        self._log.error("reload_failed", errors=errors)

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
            self._reload_failed(issues)
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
            self._reload_failed([f"listener {starting!r}: handler failed to start: {exc}"])
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
        if self.manage_fd_limit:
            ensure_fd_limit(new, self._log)
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
        security = self._security(lc, handler)
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
