"""The live sessions of one line-service listener, how they drain, and their idle goodbye
(SMTP, POP3, FTP, IMAP).

Every line protocol keeps the same four things, once, here:

* **the sessions set**: a session is in it from its first byte to its close
  (:meth:`Sessions.track` for a stream handler's coroutine, :meth:`Sessions.add` and
  :meth:`Sessions.discard` for a protocol object's ``connection_made``/``connection_lost``);
* **drain**: :meth:`Sessions.drain` sets ``draining`` and tells every session at once. A session
  idle between commands says its protocol's goodbye (SMTP ``421``, POP3 ``-ERR``, FTP ``421``)
  and closes now; one in the middle of a command (a DATA, a RETR, a transfer) finishes it and
  says goodbye at its next command, as Postfix and vsftpd do on ``reload``/``stop``;
* **the refusal** of a connection over the listener's limits is the handler's ``refusal()``:
  the same goodbye's wording with the protocol's temporary-failure code;
* **the idle goodbye**: a session closed for inactivity is told so before the close, as
  Postfix, Dovecot and vsftpd do, whichever timer closes it — the connection manager's idle
  sweep (``ConnectionRecord.close_idle``) or the protocol's own (aiosmtpd's ``timeout``,
  IMAP's IDLE autologout, through ``Connection.close_idle``). The words are the handler's
  ``idle_goodbye()`` (SMTP ``421 4.4.2``, POP3 ``-ERR``, FTP ``421``, IMAP ``* BYE``), read once
  per listener like ``refusal()``; :func:`say_goodbye` writes them, or nothing when they
  cannot be said at once.

What each session must offer is :class:`DrainingSession`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator

__all__ = ["DrainingSession", "Sessions", "say_goodbye"]


class DrainingSession(Protocol):
    """One session of a line service, as drain sees it."""

    def drain_now(self) -> None:
        """The server drains: if waiting for the next command, say goodbye and close now;
        otherwise do nothing (the session checks ``Sessions.draining`` at its next command)."""


S = TypeVar("S", bound=DrainingSession)


class Sessions(Generic[S]):
    """The live sessions of one listener and whether it drains."""

    __slots__ = ("draining", "live")

    def __init__(self) -> None:
        self.live: set[S] = set()
        self.draining = False

    def __len__(self) -> int:
        return len(self.live)

    def __iter__(self) -> Iterator[S]:
        return iter(self.live)

    def add(self, session: S) -> None:
        self.live.add(session)

    def discard(self, session: S) -> None:
        self.live.discard(session)

    @contextlib.contextmanager
    def track(self, session: S) -> Iterator[S]:
        """Hold ``session`` in the set while the block runs."""
        self.live.add(session)
        try:
            yield session
        finally:
            self.live.discard(session)

    def undrain(self) -> None:
        """The drain was called off: sessions still open carry on, new ones are served."""
        self.draining = False

    def drain(self) -> None:
        """Set ``draining`` and let every session that waits for a command go now."""
        self.draining = True
        for session in list(self.live):
            session.drain_now()


def say_goodbye(transport: asyncio.WriteTransport, goodbye: bytes | None) -> int:
    """Write ``goodbye`` (the handler's ``idle_goodbye()``) to a connection about to be closed
    for inactivity, if it can be said now; return how many bytes were written (0: none).

    It is never waited for: the write is not drained. It is not said when there is nothing to
    say, when the transport is closing already (a drain's goodbye, a QUIT, an earlier close),
    or when output is still waiting for the client to read it (a paused or merely full
    transport: the goodbye would queue behind what the client is not reading, and the close's
    grace would abort it with the rest); the caller closes as before, without a word. The
    caller also keeps it out of a TLS handshake (``ConnectionRecord.upgrading``): plaintext
    there would break the handshake, not end the session politely.
    """
    if not goodbye or transport.is_closing() or transport.get_write_buffer_size():
        return 0
    transport.write(goodbye)
    return len(goodbye)
