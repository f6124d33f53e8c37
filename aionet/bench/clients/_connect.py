"""Connecting without leaking a socket when the run is cancelled mid-connect.

A load run ends by cancelling the sessions still opening connections. Cancelling
``loop.create_connection`` between the TCP connect and the end of the TLS handshake can leave
a transport nobody closes (CPython 3.11 reports it as an unclosed transport). So the connect
runs in a task of its own that is shielded from the cancel; if the caller is cancelled, the
connection is closed as soon as that task completes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

T = TypeVar("T")

__all__ = ["shielded_connect"]


async def shielded_connect(opening: Awaitable[T]) -> T:
    """``await opening`` (a ``create_connection``/``open_connection`` call) cancel-safely."""
    task = asyncio.ensure_future(opening)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_close_result)
        raise


def _close_result(task: asyncio.Future[Any]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    result = task.result()
    first = result[0] if isinstance(result, tuple) else result
    # (transport, protocol) from create_connection; (reader, writer) from open_connection.
    # abort(), not close(): a TLS close needs the loop to run its shutdown, and the loop may
    # be about to stop; abort releases the socket at once.
    transport = result[1].transport if isinstance(first, asyncio.StreamReader) else first
    transport.abort()
