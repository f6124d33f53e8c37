"""10,000 connections opened and dropped at once leave the live table empty, no task behind."""

from __future__ import annotations

import asyncio
import resource
import sys
import textwrap
from pathlib import Path

import pytest

from aionet.testing import serve
from tests.conftest import EXAMPLES
from tests.waiting import wait_until

N = 10_000

CLIENT = textwrap.dedent("""
    import asyncio, resource, socket, struct, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    async def main():
        loop = asyncio.get_running_loop()
        socks = []
        gate = asyncio.Semaphore(500)

        async def one():
            async with gate:
                s = socket.socket()
                s.setblocking(False)
                await loop.sock_connect(s, (host, port))
                socks.append(s)

        await asyncio.gather(*(one() for _ in range(n)))
        print("OPEN", len(socks), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        for i, s in enumerate(socks):
            if i % 2:  # half vanish with a reset, half with a normal close
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        print("DROPPED", flush=True)

    asyncio.run(main())
""")


@pytest.mark.timeout(180)
async def test_ten_thousand_connections_opened_and_dropped(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < N + 500:
        pytest.skip(f"needs an fd limit over {N + 500}; this machine's hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.path.insert(0, str(EXAMPLES / "greet-plugin"))
    config = {
        "server": {"limits": {"max_connections": N + 100, "max_connections_per_ip": N + 100}},
        "listeners": [
            {
                "name": "greet",
                "protocol": "aionet_greet:Greet",
                "bind": "127.0.0.1:0",
                "backlog": 4096,
            }
        ],
    }
    try:
        async with serve(config, data_dir=tmp_path) as server:
            baseline = set(asyncio.all_tasks())
            host, port = server.address("greet")
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CLIENT,
                host,
                str(port),
                str(N),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert client.stdout is not None and client.stdin is not None
            line = await asyncio.wait_for(client.stdout.readline(), 120)
            assert line.split() == [b"OPEN", str(N).encode()]
            await wait_until(lambda: len(server.manager.live) == N, 60)
            handler_tasks = [rec.task for rec in server.manager.live.values()]
            assert all(t is not None and not t.done() for t in handler_tasks)
            client.stdin.write(b"go\n")
            await client.stdin.drain()
            assert (await client.stdout.readline()).strip() == b"DROPPED"
            await wait_until(lambda: not server.manager.live, 60)
            await wait_until(lambda: all(t.done() for t in handler_tasks), 10)  # type: ignore[union-attr]
            assert set(asyncio.all_tasks()) - baseline == set()
            assert server.manager.per_ip == {}
            stats = server.manager.slots["greet"].stats
            assert (stats.accepted, stats.closed, stats.handler_errors) == (N, N, 0)
            client.stdin.close()
            assert await client.wait() == 0
    finally:
        sys.path.remove(str(EXAMPLES / "greet-plugin"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
