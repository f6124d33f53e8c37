"""BIND-style response rate limiting per client prefix."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


# -- response rate limiting ------------------------------------------------------------------


class Verdict(IntEnum):
    """What to do with one response under RRL."""

    SEND = 0
    DROP = 1
    SLIP = 2  # send a truncated, empty reply instead: a real client retries over TCP


@dataclass(slots=True)
class _Bucket:
    balance: float
    stamp: float
    limited: int = 0


@dataclass(slots=True)
class RateLimiter:
    """BIND-style response rate limiting per client prefix.

    Each prefix earns ``rate`` responses per second, up to a balance of ``rate``; every response
    spends one. Below zero the prefix is limited: its responses are dropped, except every
    ``slip``-th, which is sent truncated (0: never). The debt may grow to ``rate * window``, so a
    flood has to stop for up to ``window`` seconds before answers resume.

    Memory is bounded by ``max_clients``: when the table is full, prefixes whose balance has
    recovered (indistinguishable from new ones) are forgotten, then the oldest, down to 90%.
    """

    rate: float
    window: float = 15.0
    slip: int = 2
    max_clients: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _table: dict[object, _Bucket] = field(default_factory=dict)

    def check(self, prefix: object) -> Verdict:
        """Account one response to ``prefix`` and say whether to send it."""
        now = self.clock()
        bucket = self._table.get(prefix)
        if bucket is None:
            if len(self._table) >= self.max_clients:
                self._evict(now)
            bucket = self._table[prefix] = _Bucket(self.rate, now)
        else:
            bucket.balance = min(self.rate, bucket.balance + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        bucket.balance -= 1
        if bucket.balance >= 0:
            return Verdict.SEND
        bucket.balance = max(bucket.balance, -self.rate * self.window)
        bucket.limited += 1
        if self.slip and bucket.limited % self.slip == 0:
            return Verdict.SLIP
        return Verdict.DROP

    def __len__(self) -> int:
        return len(self._table)

    def _evict(self, now: float) -> None:
        rate = self.rate
        table = self._table
        recovered = [k for k, b in table.items() if b.balance + (now - b.stamp) * rate >= rate]
        for key in recovered:
            del table[key]
        target = self.max_clients * 9 // 10
        while len(table) > target:
            del table[next(iter(table))]


def client_prefix(host: str) -> str | bytes:
    """The RRL account of a client address: its /24 (IPv4) or /56 (IPv6) network.

    IPv4-mapped IPv6 addresses count as IPv4; a scope (``%eth0``) is ignored.
    """
    if ":" not in host:
        return host.rpartition(".")[0]
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped).rpartition(".")[0]
    return address.packed[:7]
