"""Memory per idle connection: RSS growth of each server with N idle connections open.

    python benchmarks/memory.py [--conns 10000] [--rounds 3]

Each server is started (pinned to core 0), warmed up with 200 connections opened and closed,
and its VmRSS read as the baseline; a separate client process (core 1) then opens N
connections, each sending one byte and reading it back (so every connection is accepted and
being served), and the server's RSS is read again once it stops moving. Reported:
(RSS - baseline) / N in KiB. Targets: aionet ``echo`` ≤ 2 KiB, an aionet ``StreamHandler``
≤ 6 KiB (raw uvloop Protocol ≈ 1.3 KiB and asyncio streams ≈ 4.8 KiB measured here).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import free_port, machine_facts, median, pinned, running, settle

KINDS = ["raw-uvloop", "streams", "aionet-echo", "aionet-stream"]
TARGETS = {"aionet-echo": 2.0, "aionet-stream": 6.0}

CLIENT = """
import asyncio, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n = int(sys.argv[1]), int(sys.argv[2])

async def main():
    conns = []
    gate = asyncio.Semaphore(200)

    async def one():
        async with gate:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"x")
            await r.readexactly(1)
            conns.append(w)

    await asyncio.gather(*(one() for _ in range(n)))
    print("OPEN", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in conns:
        w.close()

asyncio.run(main())
"""


def measure(kind: str, conns: int) -> float:
    port = free_port()
    with running(kind, port, core=0) as server:
        warm = subprocess.Popen(
            pinned(1, [sys.executable, "-c", CLIENT, str(port), "200"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert warm.stdout is not None
        assert warm.stdin is not None
        warm.stdout.readline()
        warm.stdin.write("\n")
        warm.stdin.close()
        warm.wait(30)
        time.sleep(0.5)
        base = settle(server.pid)
        client = subprocess.Popen(
            pinned(1, [sys.executable, "-c", CLIENT, str(port), str(conns)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdin is not None
        line = client.stdout.readline().split()
        if line != ["OPEN", str(conns)]:
            raise RuntimeError(f"client failed: {line}")
        loaded = settle(server.pid)
        client.stdin.write("\n")
        client.stdin.close()
        client.wait(60)
    return (loaded - base) / conns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conns", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    if hard < args.conns + 200:
        sys.exit(f"the fd limit ({hard}) is too low for {args.conns} connections")
    results: dict[str, list[float]] = {k: [] for k in KINDS}
    for r in range(args.rounds):
        for kind in KINDS:
            kib = measure(kind, args.conns)
            results[kind].append(kib)
            print(f"round {r + 1} {kind:14s} {kib:6.2f} KiB/conn", flush=True)
    print()
    print(f"{'server':14s} {'KiB/conn (median)':>18s} {'target':>7s}")
    summary: dict[str, Any] = {}
    for kind in KINDS:
        value = median(results[kind])
        target = TARGETS.get(kind)
        mark = (
            "" if target is None else (f"≤{target:.0f}" + (" ok" if value <= target else " MISS"))
        )
        print(f"{kind:14s} {value:18.2f} {mark:>7s}")
        summary[kind] = value
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine_facts(),
                    "conns": args.conns,
                    "runs": results,
                    "summary": summary,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
