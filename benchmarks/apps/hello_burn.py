"""``hello:app`` plus a fixed amount of Python work per request: ``BURN_US`` microseconds
(default 8) of a spin on ``time.perf_counter``.

The control for ``http_cpu.py``'s variants: how much the server's CPU per request grows when
each request does a known amount of extra work in the server process, so the growth a variant
shows (the access log) can be read against it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from hello import app as hello

BURN = float(os.environ.get("BURN_US", "8")) / 1e6


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        clock = time.perf_counter
        end = clock() + BURN
        while clock() < end:
            pass
    await hello(scope, receive, send)
