"""The one in-band TLS upgrade and the clear-text login policy every protocol shares.

Every protocol that upgrades a plain connection to TLS in band (SMTP ``STARTTLS``, POP3
``STLS``, FTP ``AUTH TLS``, IMAP ``STARTTLS`` next) goes through :func:`upgrade`, for stream
handlers and protocol handlers alike. It is the fix for the CVE-2011-0411 class of bugs
(command injection across STARTTLS): a man in the middle pipelines plaintext commands after the
upgrade verb, and a server that keeps them runs them as if the client had sent them under
TLS. RFC 3207 §4.2, RFC 2595 §4 and RFC 4217 §4 all say the same: nothing received before the
handshake survives it.

Where plaintext can wait when the upgrade starts:

* in the protocol's own state machine (its line buffer) — the caller passes it in ``buffers``
  (anything with ``discard_input() -> int``);
* in the ``asyncio.StreamReader`` the driver reads from — passed in ``buffers`` too (a stream
  handler's reader always is);
* in the transport — never: a transport hands every chunk to its protocol at once, and
  ``loop.start_tls`` pauses reading before its first await, so every byte that arrives after
  the discard is fed to the TLS layer (where plaintext only fails the handshake).

The discard and the pause happen in one synchronous step, with no await between them, so no
byte can slip in between. What was discarded is logged once (``starttls_plaintext_discarded``
at warning level, as Postfix warns about "improper command pipelining after STARTTLS").

The clear-text login policy (``auth_without_tls``) has one meaning and one default everywhere:
``false`` (logins only under TLS), ``true``, or ``"loopback"`` (only from 127.0.0.0/8, ::1 and
unix sockets, Dovecot's rule). :class:`InBandTlsOptions` declares it with ``starttls`` so every
protocol's options inherit both (it lives beside ``HandlerOptions`` in ``core.handler``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from ..errors import StartupError
from .acl import is_loopback
from .counting import CountingTransport

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

    from structlog.typing import FilteringBoundLogger

    from .tls import TlsStore

__all__ = [
    "ClearTextLogin",
    "PlaintextBuffer",
    "clear_text_login_allowed",
    "upgrade",
    "upgrade_context",
]

#: ``auth_without_tls``: whether a login may be sent before TLS protects it.
ClearTextLogin = bool | Literal["loopback"]


def clear_text_login_allowed(policy: ClearTextLogin, peer: object) -> bool:
    """Whether ``policy`` lets ``peer`` log in on a connection that is not under TLS."""
    return policy is True or (policy == "loopback" and is_loopback(peer))


def upgrade_context(name: str | None, tls: TlsStore | None, protocol: str) -> ssl.SSLContext | None:
    """The server context of the ``starttls`` certificate ``name`` (None: no upgrade offered).

    Raises:
        StartupError: ``name`` is set but the config has no ``tls.certificates``
            (``aionet check`` reports it first; this is for handlers built in code).
    """
    if name is None:
        return None
    if tls is None:
        raise StartupError(f"{protocol}: options.starttls {name!r} needs tls.certificates")
    return tls.context(name)


class PlaintextBuffer(Protocol):
    """A place where received plaintext can wait: a protocol machine's input buffer."""

    def discard_input(self) -> int:
        """Drop every byte received and not yet processed; return how many."""


def _discard(buffer: PlaintextBuffer | asyncio.StreamReader) -> int:
    if isinstance(buffer, asyncio.StreamReader):
        pending: bytearray = buffer._buffer  # type: ignore[attr-defined]
        size = len(pending)
        pending.clear()
        return size
    return buffer.discard_input()


async def upgrade(
    transport: asyncio.BaseTransport | CountingTransport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    *,
    buffers: Iterable[PlaintextBuffer | asyncio.StreamReader] = (),
    timeout: float = 10.0,
    log: FilteringBoundLogger | None = None,
) -> asyncio.Transport:
    """Upgrade ``transport`` to TLS in place (server side), first discarding every plaintext
    byte in ``buffers``. The protocol object stays the same (the connection manager keeps
    tracking it), and the core closes and aborts the returned TLS transport from now on.

    Call it right after the "go ahead" reply has been flushed; decrypted data may reach
    ``protocol.data_received`` before this returns.

    A wrapped third-party protocol holds a ``CountingTransport`` (the core counts its output):
    the transport under it is what is upgraded, and the TLS transport comes back behind a new
    ``CountingTransport`` on the same record, so the plaintext written after the upgrade is
    counted as the plaintext before it was.

    Raises:
        ssl.SSLError, ConnectionError, TimeoutError: the handshake failed; end the session.
    """
    loop = asyncio.get_running_loop()
    counting = transport if isinstance(transport, CountingTransport) else None
    raw = transport.transport if isinstance(transport, CountingTransport) else transport
    record: Any = getattr(protocol, "_aionet_rec", None)
    # No await from here until loop.start_tls has paused reading: nothing can arrive unseen.
    discarded = sum(_discard(buffer) for buffer in buffers)
    if discarded and log is not None:
        log.warning("starttls_plaintext_discarded", bytes=discarded)
    if record is not None:  # no idle goodbye in plaintext into the handshake
        record.upgrading = True
    try:
        new = await loop.start_tls(
            raw,  # type: ignore[arg-type]
            protocol,
            context,
            server_side=True,
            ssl_handshake_timeout=timeout,
        )
    except BaseException as exc:
        _lost_in_handshake(raw, protocol, exc if isinstance(exc, Exception) else None)
        raise
    finally:
        if record is not None:
            record.upgrading = False
    if new is None or new.is_closing():  # asyncio: None; uvloop: a transport already dead
        _lost_in_handshake(raw, protocol, None)
        raise ConnectionError("connection closed during the TLS handshake")
    if record is not None:
        record.transport = new
    if counting is not None:
        return cast("asyncio.Transport", CountingTransport(new, counting._aionet_rec))
    return new


def _lost_in_handshake(
    raw: asyncio.BaseTransport, protocol: asyncio.BaseProtocol, exc: Exception | None
) -> None:
    """The connection went away during the handshake: make sure the protocol hears it.

    asyncio's (and uvloop's) TLS layer tells nobody but ``start_tls``'s caller when the
    connection is lost while the handshake is under way (the handshake timed out, the idle
    sweep closed it, the task was cancelled), and uvloop's even returns the dead TLS
    transport: the protocol's ``connection_lost`` is never called, so the connection manager
    would keep the connection in its live table, counted against the caps, for good. A
    tracked protocol still holding its record is told here; telling it twice is harmless
    (the tracking releases once).
    """
    if raw.is_closing() and getattr(protocol, "_aionet_rec", None) is not None:
        protocol.connection_lost(exc)
