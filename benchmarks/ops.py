"""Operating costs: metrics on vs off, and ``--workers 1`` vs ``--workers 2``, in one run.

    python benchmarks/ops.py [--duration 8] [--rounds 5] [--json out.json]

1. **Metrics cost.** The same aionet config with and without an ``admin`` listener (with it,
   the HTTP handler counts status classes and a latency histogram per request; echo keeps no
   per-message metric at all — its counters are read at scrape time). Both servers run side by
   side pinned to core 0; the load (wrk ``-c 64`` on the raw ASGI hello app; the C echo client,
   64 connections of 64-byte ping-pong) is pinned to core 1; runs rotate. Target: ≤ 3 % cost.
2. **Workers.** aionet with ``--workers 1`` and ``--workers 2``, unpinned, the load generator
   unpinned too: on this 2-core machine server and load share both cores, so the second worker
   competes with the load generator — the numbers show what a second worker buys here, not on
   a machine with cores to spare.

Needs ``wrk`` (Debian package) and gcc (for the echo client).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    PY,
    c_binary,
    free_port,
    machine_facts,
    median,
    pinned,
    run_wrk,
    wait_listening,
)

APPS = HERE / "apps"
TOKEN_SHA = "0" * 64


def config(tmp: Path, protocol: str, port: int, admin: bool) -> str:
    options = '{app: "hello:app", access_log: false}' if protocol == "http" else "{}"
    text = f"""
server:
  data_dir: {tmp / "var"}
  limits: {{max_connections: 50000, max_connections_per_ip: 50000, idle_timeout: 5m}}
logging: {{format: json, level: warning}}
listeners:
  - {{name: bench, protocol: {protocol}, bind: "127.0.0.1:{port}", backlog: 4096,
      options: {options}}}
"""
    if admin:
        text += (
            f"  - {{name: admin, protocol: admin, bind: '127.0.0.1:{free_port()}',"
            f" options: {{tokens: [{{name: b, role: viewer, sha256: '{TOKEN_SHA}'}}]}}}}\n"
        )
    return text


@contextlib.contextmanager
def server(protocol: str, admin: bool, workers: int, core: int | None) -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        path = tmp / "aionet.yaml"
        path.write_text(config(tmp, protocol, port, admin))
        argv = [PY, "-m", "aionet", "run", "-c", str(path), "--workers", str(workers)]
        env = {**os.environ, "PYTHONPATH": str(APPS)}
        proc = subprocess.Popen(pinned(core, argv), cwd=APPS, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_listening(port, proc)
            time.sleep(1.0 if workers > 1 else 0.2)  # every worker bound
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def echo_load(port: int, duration: float, core: int | None) -> float:
    argv = [str(c_binary("echo_client")), "127.0.0.1", str(port), "64", str(duration), "64", "1"]
    out = subprocess.run(pinned(core, argv), capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)["msgs_per_s"])


def http_load(port: int, duration: float, core: int | None) -> float:
    return run_wrk(port, "/", 64, duration, core)["rps"]


LOADS = {"http": http_load, "echo": echo_load}


def compare(
    variants: dict[str, tuple[str, bool, int, int | None]],
    client_core: int | None,
    args: argparse.Namespace,
) -> dict[str, list[float]]:
    """Every variant runs for the whole measurement; the load rotates between them."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    with contextlib.ExitStack() as stack:
        ports = {
            name: stack.enter_context(server(protocol, admin, workers, core))
            for name, (protocol, admin, workers, core) in variants.items()
        }
        names = list(variants)
        for name in names:  # warm-up
            LOADS[variants[name][0]](ports[name], 2.0, client_core)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rate = LOADS[variants[name][0]](ports[name], args.duration, client_core)
                results[name].append(rate)
                print(f"round {r + 1} {name:22s} {rate:10.0f}/s", flush=True)
    return results


def table(results: dict[str, list[float]], base: str, title: str) -> str:
    rows = [f"{title}", "", "| variant | rate/s (median) | rounds (sorted) | vs " + base + " |",
            "|---|---:|---|---:|"]  # fmt: skip
    base_rate = median(results[base])
    for name, rates in results.items():
        spread = " · ".join(f"{x:,.0f}" for x in sorted(rates))
        rows.append(f"| {name} | {median(rates):,.0f} | {spread} | "
                    f"{median(rates) / base_rate:.3f}x |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip", choices=["metrics", "workers"], action="append", default=[])
    args = parser.parse_args()
    facts = machine_facts()
    print("machine:", facts, flush=True)
    out: dict[str, Any] = {"facts": facts}
    tables = []
    if "metrics" not in args.skip:
        for protocol in ("echo", "http"):
            res = compare(
                {f"{protocol} metrics off": (protocol, False, 1, 0),
                 f"{protocol} metrics on": (protocol, True, 1, 0)},
                1, args,
            )  # fmt: skip
            out[f"metrics-{protocol}"] = res
            tables.append(table(res, f"{protocol} metrics off", f"Metrics cost, {protocol}:"))
    if "workers" not in args.skip:
        for protocol in ("echo", "http"):
            res = compare(
                {f"{protocol} --workers 1": (protocol, False, 1, None),
                 f"{protocol} --workers 2": (protocol, False, 2, None)},
                None, args,
            )  # fmt: skip
            out[f"workers-{protocol}"] = res
            tables.append(table(res, f"{protocol} --workers 1", f"Workers, {protocol}:"))
    print()
    print("\n\n".join(tables))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
