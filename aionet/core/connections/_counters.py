"""Leaf pieces of the live table: the coarse clock, a listener's counters, two small helpers.

Nothing here knows the manager, so every part of ``aionet.core.connections`` (and
``core.passive``, which keeps its own per-address counts) can use them.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

__all__ = ["Clock", "ListenerStats", "decrement", "format_peer"]


class Clock:
    """A coarse monotonic clock: ``now`` is refreshed by the sweep, read for free on hot paths."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = time.monotonic()

    def tick(self) -> float:
        self.now = time.monotonic()
        return self.now


class ListenerStats:
    """Counters for one listener; the metrics endpoint exposes them."""

    __slots__ = (
        "accepted",
        "bytes_in",
        "bytes_out",
        "closed",
        "datagrams_in",
        "datagrams_out",
        "handler_errors",
        "idle_closed",
        "refused",
        "tls_failures",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.tls_failures = 0
        self.closed = 0
        self.idle_closed = 0
        self.handler_errors = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.refused: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        out["refused"] = dict(self.refused)
        return out


def format_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = peer[0]
        return f"[{host}]:{peer[1]}" if ":" in str(host) else f"{host}:{peer[1]}"
    return str(peer) if peer else "unix"


def decrement(counts: dict[str, int], key: str) -> None:
    """One less of ``key`` in a table of counts (the key goes at zero, so tables stay small)."""
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
