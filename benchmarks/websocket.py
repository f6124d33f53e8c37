"""WebSocket echo: the same raw ASGI app (``benchmarks/apps/ws_echo.py``) on uvicorn
(``--ws websockets-sansio``), hypercorn and aionet, one run, ``aionet bench ws`` as the load.

    python benchmarks/websocket.py [--duration 5] [--rounds 3] [--conns 64 256]
                                   [--sizes 64 16384] [--idle 10000] [--servers ...]

Servers are pinned to core 0, the load generator (a separate ``aionet bench ws`` process) to
core 1; every server runs at once and the rounds rotate between them; tables show medians of
messages/s (one round trip = one message each way) and of p99. Target (issue 17): aionet >=
1.2x uvicorn's messages/s with a p99 no worse. Each round also samples, inside the measured
time, the CPU use of the server, of the load generator and of everything else on the machine
(% of one core): a load generator near 100% measures itself, not the server, and "other" much
above 0 means the numbers are noisy; the server's CPU time per message suffers less from that
noise than its rate. ``--idle N`` opens N idle WebSockets per server
and reports the growth of its PSS per connection.

Needs ``pip install 'uvicorn[standard]' hypercorn websockets``; a server that is not installed
is left out (said on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    PY,
    busy_seconds,
    choose_servers,
    cpu_seconds,
    free_port,
    machine_facts,
    median,
    pinned,
    pss_kib,
    spawned,
    wait_listening,
)

APPS = HERE / "apps"
SERVER_CORE, CLIENT_CORE = 0, 1
Server = Callable[[int, Path], list[str]]


def uvicorn(port: int, tmp: Path) -> list[str]:
    return [
        PY, "-m", "uvicorn", "ws_echo:app", "--app-dir", str(APPS), "--port", str(port),
        "--ws", "websockets-sansio", "--loop", "uvloop", "--http", "httptools",
        "--log-level", "warning", "--no-access-log", "--lifespan", "off",
    ]  # fmt: skip


def hypercorn(port: int, tmp: Path) -> list[str]:
    return [
        PY, "-m", "hypercorn", "ws_echo:app", "--bind", f"127.0.0.1:{port}",
        "--worker-class", "uvloop", "--log-level", "warning",
    ]  # fmt: skip


def aionet(port: int, tmp: Path) -> list[str]:
    config = tmp / "aionet.yaml"
    config.write_text(f"""
server:
  data_dir: {tmp / "var"}
  limits: {{max_connections: 50000, max_connections_per_ip: 50000, idle_timeout: 5m}}
logging: {{format: json, level: warning}}
listeners:
  - {{name: ws, protocol: http, bind: "127.0.0.1:{port}", backlog: 4096,
     options: {{app: "ws_echo:app", access_log: false}}}}
""")
    return [PY, "-m", "aionet", "run", "-c", str(config)]


SERVERS: dict[str, Server] = {"uvicorn": uvicorn, "hypercorn": hypercorn, "aionet": aionet}
NEEDS = {"uvicorn": "websockets", "hypercorn": "hypercorn"}


@contextlib.contextmanager
def serving(name: str) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmpname:
        tmp = Path(tmpname)
        with spawned(SERVERS[name](port, tmp), core=SERVER_CORE, env=env, cwd=APPS) as proc:
            wait_listening(port, proc, timeout=30)
            yield port, proc.pid


def bench(port: int, pid: int, size: int, conns: int, duration: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out, tempfile.TemporaryFile() as log:
        argv = [
            PY, "-m", "aionet", "bench", "ws", f"ws://127.0.0.1:{port}/", "--size", str(size),
            "-c", str(conns), "-d", f"{duration:g}", "--json", out.name, "-q",
        ]  # fmt: skip
        client = subprocess.Popen(pinned(CLIENT_CORE, argv), stdout=log, stderr=log)
        cpu = cpu_window(pid, client, duration)
        if client.wait():
            log.seek(0)
            raise RuntimeError(f"bench failed: {log.read()[-3000:].decode(errors='replace')}")
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    if result["errors"]:
        raise RuntimeError(f"bench errors: {result.get('error_details')}")
    result["cpu"] = cpu
    return result


#: How often the CPU use is sampled while the load generator runs (seconds).
CPU_EVERY = 0.1


def cpu_window(server: int, client: subprocess.Popen[bytes], duration: float) -> dict[str, float]:
    """CPU use (% of one core) of the server, the load generator and everything else over the
    busiest ``duration - 1`` s of the load generator's life (its start-up and connections left
    out, wherever they end), from samples taken until it exits."""
    samples: list[tuple[float, float, float, float]] = []
    while client.poll() is None:
        with contextlib.suppress(OSError):  # the load generator exits between two reads
            sample = cpu_seconds(server), cpu_seconds(client.pid), busy_seconds()
            samples.append((time.monotonic(), *sample))
        time.sleep(CPU_EVERY)
    span = max(0.5, duration - 1)
    best: tuple[float, ...] = ()
    for i, first in enumerate(samples):
        last = next((b for b in samples[i + 1 :] if b[0] - first[0] >= span), None)
        if last is None:
            break
        wall, server_s, client_s, busy_s = (b - a for a, b in zip(first, last, strict=True))
        if not best or server_s + client_s > best[1] + best[2]:
            best = (wall, server_s, client_s, busy_s)
    if not best:
        return {}
    wall, server_s, client_s, busy_s = best
    return {
        "server": 100 * server_s / wall,
        "client": 100 * client_s / wall,
        "other": 100 * max(0.0, busy_s - server_s - client_s) / wall,
    }


async def idle_round(port: int, pid: int, count: int) -> float:
    """PSS growth per idle WebSocket (handshake done, nothing sent) at ``count`` of them."""
    kib, _ = await idle_cost(port, pid, count, 0.0)
    return kib


async def idle_cost(port: int, pid: int, count: int, window: float) -> tuple[float, float]:
    """PSS growth per idle WebSocket (handshake done, nothing sent) at ``count`` of them, and
    the server's CPU milliseconds over ``window`` seconds of their silence (its timers: pings,
    timeouts)."""
    before = pss_kib(pid)
    writers = []
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:80]!r}")
        writers.append(writer)
    await asyncio.sleep(1.0)
    after = pss_kib(pid)
    cpu = cpu_seconds(pid)
    await asyncio.sleep(window)
    cpu = cpu_seconds(pid) - cpu
    for writer in writers:
        writer.close()
    return (after - before) / count, 1000 * cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    cases = [(size, conns) for size in args.sizes for conns in args.conns]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {f"{s}B x{c}": [] for s, c in cases} for name in SERVERS
    }
    idle: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        started = {name: stack.enter_context(serving(name)) for name in SERVERS}
        for r in range(args.rounds):
            order = list(SERVERS)[r % len(SERVERS) :] + list(SERVERS)[: r % len(SERVERS)]
            for size, conns in cases:
                for name in order:
                    result = bench(*started[name], size, conns, args.duration)
                    results[name][f"{size}B x{conns}"].append(result)
                    cpu = result["cpu"]
                    print(
                        f"round {r + 1} {size:6d} B x{conns:4d} {name:10} "
                        f"{result['throughput_rps']:10.0f} msg/s "
                        f"p99 {result['latency_ns']['p99'] / 1e6:7.2f} ms  CPU % server "
                        f"{cpu.get('server', -1):3.0f} client {cpu.get('client', -1):3.0f} "
                        f"other {cpu.get('other', -1):3.0f}",
                        file=sys.stderr,
                    )
        if args.idle:
            for name, (port, pid) in started.items():
                idle[name] = asyncio.run(idle_round(port, pid, args.idle))
                print(f"idle {name:10} {idle[name]:8.1f} KiB/connection", file=sys.stderr)
    return {"results": results, "idle_kib": idle}


def report(data: dict[str, Any], args: argparse.Namespace) -> None:
    results = data["results"]
    names = list(results)
    peer = "uvicorn" if "uvicorn" in names else names[0]
    print(f"\nWebSocket echo, {args.duration:g} s x {args.rounds} rounds")
    print(
        f"| case | server | msg/s (median) | p99 ms (median) | vs {peer} | rounds msg/s "
        "| CPU % server · client · other (median) | server CPU µs/msg (median) |"
    )
    print("|---|---|---:|---:|---:|---|---|---:|")
    for case in results[peer]:
        base = median([r["throughput_rps"] for r in results[peer][case]])
        for name in names:
            runs = results[name][case]
            rate = median([r["throughput_rps"] for r in runs])
            p99 = median([r["latency_ns"]["p99"] / 1e6 for r in runs])
            rounds = " · ".join(f"{r['throughput_rps']:,.0f}" for r in runs)
            cpu = " · ".join(
                f"{median([r['cpu'].get(k, -1) for r in runs]):.0f}"
                for k in ("server", "client", "other")
            )
            cost = median([1e4 * r["cpu"].get("server", 0) / r["throughput_rps"] for r in runs])
            print(
                f"| {case} | {name} | {rate:,.0f} | {p99:.2f} | {rate / base:.2f} | {rounds} "
                f"| {cpu} | {cost:.1f} |"
            )
    if data["idle_kib"]:
        print(f"idle WebSockets ({args.idle}): " + ", ".join(
            f"{k} {v:.1f} KiB/connection" for k, v in data["idle_kib"].items()
        ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 16384])
    parser.add_argument("--idle", type=int, default=10_000, help="idle WebSockets (0: skip)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", metavar="REV", help="also run aionet as of REV")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    args = parser.parse_args()
    choose_servers(SERVERS, args.servers, args.baseline, aionet)
    for name, module in NEEDS.items():
        if name in SERVERS and importlib.util.find_spec(module) is None:
            print(f"{name}: {module} is not installed, left out", file=sys.stderr)
            del SERVERS[name]
    data = run(args)
    data["machine"] = machine_facts()
    report(data, args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
