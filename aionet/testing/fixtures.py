"""pytest plugin (entry point ``pytest11: aionet``): the ``aionet_server`` fixture.

    async def test_greet(aionet_server):
        server = await aionet_server({"listeners": [
            {"name": "greet", "protocol": "mypkg:Greet", "bind": "127.0.0.1:0"}]})
        host, port = server.address("greet")

Every server started through the fixture runs on the test's event loop (pytest-asyncio) with
``data_dir`` in the test's ``tmp_path``, and is shut down (drained) when the test ends.

A coroutine test that asks for ``aionet_server`` is marked ``asyncio`` for you, so it runs in
pytest-asyncio's default (strict) mode without configuration. Without pytest-asyncio installed
(``pip install 'aionet[testing]'``), the plugin loads quietly and the fixture says what is
missing; nothing else of a project's test run changes.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest

from ._serve import serve

_pytest_asyncio: Any
try:
    import pytest_asyncio as _pytest_asyncio
except ImportError:  # pragma: no cover - exercised in a subprocess without it
    _pytest_asyncio = None

if TYPE_CHECKING:
    from pathlib import Path

    from ..core.server import Server

__all__ = ["aionet_server"]

StartServer = Callable[[Mapping[str, Any]], Awaitable["Server"]]


async def _aionet_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """A factory: ``await aionet_server(config_dict)`` → a started ``Server``."""
    async with AsyncExitStack() as stack:

        async def start(config: Mapping[str, Any]) -> Server:
            return await stack.enter_async_context(serve(config, data_dir=tmp_path / "data"))

        yield start


if _pytest_asyncio is not None:
    aionet_server = _pytest_asyncio.fixture(_aionet_server, name="aionet_server")
else:  # pragma: no cover - exercised in a subprocess without pytest-asyncio

    @pytest.fixture(name="aionet_server")
    def _missing(tmp_path: Path) -> None:
        pytest.fail("aionet_server needs pytest-asyncio: pip install 'aionet[testing]'")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> None:
    """Mark a coroutine test that uses ``aionet_server`` as an asyncio test (strict mode)."""
    if _pytest_asyncio is None or not inspect.iscoroutinefunction(obj):
        return
    try:
        uses_server = "aionet_server" in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    marks = getattr(obj, "pytestmark", [])
    if uses_server and not any(getattr(m, "name", None) == "asyncio" for m in marks):
        pytest.mark.asyncio(obj)
