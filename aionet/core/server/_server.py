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
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ...errors import StartupError
from ..connections import ConnectionManager
from ..metrics import process_samples
from ..preflight import resolve_config
from ..systemd import Notifier
from ._fds import ensure_fd_limit
from ._reload import _Reloads

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...auth.users import UserStore
    from ...config.models import Config
    from ..handler import Handler
    from ..metrics import Sample
    from ..tls import TlsStore

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


class Server(_Reloads):
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
        tls: TlsStore | None = None,
        users: UserStore | None = None,
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
        self.handlers = {}
        #: The user and TLS stores. ``aionet run`` hands in the ones ``preflight`` loaded
        #: (``Checked.users``, ``Checked.tls``); ``start()`` loads what the config names and
        #: was not handed in. A reload re-reads them.
        self.users = users
        self.tls = tls
        self.portal = None
        self.listeners = {}
        self.ready = asyncio.Event()
        self.state = "new"
        self.exit_code = 0
        self._stop_requested: asyncio.Event | None = None
        self._forced = False
        self._log = _log.bind()
        self._reload_lock = asyncio.Lock()
        self._reloads = set()
        #: Handlers a reload replaced, each finishing its connections (task → handler).
        self._retiring = {}
        #: (index, count) of this process among ``--workers`` (0, 1 without a supervisor).
        self.worker = (0, 1)
        #: Applied to every config ``reload()`` reads (a worker's SO_REUSEPORT and ports).
        self.config_transform = None
        #: Signs what one worker hands out and another checks (the dashboard's feed tickets);
        #: the supervisor gives every worker the same one.
        self.secret = os.urandom(32)
        #: Other workers' metric samples, added to this process's by ``/metrics``.
        self.peer_samples: Callable[[], list[Sample]] | None = None
        #: With ``--workers``: tells the other workers to clear lock-outs too (and lists theirs).
        self.peer_lockouts: LockoutPeers | None = None
        #: Reloads by result (applied / failed), for the metrics.
        self.reload_counts = {}
        #: Set by ``begin_drain()`` (``POST /drain``) and at shutdown: /readyz answers 503.
        self.drain_requested = False
        #: Why the last reload was refused (empty when it was applied).
        self.reload_errors: list[str] = []
        #: Raise RLIMIT_NOFILE to what the caps can need at start and reload (``_fds``);
        #: ``aionet run`` sets it, an in-process Server (tests, embedding) leaves the limit be.
        self.manage_fd_limit = False
        #: Listener configs as bound: a port-0 bind replaced by the port it got, so that a
        #: reloaded file naming that port keeps the sockets.
        self._bound_as = {}

    # -- start ---------------------------------------------------------------------------------

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
        self._load_stores()
        self._build_handlers()
        if self.manage_fd_limit:  # before the binds: still root, if started as root
            ensure_fd_limit(self.config, self._log)
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

    # -- what handlers see (``ServerView``: the admin endpoint) ---------------------------------

    def ready_for_traffic(self) -> bool:
        """Every listener bound and started, and no drain asked for (``/readyz``)."""
        return self.state == "running" and not self.drain_requested

    def listener_protocols(self) -> dict[str, str]:
        """Each listener's ``protocol:`` (the dashboard labels its cards with them)."""
        return {lc.name: lc.protocol for lc in self.config.listeners}

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

    async def end_drain(self) -> bool:
        """Undo ``begin_drain``: ready again, and handlers keep new sessions alive. Sessions
        already told to go are gone; False when there was no drain to undo (or the server is
        stopping: a shutdown's drain cannot be undone)."""
        if not self.drain_requested or self.state != "running":
            return False
        self.drain_requested = False
        self._log.info("drain_cancelled")
        for handler in self.handlers.values():
            try:
                await handler.undrain()
            except Exception as exc:
                self._log.error("handler_undrain_failed", error=repr(exc), exc_info=exc)
        return True

    # -- stop ----------------------------------------------------------------------------------

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
