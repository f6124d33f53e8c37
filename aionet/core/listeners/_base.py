"""What every listener is: a named endpoint with bound sockets, and what it checks at accept.

A listener binds its own sockets (``_binding``), hands them to the event loop, and reads back
the bound addresses (port 0 → the ephemeral port). It never speaks a protocol: accepted
connections go to the connection manager's slot, which admits them and runs the handler.
"""

from __future__ import annotations

import abc
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._binding import bind_inet, bind_unix, unlink_unix_socket

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...config.models import ListenerConfig
    from ..acl import AccessControl, IPNetwork
    from ..connections import ListenerSlot
    from ..tls import ListenerTls

__all__ = ["Listener", "Security"]


@dataclass(frozen=True)
class Security:
    """What a stream listener checks and wraps at accept: access control, PROXY, TLS."""

    tls: ListenerTls | None = None
    access: AccessControl | None = None
    #: Networks a PROXY header is accepted from; None when the listener does not use PROXY.
    proxies: tuple[IPNetwork, ...] | None = None
    proxy_timeout: float = 5.0
    #: Peers whose connections carry other clients (``Handler.forwarders``): no access rules
    #: or per-IP caps at accept, the handler applies them per forwarded client.
    forwarders: Callable[[str], bool] | None = None


class Listener(abc.ABC):
    """Base: a named endpoint with sockets, started and stopped by the Server."""

    transport_name = ""

    def __init__(
        self, config: ListenerConfig, slot: ListenerSlot, security: Security | None = None
    ) -> None:
        self.config = config
        self.slot = slot
        self.security = security or Security()
        self.name = config.name
        self.sockets: list[socket.socket] = []
        self.addresses: list[Any] = []

    def describe(self) -> str:
        return f"listener {self.name!r} ({self.transport_name} {self.config.bind})"

    def retarget(self, slot: ListenerSlot, security: Security) -> None:
        """Reload: new connections (or datagrams) go to ``slot``'s handler under ``security``;
        the sockets stay bound and connections already handed over keep their old slot."""
        self.slot = slot
        self.security = security

    #: SOCK_STREAM or SOCK_DGRAM: what ``bind()`` creates.
    sock_type = socket.SOCK_STREAM

    def bind(self) -> None:
        """Bind the sockets without serving them yet (``start()`` serves; it binds first if
        this was not called). The Server binds every listener before any handler starts, so
        privileged ports are bound before root privileges are dropped."""
        if not self.sockets:
            self.sockets = self._bind(self.sock_type)
            self.addresses = [sock.getsockname() for sock in self.sockets]

    @abc.abstractmethod
    async def start(self) -> None:
        """Bind (unless ``bind()`` did) and start accepting; ``addresses`` holds the bound
        addresses after."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop accepting. Live connections are left to the manager's drain."""

    def _bind(self, sock_type: int) -> list[socket.socket]:
        bind = self.config.bind
        if bind.kind == "unix":
            return [bind_unix(bind.path, sock_type, self.describe())]
        return bind_inet(bind, sock_type, self.config.reuse_port, self.describe())

    def _cleanup_unix(self) -> None:
        bind = self.config.bind
        if bind.kind == "unix":
            unlink_unix_socket(bind.path)
