"""systemd readiness notification (``sd_notify``) without libsystemd.

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract-namespace name when it starts with ``@``). Without
that variable every call is a no-op, so the daemon behaves the same outside systemd.

The Server sends, in systemd ≥ 253 ``Type=notify-reload`` semantics (which ``Type=notify``
units understand too):

* ``READY=1`` (+ ``STATUS=``, ``MAINPID=``) once every listener is bound and serving;
* ``RELOADING=1`` + ``MONOTONIC_USEC=`` when a reload starts, ``READY=1`` when it is over
  (applied or refused: the daemon is serving either way);
* ``STOPPING=1`` when the shutdown (drain) starts.

A notification that cannot be delivered is dropped silently: readiness reporting must never
take the daemon down (systemd notices a missing ``READY=1`` by its start time-out).
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Notifier", "monotonic_usec"]


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, as systemd wants it in ``MONOTONIC_USEC=``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _address(name: str) -> str | bytes | None:
    """The socket address ``$NOTIFY_SOCKET`` names (None when unusable)."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()  # abstract namespace
    if name.startswith("/"):
        return name
    return None  # vsock:… and other forms are not supported: notify nothing


class Notifier:
    """Sends ``sd_notify`` messages to one socket; a no-op when ``address`` is None.

    Use ``Notifier.from_env()`` in the daemon; a Server built without one gets ``Notifier()``,
    which sends nothing (in-process tests never talk to a real systemd).
    """

    def __init__(self, address: str | bytes | None = None) -> None:
        self.address = address

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET`` (no-op when unset or empty)."""
        name = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        return cls(_address(name) if name else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (keyword names as given). True if the datagram was sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        """``READY=1``: serving (at start, and at the end of every reload)."""
        return self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def reloading(self, status: str = "reloading") -> bool:
        """``RELOADING=1`` with the ``MONOTONIC_USEC`` timestamp systemd ≥ 253 requires."""
        return self.notify(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS=status)

    def stopping(self, status: str = "draining") -> bool:
        """``STOPPING=1``: the shutdown (drain) has begun."""
        return self.notify(STOPPING=1, STATUS=status)
