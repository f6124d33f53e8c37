"""UDP echo throughput: a bare uvloop ``DatagramProtocol`` vs aionet's ``udp-echo``, one run.

    python benchmarks/udp.py [--duration 5] [--rounds 5] [--socks 64] [--baseline REV]

64-byte ping-pong over N connected UDP sockets from the C epoll client
(benchmarks/echo_client.c in its ``udp`` mode; a datagram unanswered for 200 ms counts as lost
and is resent), server pinned to core 0 and client to core 1, rounds interleaved across
servers; medians. Also shown: the server's CPU share during the run and its CPU time per
datagram (share ÷ rate), which a noisy machine disturbs less than the rate itself.
Target (issue 19): aionet >= 0.95 x the bare protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    PY,
    add_base,
    add_baseline_option,
    c_binary,
    cpu_seconds,
    machine_facts,
    median,
    pinned,
    spawned,
    wait_datagram,
)

TARGET = 0.95


def _aionet(port: int, tmp: Path) -> list[str]:
    config = tmp / f"aionet-{port}.yaml"
    config.write_text(
        f"""
server: {{data_dir: {tmp / "var"}}}
logging: {{format: json, level: warning}}
listeners:
  - {{name: bench, protocol: udp-echo, bind: "127.0.0.1:{port}"}}
"""
    )
    return [PY, "-m", "aionet", "run", "-c", str(config)]


RAW = HERE / "servers" / "raw_uvloop_udp_echo.py"
SERVERS: dict[str, Any] = {
    "raw-uvloop": lambda port, tmp: [PY, str(RAW), str(port)],
    "aionet": _aionet,
}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(kind: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        with spawned(SERVERS[kind](port, Path(tmp)), core=0, env=env) as proc:
            wait_datagram(port, proc, b"ping", b"ping".__eq__)
            yield proc


def one_run(kind: str, socks: int, duration: float, size: int) -> dict[str, Any]:
    port = free_udp_port()
    with running(kind, port) as proc:
        argv = [str(c_binary("echo_client")), "127.0.0.1", str(port), str(socks), str(duration)]
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        out = subprocess.run(
            pinned(1, [*argv, str(size), "1", "udp"]), capture_output=True, text=True, check=True
        )
        cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    result: dict[str, Any] = json.loads(out.stdout)
    result.update(kind=kind, server_cpu=cpu)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--socks", type=int, nargs="+", default=[64])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", type=Path)
    add_baseline_option(parser)
    args = parser.parse_args()
    kinds = list(SERVERS)
    if args.baseline:
        kinds.append(add_base(SERVERS, "aionet", args.baseline))
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for socks in args.socks:
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for kind in order:
                run = one_run(kind, socks, args.duration, args.size)
                runs.append(run)
                print(
                    f"round {r + 1} socks {socks:4d} {kind:12s} {run['msgs_per_s']:10.0f} msg/s"
                    f"  p99 {run['p99_us']:6.0f} us  server cpu {run['server_cpu']:5.0%}"
                    f"  {run['server_cpu'] / run['msgs_per_s'] * 1e6:5.2f} us/dgram"
                    f"  lost {run['lost']}  errors {run['errors']}",
                    flush=True,
                )
    print()
    print(f"{'socks':>5} {'server':12} {'msgs/s (median)':>16} {'p99 us':>8} {'cpu':>5} "
          f"{'us/dgram':>8} {'vs raw':>7}  rounds (sorted)")  # fmt: skip
    summary: dict[str, Any] = {}
    for socks in args.socks:
        mine = {k: [x for x in runs if x["kind"] == k and x["conns"] == socks]
                for k in kinds}  # fmt: skip
        rates = {k: median([x["msgs_per_s"] for x in mine[k]]) for k in kinds}
        for k in kinds:
            p99 = median([x["p99_us"] for x in mine[k]])
            cpu = median([x["server_cpu"] for x in mine[k]])
            per = median([x["server_cpu"] / x["msgs_per_s"] * 1e6 for x in mine[k]])
            ratio = rates[k] / rates["raw-uvloop"]
            spread = " · ".join(f"{x:,.0f}" for x in sorted(x["msgs_per_s"] for x in mine[k]))
            row = f"{socks:5d} {k:12} {rates[k]:16,.0f} {p99:8.0f} {cpu:5.0%} {per:8.2f}"
            row += f" {ratio:7.3f}"
            print(f"{row}  {spread}")
            summary[f"{k}@{socks}"] = {"msgs_per_s": rates[k], "p99_us": p99, "cpu": cpu}
            summary[f"{k}@{socks}"]["cpu_us_per_datagram"] = per
            summary[f"{k}@{socks}"]["ratio"] = ratio
        ratio = summary[f"aionet@{socks}"]["ratio"]
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(f"aionet / raw uvloop at {socks} sockets: {ratio:.3f} ({verdict} {TARGET})")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine_facts(), "runs": runs, "summary": summary}, indent=2)
        )


if __name__ == "__main__":
    main()
