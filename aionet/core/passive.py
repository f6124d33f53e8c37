"""Passive data sockets: the one place outside the listeners where aionet binds a socket.

FTP's passive mode (PASV/EPSV) makes the server listen on a second port per transfer. The FTP
handler asks a ``PassivePorts`` pool for one instead of binding it itself, so these sockets are

* **bounded** — at most one per port of the configured range (``"30000-30100"``), or at most
  ``limit`` ephemeral ports when no range is configured; an exhausted pool raises
  ``PassiveExhausted`` (FTP answers ``425``) and recovers as soon as a socket is closed;
* **shared fairly** — one client address holds at most ``per_ip`` of them, one user at most
  ``per_user`` (by default a quarter of the pool each, at least 2), so one party cannot starve
  the others: the party at its cap gets ``PassiveCapped`` (also ``425``), the others still get
  ports. A socket stops counting against its owners as soon as ``close()`` is called;
* **peer-checked** — ``PassiveSocket.accept()`` only takes a connection from the control
  connection's address; any other peer is closed at once (no data-port hijacking);
* **timed** — ``accept()`` gives up after ``timeout`` seconds;
* **counted and closed with the session** — the pool knows every open socket (``stats()``),
  and ``close()`` (idempotent) returns the port; the FTP session closes its socket when it ends.

Resource handling: every ``PassiveSocket`` must be closed (``close()``, or ``async with``); the
pool's ``close_all()`` closes whatever is left when the handler stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .acl import client_address
from .connections import decrement

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "PassiveCapped",
    "PassiveExhausted",
    "PassivePorts",
    "PassiveSocket",
    "fair_share",
    "ip_key",
    "parse_port_range",
    "same_ip",
    "worker_share",
]


class PassiveExhausted(Exception):
    """No passive port is free (every port of the range is in use, or ``limit`` is reached)."""

    #: True for ``PassiveCapped``: the pool has ports, but not for this client.
    capped = False


class PassiveCapped(PassiveExhausted):
    """The client's address or user already holds its share of the pool (``per_ip``,
    ``per_user``); other clients may still get ports."""

    capped = True


def fair_share(limit: int) -> int:
    """The default per-address and per-user cap for a pool of ``limit`` sockets: a quarter of
    it (so it takes four parties to starve the pool), at least 2 (a client listing while it
    transfers), never more than the pool."""
    return min(limit, max(2, limit // 4))


def parse_port_range(text: str) -> tuple[int, int]:
    """``"30000-30100"`` → ``(30000, 30100)``, both ends included; ``"0"`` → ephemeral.

    Raises:
        ValueError: not ``N`` or ``LOW-HIGH`` with 1 <= LOW <= HIGH <= 65535.
    """
    low_text, sep, high_text = text.strip().partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if sep else low
    except ValueError:
        raise ValueError(f"{text!r} is not a port range like 30000-30100") from None
    if (low, high) == (0, 0):
        return 0, 0
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{text!r}: ports must satisfy 1 <= low <= high <= 65535")
    return low, high


@dataclass
class _Stats:
    opened: int = 0
    accepted: int = 0
    rejected_peers: int = 0
    timeouts: int = 0
    exhausted: int = 0
    capped: int = 0


def worker_share(ports: tuple[int, int], index: int, count: int) -> tuple[int, int]:
    """Worker ``index``'s slice of the range ``ports`` among ``count`` workers: slices do not
    overlap and together cover the range (the last takes the remainder). Ephemeral (0, 0)
    stays ephemeral: the kernel never hands one port to two processes.

    Raises:
        ValueError: the range has fewer ports than there are workers.
    """
    low, high = ports
    if low == 0 or count <= 1:
        return ports
    size = high - low + 1
    if size < count:
        raise ValueError(f"passive_ports {low}-{high} has fewer ports than the {count} workers")
    share = size // count
    start = low + index * share
    end = high if index == count - 1 else start + share - 1
    return start, end


class PassivePorts:
    """A bounded pool of passive listening sockets (one per listener that needs them).

    Args:
        ports: ``(low, high)`` inclusive, or ``(0, 0)`` for ephemeral ports.
        limit: the most sockets open at once with ephemeral ports (a range bounds itself).
        per_ip: the most one client address holds at once (None: ``fair_share(limit)``).
        per_user: the most one user holds at once (None: ``fair_share(limit)``).
    """

    def __init__(
        self,
        ports: tuple[int, int] = (0, 0),
        *,
        limit: int = 1024,
        per_ip: int | None = None,
        per_user: int | None = None,
    ) -> None:
        self.low, self.high = ports
        self.limit = limit if self.low == 0 else self.high - self.low + 1
        share = fair_share(self.limit)
        self.per_ip = min(self.limit, share if per_ip is None else per_ip)
        self.per_user = min(self.limit, share if per_user is None else per_user)
        self._next = self.low
        self._open: set[PassiveSocket] = set()
        self._by_ip: dict[str, int] = {}
        self._by_user: dict[str, int] = {}
        self._stats = _Stats()

    def __len__(self) -> int:
        return len(self._open)

    def stats(self) -> dict[str, int]:
        return {"open": len(self._open), "limit": self.limit, **self._stats.__dict__}

    def open(
        self, host: str, peer_ip: str, *, timeout: float, user: str | None = None
    ) -> PassiveSocket:
        """Listen on ``host`` (the control connection's local address) for ``peer_ip`` only,
        counted against ``peer_ip`` and ``user`` (None: not counted per user).

        Raises:
            PassiveCapped: ``peer_ip`` or ``user`` already holds its share.
            PassiveExhausted: no port is free.
        """
        if len(self._open) >= self.limit:
            self._stats.exhausted += 1
            raise PassiveExhausted("no free passive port")
        ip = ip_key(peer_ip)
        if self._by_ip.get(ip, 0) >= self.per_ip or (
            user is not None and self._by_user.get(user, 0) >= self.per_user
        ):
            self._stats.capped += 1
            raise PassiveCapped("this client already holds its share of passive ports")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self._bind(family, host)
        passive = PassiveSocket(self, sock, peer_ip, timeout)
        passive._owners = (ip, user)
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        if user is not None:
            self._by_user[user] = self._by_user.get(user, 0) + 1
        self._open.add(passive)
        self._stats.opened += 1
        return passive

    def _bind(self, family: int, host: str) -> socket.socket:
        if self.low == 0:
            return _listen(family, host, 0)
        span = self.high - self.low + 1
        for _ in range(span):  # round robin, so a just-closed port is reused last
            port = self._next
            self._next = self.low if port >= self.high else port + 1
            with contextlib.suppress(OSError):
                return _listen(family, host, port)
        self._stats.exhausted += 1
        raise PassiveExhausted("no free passive port")

    def _release(self, passive: PassiveSocket) -> None:
        self._disown(passive)
        self._open.discard(passive)

    def _disown(self, passive: PassiveSocket) -> None:
        """Stop counting ``passive`` against its address and user (idempotent)."""
        owners, passive._owners = passive._owners, None
        if owners is not None:
            ip, user = owners
            decrement(self._by_ip, ip)
            if user is not None:
                decrement(self._by_user, user)

    def close_all(self) -> None:
        for passive in list(self._open):
            passive.close()


def ip_key(ip: str) -> str:
    """The address a client is counted by: an IPv4-mapped IPv6 address counts as its IPv4
    address, and a scope (``%eth0``) is dropped."""
    address = client_address(ip)
    return ip if address is None else str(address)


def _listen(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(8)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def same_ip(a: str, b: str) -> bool:
    """Whether two addresses are the same host (an IPv4-mapped IPv6 address equals its IPv4)."""
    ia, ib = client_address(a), client_address(b)
    return a == b if ia is None or ib is None else ia == ib


class PassiveSocket:
    """One passive listening socket, waiting for one data connection from one peer."""

    def __init__(self, pool: PassivePorts, sock: socket.socket, peer_ip: str, timeout: float):
        self._pool = pool
        self._sock: socket.socket | None = sock
        self.peer_ip = peer_ip
        self.timeout = timeout
        self._task: asyncio.Task[Any] | None = None
        self._owners: tuple[str, str | None] | None = None  # (address, user) the pool counts
        self.address: tuple[Any, ...] = sock.getsockname()

    @property
    def port(self) -> int:
        return int(self.address[1])

    @property
    def closed(self) -> bool:
        return self._sock is None

    async def accept(self) -> socket.socket:
        """The data connection from the control peer (non-blocking socket), then the listening
        socket is closed: one connection per PASV/EPSV.

        Raises:
            TimeoutError: nobody from the control peer connected within ``timeout``.
            ConnectionError: the socket was closed (the session ended, or ABOR).
        """
        loop = asyncio.get_running_loop()
        sock = self._sock
        if sock is None:
            raise ConnectionError("passive socket closed")
        accepted: asyncio.Future[socket.socket] = loop.create_future()
        stats = self._pool._stats

        def readable() -> None:  # accepts synchronously, so no accepted socket is ever lost
            while True:
                try:
                    conn, addr = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    if not accepted.done():
                        accepted.set_exception(exc)
                    return
                if accepted.done() or not same_ip(addr[0], self.peer_ip):
                    stats.rejected_peers += not accepted.done()
                    conn.close()
                    continue
                stats.accepted += 1
                conn.setblocking(False)
                accepted.set_result(conn)

        self._task = asyncio.current_task()
        loop.add_reader(sock.fileno(), readable)
        try:
            async with asyncio.timeout(self.timeout):
                return await accepted
        except TimeoutError:
            stats.timeouts += 1
            raise
        except BaseException:
            if accepted.done() and not accepted.cancelled() and accepted.exception() is None:
                accepted.result().close()  # accepted, but our caller is gone
            raise
        finally:
            loop.remove_reader(sock.fileno())
            self._task = None
            self._close()

    def close(self) -> None:
        """Stop listening and return the port to the pool (idempotent). A pending ``accept()``
        is cancelled and closes the socket itself once the loop has let go of it; the socket
        stops counting against its address and user at once (a client replacing its PASV at
        its cap is not refused)."""
        self._pool._disown(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            return
        self._close()

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            self._pool._release(self)

    async def __aenter__(self) -> PassiveSocket:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
