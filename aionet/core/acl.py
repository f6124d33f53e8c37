"""Network access control per listener: allow/deny CIDR lists and a per-IP connection rate.

Checked at accept, before a single byte is read (after the PROXY header when the listener uses
the PROXY protocol, so the real client address is what is checked). Deny wins over allow; a
non-empty allow list admits only its networks; IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``)
match as IPv4. The rate limit is a token bucket per IP: ``rate`` new connections per second,
``burst`` at once; idle buckets are dropped and the table is capped, so a flood of source
addresses cannot grow memory without bound.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AccessConfig",
    "AccessControl",
    "ClientGuard",
    "client_address",
    "is_loopback",
    "parse_networks",
    "trusted",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_BUCKETS = 65536


def parse_networks(entries: tuple[str, ...] | list[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) → networks.

    Raises:
        ValueError: an entry is not an address or network; the message names it.
    """
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(out)


class AccessConfig(BaseModel):
    """A listener's ``access:`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: New connections per second per client IP (None: no rate limit).
    rate: float | None = Field(default=None, gt=0)
    #: How many new connections an IP may open at once before the rate applies.
    burst: int | None = Field(default=None, ge=1)

    @field_validator("allow", "deny")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)
        return value

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny or self.rate)


@lru_cache(maxsize=4096)
def client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a client is known by: its scope (``%eth0``) dropped, an IPv4-mapped IPv6
    address as its IPv4 address; None when ``ip`` is not an address. The one place every
    per-client table (access control, passive caps, login policy) normalises addresses."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def trusted(ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``ip`` lies in one of ``networks`` (for PROXY protocol ``trusted_proxies``)."""
    addr = client_address(ip)
    return addr is not None and any(addr in net for net in networks)


class AccessControl:
    """``check(ip)`` → a refusal reason (``denied``, ``not_allowed``, ``rate_limited``) or None."""

    def __init__(self, config: AccessConfig, clock: Callable[[], float] = time.monotonic):
        self.allow = parse_networks(config.allow)
        self.deny = parse_networks(config.deny)
        self.rate = config.rate
        self.burst = float(config.burst if config.burst is not None else max(1, config.rate or 1))
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, ip: str) -> str | None:
        addr = client_address(ip)
        if addr is not None:
            if self.deny and any(addr in net for net in self.deny):
                return "denied"
            if self.allow and not any(addr in net for net in self.allow):
                return "not_allowed"
        if self.rate is not None and not self._take(str(addr) if addr else ip):
            return "rate_limited"
        return None

    def _take(self, key: str) -> bool:
        now = self.clock()
        rate, burst = self.rate or 0.0, self.burst
        tokens, last = self.buckets.pop(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self.buckets[key] = (tokens, now)  # most recently used last
        self._trim(now)
        return allowed

    def _trim(self, now: float) -> None:
        """Drop buckets that have refilled (they hold no state) and cap the table."""
        full_after = self.burst / (self.rate or 1.0)
        while self.buckets:
            key, (_, last) = next(iter(self.buckets.items()))
            if now - last >= full_after or len(self.buckets) > MAX_BUCKETS:
                del self.buckets[key]
            else:
                break


class ClientGuard:
    """A listener's ``access:`` rules and per-IP cap, for the clients a handler learns inside
    its protocol: the client a trusted reverse proxy forwards (HTTP ``proxy_headers``).

    At accept such a proxy's connections pass the listener's access rules and per-IP caps (one
    proxy carries many clients, as nginx's ``realip`` sees it); the handler asks ``enter(ip)``
    for each request instead and calls ``leave(ip)`` when it is answered. The allow/deny lists
    are the listener's; ``rate`` counts requests per second per client (a proxy's connections
    are shared, so a client's connections cannot be told apart, as with nginx's
    ``limit_req``); ``max_per_ip`` caps a client's requests in flight at once (``limit_conn``).
    """

    __slots__ = ("access", "in_flight", "max_per_ip")

    def __init__(
        self,
        access: AccessConfig,
        max_per_ip: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access = AccessControl(access, clock) if access.active else None
        self.max_per_ip = max_per_ip
        self.in_flight: dict[str, int] = {}

    def enter(self, ip: str) -> str | None:
        """Admit a request from ``ip`` (counted until ``leave``), or the reason it is refused:
        ``denied``, ``not_allowed``, ``rate_limited`` or ``max_connections_per_ip``."""
        key = str(client_address(ip) or ip)
        if self.access is not None:
            reason = self.access.check(key)
            if reason is not None:
                return reason
        count = self.in_flight.get(key, 0)
        if self.max_per_ip is not None and count >= self.max_per_ip:
            return "max_connections_per_ip"
        self.in_flight[key] = count + 1
        return None

    def leave(self, ip: str) -> None:
        key = str(client_address(ip) or ip)
        count = self.in_flight.get(key, 0)
        if count <= 1:
            self.in_flight.pop(key, None)
        else:
            self.in_flight[key] = count - 1


def is_loopback(peer: object) -> bool:
    """Whether a peer address is this host: 127.0.0.0/8, ::1 (also IPv4-mapped), or a unix
    socket (a non-tuple peer). Dovecot and Postfix treat these as secure for plaintext logins."""
    if not isinstance(peer, tuple):
        return True
    ip = client_address(str(peer[0]))
    return ip is not None and ip.is_loopback
