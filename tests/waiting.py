"""Wait on the condition a test needs, never for a guessed time.

``wait_until`` polls a predicate on the running loop (an async test), ``poll_until`` blocks (a
sync test, a thread); both fail with an ``AssertionError`` naming ``what`` at the deadline.
For an ``aionet run`` subprocess, wait on its log instead: ``Daemon.wait_for(event)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["poll_until", "wait_until"]

#: Between two looks at the condition: short enough to add no visible latency to a test.
INTERVAL = 0.01


async def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, *, what: str = "the condition"
) -> None:
    """Return as soon as ``predicate()`` is true (checked first, then every ``INTERVAL``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(INTERVAL)


def poll_until(
    predicate: Callable[[], object], timeout: float = 10.0, *, what: str = "the condition"
) -> None:
    """``wait_until`` for code without a running loop: blocks this thread while it polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        time.sleep(INTERVAL)
