"""From validated listeners to serving sockets: the Server's setup steps, shared by start and
reload.

Each listener gets a handler built from the options the loader validated (never validated
again), the shared services (the user store and auth portal, the TLS store), its security (TLS
context, access control, PROXY settings), a slot in the connection manager, and its bound
listeners; ``_serve`` then starts accepting. ``start()`` runs these for every listener, a
reload for the listeners its plan names.

A base of ``Server`` (``_server``); the attributes are set by ``Server.__init__``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import structlog

from ...auth.portal import Portal
from ...auth.users import UserStore
from ...errors import ConfigError
from ..acl import AccessControl, ClientGuard, parse_networks
from ..handler import Handler, Services
from ..listeners import Listener, Security, build_listeners
from ..registry import resolve_listener
from ..tls import TlsError, TlsStore

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from ...config.models import Config, ListenerConfig
    from ..connections import ConnectionManager, ListenerStats
    from ..handler import ServerView


_log = structlog.get_logger("aionet.server")


class _Setup:
    """Stores, handlers, security, bind and serve (the attributes are set by ``Server``)."""

    config: Config
    manager: ConnectionManager
    handlers: dict[str, Handler]
    users: UserStore | None
    tls: TlsStore | None
    portal: Portal | None
    listeners: dict[str, list[Listener]]
    worker: tuple[int, int]
    _log: FilteringBoundLogger
    _bound_as: dict[str, ListenerConfig]

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

    # -- stores, security, handlers ------------------------------------------------------------

    def _security(self, lc: ListenerConfig, handler: Handler) -> Security:
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
            forwarders=handler.forwarders(),
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

    def _load_stores(self) -> None:
        """The stores the config names that were not handed in (``preflight`` loaded them for
        ``aionet run``), and the auth portal over the user store.

        Raises:
            ConfigError: the users file is corrupt (FILE:LINE:COL).
            TlsError: a certificate does not load.
        """
        auth = self.config.auth
        if self.users is None and auth.users_file is not None:
            # The daemon never rewrites the operator's users file (no rehash on login).
            self.users = UserStore.load(auth.users_file, rehash_on_login=False)
        if self.users is not None:
            self.portal = Portal(self.users, auth.throttle)
        if self.tls is None and self.config.tls.certificates:
            self.tls = TlsStore(self.config.tls.certificates)

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
        server = cast("ServerView", self)  # the ``Server`` this is a base of
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
                clients=_client_guard(lc, config),
            )
            handlers[lc.name] = cls(options, services)
        return handlers

    # -- bind and serve ------------------------------------------------------------------------

    def _bind(
        self, lc: ListenerConfig, handler: Handler, stats: ListenerStats | None = None
    ) -> None:
        """A slot for ``handler`` and its bound, not yet serving, listeners (all or none:
        StartupError; the caller unbinds what was bound)."""
        slot = self.manager.add_listener(lc.name, handler, lc.limits, stats)
        bound: list[Listener] = []
        self.listeners[lc.name] = bound
        for listener in build_listeners(lc, slot, self._security(lc, handler)):
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

    async def _unbind_all(self) -> None:
        for name, bound in self.listeners.items():
            for listener in bound:
                await listener.stop()
                self._log.info("listener_stopped", listener=name, transport=listener.transport_name)


def _client_guard(lc: ListenerConfig, config: Config) -> ClientGuard | None:
    """The access rules and the tighter per-IP cap (listener's or server's) of ``lc``, for a
    handler to apply to clients it learns inside its protocol; None when there are neither."""
    caps = [
        c
        for c in (lc.limits.max_connections_per_ip, config.server.limits.max_connections_per_ip)
        if c
    ]
    if not lc.access.active and not caps:
        return None
    return ClientGuard(lc.access, min(caps) if caps else None)


def _format_addr(addr: Any) -> str:
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{addr}"
