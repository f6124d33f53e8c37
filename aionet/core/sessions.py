"""The live sessions of one line-service listener, and how they drain (SMTP, POP3, FTP; IMAP next).

Every line protocol keeps the same three things, once, here:

* **the sessions set**: a session is in it from its first byte to its close
  (:meth:`Sessions.track` for a stream handler's coroutine, :meth:`Sessions.add` and
  :meth:`Sessions.discard` for a protocol object's ``connection_made``/``connection_lost``);
* **drain**: :meth:`Sessions.drain` sets ``draining`` and tells every session at once. A session
  idle between commands says its protocol's goodbye (SMTP ``421``, POP3 ``-ERR``, FTP ``421``)
  and closes now; one in the middle of a command (a DATA, a RETR, a transfer) finishes it and
  says goodbye at its next command, as Postfix and vsftpd do on ``reload``/``stop``;
* **the refusal** of a connection over the listener's limits is the handler's ``refusal()``:
  the same goodbye's wording with the protocol's temporary-failure code.

What each session must offer is :class:`DrainingSession`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["DrainingSession", "Sessions"]


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
