"""``aionet bench ws`` against a WebSocket server nobody here wrote: uvicorn with the
``websockets`` library, plain and TLS, every mode the target has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aionet.bench.runner import Plan
from tests.bench_helpers import bench
from tests.waiting import wait_until

from .conftest import Pki

pytest.importorskip("websockets", reason="uvicorn's WebSocket side needs websockets")
N = 30


@asynccontextmanager
async def uvicorn_ws(pki: Pki | None = None) -> AsyncIterator[int]:
    """uvicorn serving ``tests.apps.raw_apps:ws_echo`` on an ephemeral port, in this loop."""
    import uvicorn

    tls: dict[str, Any] = {}
    if pki is not None:
        tls = {"ssl_certfile": str(pki.cert), "ssl_keyfile": str(pki.key)}
    config = uvicorn.Config(
        "tests.apps.raw_apps:ws_echo",
        host="127.0.0.1",
        port=0,
        ws="websockets-sansio",
        log_level="warning",
        lifespan="off",
        **tls,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, what="uvicorn started")
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "64"],
        ["--size", "16384", "--mode", "text"],
        ["--size", "300000"],  # past a 16-bit length: the 64-bit length form both ways
        ["--size", "2000", "--compress"],
        ["--size", "64", "--messages", "3"],  # reconnects: the handshake is part of the load
        ["--size", "0"],
        ["--size", "64", "--subprotocol", "chat"],
    ],
    ids=["binary", "text-16k", "300k", "deflate", "reconnect", "empty", "subprotocol"],
)
async def test_bench_ws_round_trips_against_uvicorn(args: list[str]) -> None:
    async with uvicorn_ws() as port:
        result = await bench(["ws", f"ws://127.0.0.1:{port}/echo", *args], Plan(2, requests=N))
    assert result.errors == {}, result.error_details
    assert result.requests == N


async def test_bench_ws_over_tls(pki: Pki) -> None:
    async with uvicorn_ws(pki) as port:
        argv = ["ws", f"wss://localhost:{port}/", "--cafile", str(pki.ca_file)]
        result = await bench(argv, Plan(2, requests=N))
    assert result.errors == {}, result.error_details
    assert result.requests == N


async def test_bench_ws_counts_a_refused_handshake() -> None:
    async with uvicorn_ws() as port:
        result = await bench(["ws", f"ws://127.0.0.1:{port}/refuse"], Plan(1, requests=3))
    assert result.requests == 0
    assert set(result.errors) == {"handshake"}, result.error_details
    assert "403" in str(result.error_details)


def test_bench_ws_masks_as_rfc_6455_says() -> None:
    from aionet.bench.clients.ws import frame, mask

    key = b"\x37\xfa\x21\x3d"
    assert mask(b"Hello", key) == bytes.fromhex("7f9f4d5158")  # RFC 6455 §5.7's example
    assert mask(mask(b"x" * 1001, key), key) == b"x" * 1001
    head = frame(0x1, b"Hello")
    assert head[:2] == b"\x81\x85" and len(head) == 2 + 4 + 5
