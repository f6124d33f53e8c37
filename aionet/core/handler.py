"""The handler API: what a protocol author subclasses.

Three shapes, one contract:

* ``StreamHandler.handle(conn)`` — one task per connection, ``conn.reader``/``conn.writer`` are
  asyncio streams. The easy default.
* ``ProtocolHandler.protocol_factory()`` — an ``asyncio.Protocol`` per connection, for hot paths
  and for wrapping a third-party protocol class (aiosmtpd's ``SMTP``) unchanged.
* ``DatagramHandler.datagram(data, addr)`` — one call per datagram, the reply (or None) back.

Whatever the shape, the core owns the socket: it admits or refuses the connection, tracks it,
enforces the idle timeout and closes it in a ``finally``. A handler never binds, never builds an
SSLContext, never configures logging and never reads the YAML; it receives validated
``options`` and the shared ``services``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from ..errors import ProtocolError
from .starttls import ClearTextLogin, upgrade

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from pathlib import Path

    from structlog.typing import FilteringBoundLogger

    from ..auth.portal import Portal
    from ..auth.users import UserStore
    from .acl import ClientGuard

    # Where they live, not the face: the face re-exports StreamProtocol, which imports this.
    from .connections._manager import ConnectionManager, ConnectionRecord
    from .samples import Sample
    from .starttls import PlaintextBuffer
    from .tls import TlsStore

__all__ = [
    "Connection",
    "DatagramHandler",
    "Handler",
    "HandlerOptions",
    "InBandTlsOptions",
    "LineTooLong",
    "ProtocolHandler",
    "ServerView",
    "Services",
    "StreamHandler",
]


class HandlerOptions(BaseModel):
    """Base of every handler's ``Options``: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InBandTlsOptions(HandlerOptions):
    """Options every protocol with an in-band TLS upgrade shares, with one meaning each.

    ``starttls``: the ``tls.certificates`` entry the upgrade (STARTTLS, STLS, AUTH TLS) uses;
    no upgrade is offered without one. ``auth_without_tls``: whether a password login may be
    sent before TLS: ``false`` (the default), ``true``, or ``"loopback"`` (only for clients on
    this host: 127.0.0.0/8, ::1, unix sockets). See ``aionet.core.starttls``.
    """

    starttls: str | None = None
    auth_without_tls: ClearTextLogin = False


class ServerView(Protocol):
    """What a handler may see of the running server (``aionet.Server`` is one): the admin
    endpoint is built on exactly this, so handlers never depend on the whole ``Server``."""

    manager: ConnectionManager
    portal: Portal | None
    state: str
    worker: tuple[int, int]
    drain_requested: bool
    reload_errors: list[str]
    peer_samples: Callable[[], list[Sample]] | None
    peer_lockouts: Any
    #: Signs what one worker hands out and another checks (the same in every worker).
    secret: bytes

    def listener_protocols(self) -> dict[str, str]:
        """Each listener's name and ``protocol:``."""

    def ready_for_traffic(self) -> bool:
        """Whether /readyz answers 200 (every listener started, not draining)."""

    def samples(self) -> list[Sample]:
        """This process's metric samples."""

    async def reload(self) -> bool:
        """Re-read the config file, as SIGHUP does; False when it was refused."""

    async def begin_drain(self) -> None:
        """Stop being ready and ask sessions to finish (still accepting)."""

    async def end_drain(self) -> bool:
        """Undo ``begin_drain`` (False: nothing to undo)."""

    def clear_lockouts(self, *, network: str | None = None, user: str | None = None) -> int:
        """Clear auth lock-outs, in every worker."""


@dataclass(frozen=True)
class Services:
    """What the core hands every handler: its listener's name, the data directory, a logger.

    Later layers (TLS, user store, mail store, metrics) add their services here, so handlers
    reach them without importing the core.
    """

    listener: str
    data_dir: Path
    log: FilteringBoundLogger
    #: The shared user store (``auth.users_file``), or None when none is configured.
    users: UserStore | None = None
    #: The one auth portal every protocol authenticates through, or None without a user store.
    portal: Portal | None = None
    #: The shared TLS layer (``tls.certificates``): ``tls.context(NAME)`` for STARTTLS.
    tls: TlsStore | None = None
    #: The running server, as the narrow ``ServerView`` (the admin endpoint: state, live
    #: table, metrics, reload, drain, lock-outs).
    server: ServerView | None = None
    #: (index, count) of this worker process: split what workers cannot share (FTP passive
    #: ports) by it. (0, 1) when there is one process.
    worker: tuple[int, int] = (0, 1)
    #: Whether handlers should count per-request metrics (an ``admin`` listener exists).
    metrics: bool = False
    #: The listener's access rules and per-IP cap for clients the handler learns inside its
    #: protocol (see ``Handler.forwarders``), or None when the listener has neither.
    clients: ClientGuard | None = None


class LineTooLong(ProtocolError, asyncio.LimitOverrunError, ValueError):
    """A ``StreamHandler``'s client sent a line longer than the reader's limit
    (``StreamHandler.stream_limit``): ``conn.reader.readline()``/``readuntil()`` raise it.

    Catch it to answer with the protocol's own error (``500 line too long``); left uncaught it
    ends the session, logged at info as ``line_too_long`` (a hostile or broken client, not a
    handler bug). ``readline()`` has dropped the line when it raises; ``readuntil()`` leaves
    the buffer as it was, as asyncio does. It is also the ``LimitOverrunError`` and the
    ``ValueError`` asyncio's own reader raises, so code written for those keeps working.
    """

    def __init__(self, limit: int, consumed: int = 0) -> None:
        Exception.__init__(self, f"line longer than {limit} bytes")  # no cooperative chain
        self.reply = b""
        self.close = True
        self.limit = limit
        self.consumed = consumed


class Handler(abc.ABC):  # noqa: B024 - the abstract methods are on the three shapes below
    """Base of all handlers. One instance per listener, built once at server start.

    Subclasses declare a nested ``class Options(Handler.Options)`` pydantic model for their
    ``listener.options``; the config loader validates it and positions its errors.
    """

    Options: ClassVar[type[HandlerOptions]] = HandlerOptions
    #: Which transports a listener with this handler binds: ``{"tcp"}``, ``{"udp"}`` or both.
    transport_kinds: ClassVar[frozenset[str]] = frozenset()
    #: Rebuild this listener's handler on every reload even when its YAML is unchanged (the
    #: handler reads files its options name, such as DNS zone files).
    reload_always: ClassVar[bool] = False

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        self.options = options
        self.services = services
        self.log = services.log

    @classmethod
    def transports(cls) -> frozenset[str]:
        return cls.transport_kinds

    @classmethod
    def preflight(cls, options: HandlerOptions) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems ``start()`` would hit with what ``options`` name on disk (a directory, a
        file), found before anything binds: ``(key path under options, message)`` each.

        ``aionet check`` and ``aionet run`` report them at the option's ``FILE:LINE:COL``.
        Default: none.
        """
        return []

    async def start(self) -> None:  # noqa: B027 - an optional hook
        """Acquire resources before the listener serves (ASGI lifespan, stores); its sockets are
        bound already and, when the daemon drops root, privileges are dropped. Default: none."""

    async def stop(self) -> None:  # noqa: B027 - an optional hook
        """Release resources after every connection has closed. Default: none."""

    async def drain(self) -> None:  # noqa: B027 - an optional hook
        """Ask live sessions to finish (stop keep-alive, answer 421). Default: nothing to ask.

        Called once when the server starts draining; the core then waits for connections to
        close on their own, up to ``server.shutdown_timeout``, and aborts the rest.
        """

    async def undrain(self) -> None:  # noqa: B027 - an optional hook
        """The drain was called off (``POST /undrain``): serve new sessions as before. Default:
        nothing to undo."""

    def metrics(self) -> list[Sample]:
        """This handler's own metrics, read at scrape time (``aionet.core.metrics.Sample``;
        the core adds the ``listener`` label). Keep counting cheap: plain ints it bumps."""
        return []

    def forwarders(self) -> Callable[[str], bool] | None:
        """Which peers carry other clients' requests (a trusted reverse proxy), or None.

        A connection from such a peer passes the listener's access rules and per-IP caps at
        accept; the handler applies them (``services.clients``) to each client the peer names.
        HTTP with ``proxy_headers`` returns its ``forwarded_allow_ips`` test.
        """
        return None

    def refusal(self) -> bytes | None:
        """Bytes sent to a connection the connection manager refuses, before it is closed.

        ``None`` (the default) closes without a word; ``421 ...`` suits SMTP/FTP/POP3.
        """
        return None

    def idle_goodbye(self) -> bytes | None:
        """Bytes sent to a connection closed for inactivity, just before it is closed.

        The connection manager's idle sweep says them (and ``Connection.close_idle()``, for a
        protocol's own inactivity timer), unless they cannot be said at once: during a
        STARTTLS handshake, once the connection is closing, or while earlier output waits for
        the client to read it (``aionet.core.sessions.say_goodbye``). Read once per listener,
        like ``refusal()``. ``None`` (the default) closes without a word; the line protocols
        say what their best-known servers say (``421 4.4.2 ... timeout exceeded``, ``* BYE``).
        """
        return None


class StreamHandler(Handler):
    """A handler that serves each connection in its own task through asyncio streams."""

    transport_kinds: ClassVar[frozenset[str]] = frozenset({"tcp"})
    #: StreamReader buffer limit (bytes) for ``readline()``/``readuntil()``.
    stream_limit: ClassVar[int] = 64 * 1024

    @abc.abstractmethod
    async def handle(self, conn: Connection) -> None:
        """Serve one connection. Return (or raise) to have the core close it."""


class ProtocolHandler(Handler):
    """A handler that gives the core an ``asyncio.Protocol`` per connection.

    The core tracks the protocol without its help: admission happens before the protocol's
    own ``connection_made`` runs, and ``connection_lost`` releases the connection, also after
    an in-place TLS upgrade.
    """

    transport_kinds: ClassVar[frozenset[str]] = frozenset({"tcp"})

    @abc.abstractmethod
    def protocol_factory(self) -> asyncio.Protocol:
        """A new protocol instance for one connection."""


class DatagramHandler(Handler):
    """A handler that answers datagrams (UDP or unix datagram sockets)."""

    transport_kinds: ClassVar[frozenset[str]] = frozenset({"udp"})

    @abc.abstractmethod
    def datagram(self, data: bytes, addr: Any) -> bytes | Awaitable[bytes | None] | None:
        """Answer one datagram: the reply bytes, None for no reply, or an awaitable of either."""


class Connection:
    """One stream connection as a ``StreamHandler`` sees it.

    Attributes:
        reader, writer: the asyncio streams.
        id: the connection id in the connection manager's live table.
        peer: the peer address (``(host, port)``, or the unix socket path / ``""``).
        listener: the listener's name.
        user: whoever the protocol authenticated (set by the handler), else None.
    """

    __slots__ = ("_log", "_record", "reader", "user", "writer")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: ConnectionRecord,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.user: Any = None
        self._record = record
        self._log: FilteringBoundLogger | None = None

    @property
    def id(self) -> int:
        return self._record.id

    @property
    def peer(self) -> Any:
        return self._record.peer

    @property
    def listener(self) -> str:
        return self._record.slot.name

    @property
    def log(self) -> FilteringBoundLogger:
        """A logger bound to ``conn_id``, ``listener`` and ``peer`` (made on first use)."""
        if self._log is None:
            self._log = self._record.bind_log()
        return self._log

    def close_idle(self) -> None:
        """Close for inactivity as the idle sweep does (for a protocol's own inactivity timer,
        such as IMAP's IDLE autologout): the handler's ``idle_goodbye()`` when it can be said
        at once, then a graceful close; counted and logged as ``connection_idle_timeout``.
        Nothing is awaited; the caller returns (or raises) to end ``handle()``."""
        self._record.close_idle()

    def touch(self, nbytes_in: int = 0, nbytes_out: int = 0) -> None:
        """Count activity the core cannot see (an FTP data channel) against the idle timeout."""
        rec = self._record
        rec.last_active = rec.clock.now
        rec.bytes_in += nbytes_in
        rec.bytes_out += nbytes_out

    @property
    def tls(self) -> dict[str, Any] | None:
        """Cipher, version and peer certificate when the stream is TLS, else None."""
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        return {
            "version": ssl_object.version(),
            "cipher": ssl_object.cipher(),
            "peercert": ssl_object.getpeercert(),
        }

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        timeout: float = 10.0,
        buffers: Iterable[PlaintextBuffer] = (),
    ) -> None:
        """Upgrade the stream to TLS in place (STARTTLS-style), the handshake under ``timeout``.

        Every plaintext byte received before the handshake is discarded first: whatever waits
        in ``conn.reader`` and in ``buffers`` (the protocol machine's own input buffer, if it
        keeps one). See ``aionet.core.starttls.upgrade``, the one path every protocol uses.

        Raises:
            ssl.SSLError, ConnectionError, TimeoutError: the handshake failed; the caller
                should end the session (the core closes the connection).
        """
        writer = self.writer
        await writer.drain()
        transport = writer.transport
        protocol: Any = transport.get_protocol()
        new = await upgrade(
            transport,
            protocol,
            context,
            buffers=(self.reader, *buffers),
            timeout=timeout,
            log=self.log,
        )
        writer._transport = new  # type: ignore[attr-defined]
        protocol._replace_writer(writer)

    async def aclose(self) -> None:
        """Close gracefully: flush what was written, then close. Always closes."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()
