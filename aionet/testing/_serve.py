from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..config.models import Config
from ..core.preflight import config_from_dict
from ..core.server import Server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path

__all__ = ["serve"]


@asynccontextmanager
async def serve(
    config: Mapping[str, Any] | Config, *, data_dir: str | Path | None = None
) -> AsyncIterator[Server]:
    """Run a Server for the duration of the block; ``server.address(name)`` gives bound ports.

    ``data_dir`` overrides ``server.data_dir`` of a dict config (tests pass ``tmp_path``).
    """
    if not isinstance(config, Config):
        data = dict(config)
        if data_dir is not None:
            data["server"] = {**data.get("server", {}), "data_dir": str(data_dir)}
        config = config_from_dict(data)
    server = Server(config)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()
