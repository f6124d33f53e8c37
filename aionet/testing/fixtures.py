"""pytest plugin (entry point ``pytest11: aionet``): the ``aionet_server`` fixture.

    async def test_greet(aionet_server):
        server = await aionet_server({"listeners": [
            {"name": "greet", "protocol": "mypkg:Greet", "bind": "127.0.0.1:0"}]})
        host, port = server.address("greet")

Every server started through the fixture runs on the test's event loop (pytest-asyncio) with
``data_dir`` in the test's ``tmp_path``, and is shut down (drained) when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest_asyncio

from ._serve import serve

if TYPE_CHECKING:
    from pathlib import Path

    from ..core.server import Server

__all__ = ["aionet_server"]

StartServer = Callable[[Mapping[str, Any]], Awaitable["Server"]]


@pytest_asyncio.fixture
async def aionet_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """A factory: ``await aionet_server(config_dict)`` → a started ``Server``."""
    async with AsyncExitStack() as stack:

        async def start(config: Mapping[str, Any]) -> Server:
            return await stack.enter_async_context(serve(config, data_dir=tmp_path / "data"))

        yield start
