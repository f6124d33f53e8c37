"""The auth portal: one ``authenticate`` for every protocol, with failure throttling.

SMTP AUTH, POP3 USER/PASS, FTP login and the admin endpoint all call
``Portal.authenticate(credentials, protocol, peer_ip)``; none of them reads the users file.

Throttling rules (thresholds in ``ThrottleConfig``):

* Failures are counted per peer network (an IPv4 address, an IPv6 /64) and per user name,
  independently, over a sliding ``window``. A client without an address (a unix socket) is
  counted under the pair (``local``, name) instead of a network.
* A failed reply is delayed by the larger of the counts' back-off: nothing for the first
  ``free_failures``, then ``base_delay`` doubling up to ``max_delay`` (0, 0, 0.5, 1, 2, 4, ...).
* **Lock-outs apply only to what an attacker controls**: ``max_failures`` failures within the
  window lock that *network* (or that local pair) out for ``lockout``: an attempt from there
  then gets None after ``max_delay`` without its password being checked. Refused attempts do
  not extend the lock-out, and a lock-out starts the count afresh.
* The per-name count never locks anyone out — anyone who knows the name ``admin`` could
  otherwise keep the real admin out from everywhere. It only delays the *failed* replies for
  that name (at most ``max_delay``), slowing a distributed guess; a right password from a
  network that has not been failing is accepted at once.
* A success forgives exactly the failures of that (user, network) pair in both tables: a user's
  own typos from their own network are forgotten, while another name's failures from the same
  network (password spraying) and the name's failures from elsewhere (a distributed guess) stay.
* Attempts are serialized per network (not per name: a flood of guesses for one name from
  elsewhere must not queue the real user behind it), so parallel connections from one network
  cannot get more than ``max_failures`` guesses checked before its lock-out applies.
* Each table holds at most ``max_entries`` keys: expired ones are dropped first, then the least
  recently failed, so spraying random names or addresses cannot grow memory without bound.
* Operators see and clear lock-outs: ``Portal.lockouts()`` / ``Portal.clear()``, served by the
  admin endpoint (``GET /lockouts``, ``POST /lockouts/clear``) and ``aionet lockouts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import structlog

from ..config.models import ThrottleConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from .users import User

__all__ = [
    "AuthCounters",
    "Credentials",
    "Portal",
    "Throttle",
    "ThrottleConfig",
    "Verifier",
    "network_key",
]

Outcome = Literal["succeeded", "failed", "locked_out"]

_MAX_KEY_LEN = 256  # longer names cannot exist; truncating keeps table keys small
_MAX_LOGGED_NAME = 64

log = structlog.get_logger("aionet.auth")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password as a protocol received them. The password never shows in repr."""

    username: str
    password: str = field(repr=False)


class Verifier(Protocol):
    """What the portal checks passwords with (``UserStore`` is one)."""

    async def verify_async(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None, in the same time for unknown names."""
        ...


@dataclass
class AuthCounters:
    """Authentication outcomes, in total and per protocol (for the metrics endpoint)."""

    succeeded: int = 0
    failed: int = 0
    locked_out: int = 0
    by_protocol: dict[str, dict[Outcome, int]] = field(default_factory=dict)

    def record(self, protocol: str, outcome: Outcome) -> None:
        """Count one ``outcome`` of ``protocol``."""
        if outcome == "succeeded":
            self.succeeded += 1
        elif outcome == "failed":
            self.failed += 1
        else:
            self.locked_out += 1
        per = self.by_protocol.setdefault(protocol, {"succeeded": 0, "failed": 0, "locked_out": 0})
        per[outcome] += 1


@dataclass(slots=True)
class _Entry:
    """Recent failures of one key as ``(time, other key)``, oldest first, and its lock-out end."""

    failures: deque[tuple[float, str]]
    locked_until: float = 0.0

    def prune(self, horizon: float) -> None:
        while self.failures and self.failures[0][0] <= horizon:
            self.failures.popleft()

    def dead(self, now: float, window: float) -> bool:
        self.prune(now - window)
        return not self.failures and self.locked_until <= now


class _Table:
    """Failures per key (a network or a name), LRU-bounded by ``max_entries``."""

    def __init__(self, config: ThrottleConfig) -> None:
        self._config = config
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, now: float) -> list[tuple[str, int, float]]:
        """(key, failures in the window, seconds of lock-out left) of every live entry."""
        out = []
        for key in list(self._entries):
            entry = self._live(key, now)
            if entry is not None:
                out.append((key, len(entry.failures), max(0.0, entry.locked_until - now)))
        return out

    def names(self, key: str, now: float) -> set[str]:
        """The other keys ``key``'s failures in the window were paired with."""
        entry = self._live(key, now)
        return {other for _, other in entry.failures} if entry is not None else set()

    def clear(self, key: str | None = None) -> int:
        """Forget ``key`` (every key when None); returns how many entries went."""
        if key is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        return 1 if self._entries.pop(key, None) is not None else 0

    def lock_left(self, key: str, now: float) -> float:
        """Seconds left of ``key``'s lock-out (0 when it is not locked out)."""
        entry = self._live(key, now)
        return max(0.0, entry.locked_until - now) if entry is not None else 0.0

    def fail(self, key: str, other: str, now: float, *, lock: bool = True) -> tuple[int, bool]:
        """Record a failure; returns the failures in the window and whether a lock-out began
        (never without ``lock``: the count then only feeds the reply delay)."""
        entry = self._live(key, now) or self._insert(key, now)
        entry.failures.append((now, other))
        self._entries.move_to_end(key)
        count = len(entry.failures)
        if not lock or count < self._config.max_failures:
            return count, False
        entry.locked_until = now + self._config.lockout
        entry.failures.clear()
        return count, True

    def forgive(self, key: str, other: str, now: float) -> None:
        """Forget ``key``'s failures that were paired with ``other``."""
        entry = self._live(key, now)
        if entry is None:
            return
        entry.failures = deque((f for f in entry.failures if f[1] != other), self._maxlen)
        if entry.dead(now, self._config.window):
            del self._entries[key]

    @property
    def _maxlen(self) -> int:
        return self._config.max_failures

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.dead(now, self._config.window):
            del self._entries[key]
            return None
        return entry

    def _insert(self, key: str, now: float) -> _Entry:
        self._expire(now)
        while len(self._entries) >= self._config.max_entries:
            self._entries.popitem(last=False)  # the least recently failed
        entry = self._entries[key] = _Entry(deque(maxlen=self._maxlen))
        return entry

    def _expire(self, now: float) -> None:
        """Drop dead entries from the least recently failed end (stops at the first live one)."""
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if not entry.dead(now, self._config.window):
                return
            del self._entries[key]


@dataclass(frozen=True, slots=True)
class _Failure:
    failures: int
    delay: float
    locked: tuple[str, ...]  # the scopes ("ip", "user") whose lock-out this failure started


def scope_key(user: str, ip: str | None) -> str:
    """The key a lock-out applies to: the network, or (``local``, name) without an address."""
    return ip if ip is not None else f"local:{user}"


class Throttle:
    """The failure tables; time is passed in, never read.

    ``by_ip`` (networks, and (local, name) pairs for clients without an address) locks out;
    ``by_user`` (names, across networks) only delays failed replies.

    Args:
        config: the thresholds.
    """

    def __init__(self, config: ThrottleConfig) -> None:
        self.config = config
        self.by_ip = _Table(config)
        self.by_user = _Table(config)

    def lock_left(self, user: str, ip: str | None, now: float) -> float:
        """Seconds left of the lock-out applying to this network (or local pair); 0: none."""
        return self.by_ip.lock_left(scope_key(user, ip), now)

    def failure(self, user: str, ip: str | None, now: float) -> _Failure:
        """Record a failed attempt of ``user`` from ``ip``."""
        names = self.by_ip.names(scope_key(user, ip), now) | {user}
        name_count, _ = self.by_user.fail(user, ip or "", now, lock=False)
        count, locked = self.by_ip.fail(scope_key(user, ip), user, now)
        scope = ("ip" if ip is not None else "local_user",) if locked else ()
        if locked:  # the lock-out pays for these: their name-wide counts start afresh too
            for name in names:
                self.by_user.forgive(name, ip or "", now)
        return _Failure(count, self.config.delay(max(count, name_count)), scope)

    def success(self, user: str, ip: str | None, now: float) -> None:
        """Forgive the failures of this (user, network) pair in both tables."""
        self.by_user.forgive(user, ip or "", now)
        self.by_ip.forgive(scope_key(user, ip), user, now)

    def lockouts(self, now: float) -> list[dict[str, object]]:
        """Every live lock-out: its scope (``network``, or ``local_user`` for a unix-socket
        client's name), key and seconds left."""
        out: list[dict[str, object]] = []
        for key, _failures, left in self.by_ip.entries(now):
            if left > 0:
                local = key.startswith("local:")
                out.append(
                    {
                        "scope": "local_user" if local else "network",
                        "key": key.removeprefix("local:") if local else key,
                        "seconds_left": round(left, 1),
                    }
                )
        return out

    def failing(self, now: float) -> dict[str, dict[str, int]]:
        """Failures in the window per network and per name (what delays replies)."""
        return {
            "networks": {k: n for k, n, _ in self.by_ip.entries(now) if n},
            "names": {k: n for k, n, _ in self.by_user.entries(now) if n},
        }

    def clear(self, *, network: str | None = None, user: str | None = None) -> int:
        """Forget failures and lock-outs: of ``network`` (a peer address or its /64 key), of
        ``user`` (its name-wide count and its local pair), or of everything when neither is
        given. Returns how many entries went."""
        if network is None and user is None:
            return self.by_ip.clear() + self.by_user.clear()
        cleared = 0
        if network is not None:
            cleared += self.by_ip.clear(network_key(network))
        if user is not None:
            cleared += self.by_user.clear(user) + self.by_ip.clear(scope_key(user, None))
        return cleared


class _KeyedLocks:
    """One ``asyncio.Lock`` per key while anyone holds or waits for it; then it is dropped."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        """Acquire the locks of ``keys`` in the order given (callers use one global order)."""
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self._one(key))
            yield

    @contextlib.asynccontextmanager
    async def _one(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def network_key(peer_ip: str | None) -> str | None:
    """The throttling key of a peer: the IPv4 address, or the IPv6 /64 (None for no IP)."""
    if peer_ip is None:
        return None
    try:
        addr = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return peer_ip[:_MAX_KEY_LEN]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def _printable(name: str) -> str:
    """A user name safe to log: truncated, control characters replaced."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in name[:_MAX_LOGGED_NAME])


@dataclass(frozen=True, slots=True)
class _Attempt:
    protocol: str
    peer: str | None
    user_key: str
    ip_key: str | None

    def log_fields(self) -> dict[str, object]:
        return {"protocol": self.protocol, "peer": self.peer, "user": _printable(self.user_key)}


class Portal:
    """Authenticates credentials for every protocol, throttling failures.

    Args:
        verifier: checks passwords (a ``UserStore``).
        throttle: the thresholds (defaults: 5 failures in 5 minutes lock out for 15 minutes).
        clock: monotonic seconds (tests inject a fake one).
        sleep: awaited with the reply delay (tests inject one that only advances the clock).
        counters: where outcomes are counted (a new ``AuthCounters`` when None).
    """

    def __init__(
        self,
        verifier: Verifier,
        throttle: ThrottleConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        counters: AuthCounters | None = None,
    ) -> None:
        self.verifier = verifier
        self.config = throttle if throttle is not None else ThrottleConfig()
        self.throttle = Throttle(self.config)
        self.counters = counters if counters is not None else AuthCounters()
        self._clock = clock
        self._sleep = sleep
        self._locks = _KeyedLocks()

    def lockouts(self) -> dict[str, object]:
        """What an operator needs to see: live lock-outs and the failures being counted."""
        now = self._clock()
        return {"lockouts": self.throttle.lockouts(now), "failing": self.throttle.failing(now)}

    def clear(self, *, network: str | None = None, user: str | None = None) -> int:
        """Clear lock-outs and failures (see ``Throttle.clear``); logged."""
        cleared = self.throttle.clear(network=network, user=user)
        log.warning("auth_lockouts_cleared", network=network, user=user, entries=cleared)
        return cleared

    async def authenticate(
        self, credentials: Credentials, protocol: str, peer_ip: str | None
    ) -> User | None:
        """The user whose credentials these are, or None (after the throttling delay).

        Args:
            credentials: what the client sent.
            protocol: the asking protocol (``smtp``, ``pop3``, ``ftp``, ``admin``), for logs
                and counters.
            peer_ip: the client address (None for a Unix socket: only per-name throttling).
        """
        attempt = _Attempt(
            protocol, peer_ip, credentials.username[:_MAX_KEY_LEN], network_key(peer_ip)
        )
        async with self._locks.hold(scope_key(attempt.user_key, attempt.ip_key)):
            user, delay = await self._decide(credentials, attempt)
        if delay > 0:
            await self._sleep(delay)
        return user

    async def _decide(self, credentials: Credentials, a: _Attempt) -> tuple[User | None, float]:
        """Check the password unless locked out; returns the user (or None) and reply delay."""
        lock_left = self.throttle.lock_left(a.user_key, a.ip_key, self._clock())
        if lock_left > 0:
            self.counters.record(a.protocol, "locked_out")
            log.warning("auth_locked_out", **a.log_fields(), retry_after=round(lock_left, 3))
            return None, self.config.max_delay
        user = await self.verifier.verify_async(credentials.username, credentials.password)
        now = self._clock()
        if user is None:
            return None, self._failed(a, now)
        self.throttle.success(a.user_key, a.ip_key, now)
        self.counters.record(a.protocol, "succeeded")
        log.info("auth_succeeded", **a.log_fields())
        return user, 0.0

    def _failed(self, a: _Attempt, now: float) -> float:
        failure = self.throttle.failure(a.user_key, a.ip_key, now)
        self.counters.record(a.protocol, "failed")
        fields = a.log_fields()
        log.warning("auth_failed", **fields, failures=failure.failures, delay=failure.delay)
        for scope in failure.locked:
            log.warning("auth_lockout_started", **fields, scope=scope, duration=self.config.lockout)
        return failure.delay
