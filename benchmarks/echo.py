"""Echo throughput: raw uvloop Protocol vs asyncio streams vs aionet's ``echo``, one run.

    python benchmarks/echo.py [--duration 5] [--rounds 5] [--conns 64 256] [--json out.json]

64-byte ping-pong from a C epoll client (benchmarks/echo_client.c, compiled on first use),
server pinned to core 0 and client to core 1. Rounds are interleaved across servers so that
machine noise spreads evenly; the table shows medians. Target: aionet >= 0.90 x raw uvloop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from _harness import (
    SERVERS,
    add_base,
    add_baseline_option,
    c_binary,
    free_port,
    machine_facts,
    median,
    pinned,
    running,
)

KINDS = ["raw-uvloop", "streams", "aionet-echo"]


def one_run(kind: str, conns: int, duration: float, size: int) -> dict[str, Any]:
    port = free_port()
    with running(kind, port, core=0):
        argv = [
            str(c_binary("echo_client")),
            "127.0.0.1",
            str(port),
            str(conns),
            str(duration),
            str(size),
            "1",
        ]
        out = subprocess.run(pinned(1, argv), capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    result["kind"] = kind
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conns", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", type=Path)
    add_baseline_option(parser)
    args = parser.parse_args()
    kinds = list(KINDS)
    if args.baseline:
        kinds.append(add_base(SERVERS, "aionet-echo", args.baseline))
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for conns in args.conns:
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for kind in order:
                run = one_run(kind, conns, args.duration, args.size)
                runs.append(run)
                print(
                    f"round {r + 1} conns {conns:4d} {kind:12s} {run['msgs_per_s']:10.0f} msg/s"
                    f"  p99 {run['p99_us']:6.0f} us  errors {run['errors']}",
                    flush=True,
                )
    print()
    print(f"{'conns':>5} {'server':12} {'msgs/s (median)':>16} {'p99 us':>8} {'vs raw':>7}")
    summary: dict[str, Any] = {}
    for conns in args.conns:
        rates = {
            k: median([x["msgs_per_s"] for x in runs if x["kind"] == k and x["conns"] == conns])
            for k in kinds
        }
        p99s = {
            k: median([x["p99_us"] for x in runs if x["kind"] == k and x["conns"] == conns])
            for k in kinds
        }
        for k in kinds:
            ratio = rates[k] / rates["raw-uvloop"]
            print(f"{conns:5d} {k:12} {rates[k]:16.0f} {p99s[k]:8.0f} {ratio:7.3f}")
            summary[f"{k}@{conns}"] = {"msgs_per_s": rates[k], "p99_us": p99s[k], "ratio": ratio}
    print()
    for conns in args.conns:
        ratio = summary[f"aionet-echo@{conns}"]["ratio"]
        verdict = "meets" if ratio >= 0.90 else "MISSES"
        print(f"aionet / raw uvloop at {conns} conns: {ratio:.3f} ({verdict} the 0.90 target)")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine_facts(), "runs": runs, "summary": summary}, indent=2)
        )


if __name__ == "__main__":
    main()
