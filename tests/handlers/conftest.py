"""Build a handler the way the server does, without a server: its options validated by the
config loader, the handler class resolved by name through the registry, the shared services
(data directory, users, auth portal) handed in; started, and stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
import structlog

from aionet import Handler, Services, config_from_dict
from aionet.auth import Portal, UserStore
from aionet.core.registry import resolve_listener
from aionet.testing import MemoryTransport

BuildHandler = Callable[..., Awaitable[Any]]


@pytest_asyncio.fixture
async def build_handler(tmp_path: Path) -> AsyncIterator[BuildHandler]:
    """``await build_handler("smtp", {options}, users_file=path)`` → the started handler;
    its data directory is ``tmp_path / "data"``."""
    started: list[Handler] = []

    async def build(
        protocol: str, options: dict[str, Any] | None = None, *, users_file: Path | None = None
    ) -> Any:
        config = config_from_dict(
            {
                "auth": {"users_file": str(users_file)} if users_file is not None else {},
                "listeners": [
                    {
                        "name": protocol,
                        "protocol": protocol,
                        "bind": "127.0.0.1:0",
                        "options": options or {},
                    }
                ],
            }
        )
        [listener] = config.listeners
        cls, validated = resolve_listener(listener)
        users = portal = None
        if users_file is not None:
            users = UserStore.load(users_file, rehash_on_login=False)
            portal = Portal(users, config.auth.throttle)
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        services = Services(
            listener=listener.name,
            data_dir=data_dir,
            log=structlog.get_logger().bind(listener=listener.name),
            users=users,
            portal=portal,
        )
        handler = cls(validated, services)
        await handler.start()
        started.append(handler)
        return handler

    yield build
    for handler in reversed(started):
        await handler.stop()


async def serve_session(handler: Any, conn: Any) -> None:
    """``handler.handle(conn)`` on an in-memory connection, then the writer closed, as the
    core does when ``handle()`` returns."""
    try:
        await handler.handle(conn)
    finally:
        conn.writer.close()


def record_writes(transport: MemoryTransport) -> list[bytes]:
    """Every ``write`` made on ``transport`` from now on, one entry each (how many writes —
    segments — a reply took)."""
    writes: list[bytes] = []
    write = transport.write

    def record(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        write(data)

    transport.write = record  # type: ignore[method-assign]
    return writes
