"""Scale: one process holding many idle connections, and what that costs (issue 19 item 5).

    python benchmarks/scale.py [--conns 100000] [--storm 20000] [--sessions 10000]
                               [--rounds 3] [--only memory,sweep,storm,imap,ws]
                               [--baseline REV] [--json out.json]

Servers are pinned to core 0, clients to core 1; every section runs its servers interleaved in
rounds and reports medians. Sections:

* **memory** — RSS growth per connection with ``--conns`` connections open, each having echoed
  one byte (accepted and served), then idle: raw uvloop ``asyncio.Protocol``, aionet ``echo``
  (target ≤ 2 KiB) and an aionet ``StreamHandler`` (target ≤ 6 KiB).
* **sweep** — the idle sweep's cost: the server's CPU time (``/proc/PID/stat``) over
  ``--window`` seconds of idleness with 1,000 connections, then with ``--conns`` (nothing is
  due: idle_timeout 5m); the two should be about equal. ``--baseline REV`` adds aionet as of
  REV here and in ``imap`` and ``ws`` (before the deadline wheels, the sweep walked every
  connection every second, and the HTTP tick every HTTP and WebSocket connection every 0.5 s).
* **storm** — accept rate under a connect storm: ``--storm`` connections opened as fast as
  the client can (``--inflight`` at once), each echoing one byte, held open; connections per
  second from the first connect() to the last echo, raw uvloop beside aionet ``echo``.
* **imap** — PSS growth per idle IMAP session at ``--sessions`` sessions, each logged in with
  INBOX (20 messages) selected, aionet's ``imap`` beside Dovecot (one ``imap`` process per
  session, PSS summed over its processes; root and ``dovecot-imapd`` needed, else aionet alone);
  then every session enters IDLE and the server's CPU over ``--window`` seconds is taken (the
  cost of watching for changes: aionet polls, Dovecot uses inotify).
* **ws** — PSS growth per idle WebSocket (handshake done, nothing sent) at ``--sessions``,
  and the server's CPU over ``--window`` seconds of their silence (pings, timeouts: the cost
  of its timers), aionet's ``http`` with a raw ASGI app beside uvicorn
  (``websockets-sansio``).

The client is ``scale_client.c`` (compiled into ``benchmarks/bin/`` on first use; needs gcc):
epoll, non-blocking connects bound to source addresses 127.0.0.2, 127.0.0.3 … (``--sources``),
because one source address has only ~28,000 ephemeral ports to one server port. Each client
process holds at most what its descriptor limit allows; more processes are started as needed.

Descriptors: aionet raises its own RLIMIT_NOFILE at start (``aionet/core/server/_fds.py``);
the raw uvloop server inherits this script's, which it raises to the hard limit, and the hard
limit too when it may (root with CAP_SYS_RESOURCE, up to fs.nr_open). When the hard limit
cannot reach ``--conns`` (a container without CAP_SYS_RESOURCE), the run is scaled down to
what fits and says so: no process can hold more descriptors than its hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
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
    add_base,
    add_baseline_option,
    c_binary,
    cpu_seconds,
    free_port,
    machine_facts,
    median,
    pinned,
    pss_kib,
    settle,
    spawned,
    wait_listening,
)

SERVER_CORE, CLIENT_CORE = 0, 1
SECTIONS = ["memory", "sweep", "storm", "imap", "ws"]
TARGETS = {"aionet-echo": 2.0, "aionet-stream": 6.0}
#: Descriptors a server keeps besides its connections (listening socket, loop, logs...).
SERVER_SPARE = 300
Server = Callable[[int, Path], list[str]]


# -- descriptors -----------------------------------------------------------------------------


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE (inherited by what it starts) toward ``wanted``:
    the hard limit too when allowed, up to fs.nr_open. Returns the soft limit reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        with contextlib.suppress(ValueError, OSError):  # no CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, ceiling),) * 2)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fitting(wanted: int, limit: int, what: str) -> int:
    """``wanted`` connections, or as many as a server can hold under ``limit`` (said)."""
    most = limit - SERVER_SPARE
    if wanted <= most:
        return wanted
    print(
        f"{what}: {wanted:,} connections need RLIMIT_NOFILE ≥ {wanted + SERVER_SPARE:,} but the "
        f"hard limit is {limit:,} and cannot be raised here (no CAP_SYS_RESOURCE): "
        f"running {most:,}",
        file=sys.stderr,
    )
    return most


# -- servers ---------------------------------------------------------------------------------


def aionet(protocol: str) -> Server:
    def make(port: int, tmp: Path) -> list[str]:
        config = tmp / "aionet.yaml"
        config.write_text(f"""
server:
  data_dir: {tmp / "var"}
  limits: {{max_connections: 1000000, max_connections_per_ip: 1000000, idle_timeout: 5m}}
logging: {{format: json, level: warning}}
listeners:
  - {{name: bench, protocol: "{protocol}", bind: "127.0.0.1:{port}", backlog: 4096}}
""")
        return [PY, "-m", "aionet", "run", "-c", str(config)]

    return make


SERVERS: dict[str, Server] = {
    "raw-uvloop": lambda port, tmp: [PY, str(HERE / "servers" / "raw_uvloop_echo.py"), str(port)],
    "aionet-echo": aionet("echo"),
    "aionet-stream": aionet("stream_echo_handler:StreamEcho"),
}


@contextlib.contextmanager
def serving(kind: str) -> Iterator[tuple[int, int]]:
    """Server ``kind`` on a free port, pinned to the server core: (port, pid)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        argv = SERVERS[kind](port, Path(tmp))
        with spawned(argv, core=SERVER_CORE, env=env, cwd=tmp) as proc:
            wait_listening(port, proc, timeout=30)
            yield port, proc.pid


# -- the client ------------------------------------------------------------------------------


@contextlib.contextmanager
def holding(
    port: int, count: int, args: argparse.Namespace, *, inflight: int = 200
) -> Iterator[dict[str, float]]:
    """``count`` connections to ``port``, each echoing a byte, held open until the block
    ends: C clients on the client core, as many processes as their fd limits need. Yields
    what they report: opened, failed, seconds (first connect to last echo, slowest client)."""
    if count <= 0:
        yield {"opened": 0, "failed": 0, "seconds": 0.0}
        return
    per = max(1, min(count, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64))
    shares = [per] * (count // per) + ([count % per] if count % per else [])
    inflight = max(1, inflight // len(shares))
    binary = str(c_binary("scale_client"))
    clients = []
    for share in shares:
        argv = [binary, "127.0.0.1", str(port), str(share), str(args.sources), str(inflight), "1"]
        clients.append(
            subprocess.Popen(
                pinned(CLIENT_CORE, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        )
    try:
        reports = [json.loads(c.stdout.readline() or "{}") for c in clients]  # type: ignore[union-attr]
        if any(not r for r in reports):
            raise RuntimeError("a client died before reporting")
        total = {
            "opened": sum(r["opened"] for r in reports),
            "failed": sum(r["failed"] for r in reports),
            "seconds": max(r["seconds"] for r in reports),
        }
        if total["failed"]:
            raise RuntimeError(f"{total['failed']:.0f} of {count} connections failed")
        yield total
    finally:
        for c in clients:
            with contextlib.suppress(OSError):
                c.stdin.close()  # type: ignore[union-attr]  # EOF: close and exit
        for c in clients:
            try:
                c.wait(60)
            except subprocess.TimeoutExpired:
                c.kill()


# -- sections --------------------------------------------------------------------------------


def memory(kind: str, args: argparse.Namespace) -> float:
    """KiB of RSS per connection at ``args.conns``, after a warm-up of 200."""
    with serving(kind) as (port, pid):
        with holding(port, 200, args):
            pass
        time.sleep(0.5)
        base = settle(pid)
        with holding(port, args.conns, args):
            loaded = settle(pid)
    return (loaded - base) / args.conns


def sweep(kind: str, args: argparse.Namespace) -> dict[str, float]:
    """Server CPU ms over ``args.window`` idle seconds at 1,000 and at ``args.conns``."""
    few = min(1000, args.conns)
    out: dict[str, float] = {}
    with serving(kind) as (port, pid), holding(port, few, args):
        settle(pid)
        out["few"] = idle_cpu(pid, args.window)
        with holding(port, args.conns - few, args):
            settle(pid)
            out["many"] = idle_cpu(pid, args.window)
    return out


def idle_cpu(pid: int, window: float) -> float:
    time.sleep(1.0)  # the last connections' tail
    before = cpu_seconds(pid)
    time.sleep(window)
    return 1000 * (cpu_seconds(pid) - before)


def storm(kind: str, args: argparse.Namespace) -> float:
    """Connections accepted and served per second, ``args.storm`` of them opened at once."""
    with serving(kind) as (port, _), holding(port, args.storm, args, inflight=args.inflight) as r:
        return r["opened"] / r["seconds"]


async def imap_sessions(port: int, count: int, user: str, password: str) -> list[Any]:
    """``count`` IMAP sessions, each greeted, logged in and with INBOX selected."""
    gate = asyncio.Semaphore(64)
    login = b"a LOGIN %s %s\r\nb SELECT INBOX\r\n" % (user.encode(), password.encode())

    async def one() -> Any:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()
            writer.write(login)
            while not (line := await reader.readline()).startswith(b"b "):
                if not line:
                    raise RuntimeError("session closed before SELECT answered")
            if not line.startswith(b"b OK"):
                raise RuntimeError(f"SELECT failed: {line!r}")
            return reader, writer

    return await asyncio.gather(*(one() for _ in range(count)))


async def imap_round(port: int, pid: int, count: int, window: float) -> tuple[float, float]:
    """PSS growth per session (logged in, INBOX selected); then every session enters IDLE
    and the server's CPU milliseconds over ``window`` seconds of their silence."""
    import imap as imap_bench

    before = pss_kib(pid)
    sessions = await imap_sessions(port, count, imap_bench.IDLE_USER, imap_bench.PASSWORD)
    await asyncio.sleep(1.0)
    after = pss_kib(pid)
    for _, writer in sessions:
        writer.write(b"c IDLE\r\n")
    for reader, _ in sessions:
        if not (await reader.readline()).startswith(b"+ "):
            raise RuntimeError("IDLE refused")
    await asyncio.sleep(3.0)  # past the mailbox's recently-changed window: a steady state
    cpu = cpu_seconds(pid)
    await asyncio.sleep(window)
    cpu = cpu_seconds(pid) - cpu
    for _, writer in sessions:
        writer.close()
    return (after - before) / count, 1000 * cpu


def imap_section(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    import imap as imap_bench

    names = ["aionet"]
    if shutil.which("dovecot") and os.geteuid() == 0:
        names.append("dovecot")
        # One imap process per session: Dovecot's limits sized to the run.
        limit = str(args.sessions + 512)
        imap_bench.DOVECOT_CONF = imap_bench.DOVECOT_CONF.replace("4096", limit).replace(
            "8192", limit
        )
    else:
        print("imap: dovecot (or root) missing: aionet alone", file=sys.stderr)
    if args.baseline:
        names.append(add_base(imap_bench.SERVERS, "aionet", args.baseline))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmpname:
        maildirs = Path(tmpname)
        imap_bench.write_maildir(maildirs / imap_bench.USER, 1)
        imap_bench.write_maildir(maildirs / imap_bench.IDLE_USER, 20)
        for r in range(args.rounds):
            for name in rotate(names, r):
                with imap_bench.serving(name, maildirs) as (port, pid):
                    kib, ms = asyncio.run(imap_round(port, pid, args.sessions, args.window))
                results[name].append((kib, ms))
                print(
                    f"round {r + 1} imap {name:14s} {kib:7.2f} KiB/session, "
                    f"{ms:5.0f} ms CPU over {args.window:g} s in IDLE",
                    file=sys.stderr,
                )
    return results


def ws_section(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    import importlib.util

    import websocket as ws_bench

    names = ["aionet", "uvicorn"]
    if (
        importlib.util.find_spec("websockets") is None
        or importlib.util.find_spec("uvicorn") is None
    ):
        print("ws: uvicorn[standard] missing: aionet alone", file=sys.stderr)
        names.remove("uvicorn")
    if args.baseline:
        names.append(add_base(ws_bench.SERVERS, "aionet", args.baseline))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in rotate(names, r):
            with ws_bench.serving(name) as (port, pid):
                kib, ms = asyncio.run(ws_bench.idle_cost(port, pid, args.sessions, args.window))
            results[name].append((kib, ms))
            print(
                f"round {r + 1} ws   {name:14s} {kib:7.2f} KiB/connection, "
                f"{ms:5.0f} ms CPU over {args.window:g} s idle",
                file=sys.stderr,
            )
    return results


def rotate(names: list[str], r: int) -> list[str]:
    return names[r % len(names) :] + names[: r % len(names)]


# -- run and report --------------------------------------------------------------------------


def run(args: argparse.Namespace, kinds: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    echo_kinds = [k for k in kinds if k != "aionet-stream"]
    aionet_echo = [k for k in kinds if k.startswith("aionet-echo")]
    plan: list[tuple[str, list[str], Callable[[str, argparse.Namespace], Any]]] = [
        ("memory", kinds, memory),
        ("sweep", aionet_echo, sweep),
        ("storm", echo_kinds, storm),
    ]
    for section, section_kinds, measure in plan:
        if section not in args.only:
            continue
        runs: dict[str, list[Any]] = {k: [] for k in section_kinds}
        for r in range(args.rounds):
            for kind in rotate(section_kinds, r):
                value = measure(kind, args)
                runs[kind].append(value)
                print(f"round {r + 1} {section:6s} {kind:18s} {value}", file=sys.stderr)
        data[section] = runs
    if "imap" in args.only:
        data["imap"] = imap_section(args)
    if "ws" in args.only:
        data["ws"] = ws_section(args)
    return data


def report(data: dict[str, Any], args: argparse.Namespace) -> None:
    if "memory" in data:
        print(f"\nRSS growth per idle connection at {args.conns:,} connections (median)")
        print("| server | KiB/conn | target | rounds |\n|---|---:|---|---|")
        for kind, runs in data["memory"].items():
            value, target = median(runs), TARGETS.get(kind.split("@")[0])
            mark = (
                ""
                if target is None
                else f"≤ {target:g}: " + ("met" if value <= target else "MISSED")
            )
            print(f"| {kind} | {value:.2f} | {mark} | {' · '.join(f'{v:.2f}' for v in runs)} |")
    if "sweep" in data:
        print(f"\nserver CPU over {args.window:g} s idle (ms, median), idle_timeout 5m")
        print(f"| server | 1,000 conns | {args.conns:,} conns |\n|---|---:|---:|")
        for kind, runs in data["sweep"].items():
            few, many = (median([r[k] for r in runs]) for k in ("few", "many"))
            print(f"| {kind} | {few:.0f} | {many:.0f} |")
    if "storm" in data:
        print(f"\nconnect storm: {args.storm:,} connections, {args.inflight} in flight (median)")
        print("| server | conns/s | rounds |\n|---|---:|---|")
        for kind, runs in data["storm"].items():
            print(f"| {kind} | {median(runs):,.0f} | {' · '.join(f'{v:,.0f}' for v in runs)} |")
    for section, what in (
        ("imap", "IMAP sessions (logged in, INBOX of 20 selected; the CPU: all in IDLE)"),
        ("ws", "idle WebSockets (handshake done)"),
    ):
        if section in data:
            print(f"\n{args.sessions:,} {what}: PSS growth per session,")
            print(f"server CPU over {args.window:g} s of silence (medians)")
            print("| server | KiB/session | CPU ms | rounds (KiB, ms) |\n|---|---:|---:|---|")
            for name, runs in data[section].items():
                kib, ms = median([k for k, _ in runs]), median([m for _, m in runs])
                shown = " · ".join(f"{k:.2f}, {m:.0f}" for k, m in runs)
                print(f"| {name} | {kib:.2f} | {ms:.0f} | {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=100_000, help="memory and sweep")
    parser.add_argument("--storm", type=int, default=20_000, help="connections in the storm")
    parser.add_argument("--inflight", type=int, default=1000, help="storm: connects at once")
    parser.add_argument("--sessions", type=int, default=10_000, help="imap and ws sessions")
    parser.add_argument("--window", type=float, default=10.0, help="sweep, imap, ws: idle s")
    parser.add_argument("--sources", type=int, default=16, help="client source addresses")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    add_baseline_option(parser, "aionet (echo, imap, ws)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.only = args.only.split(",")
    wanted = max(args.conns, args.storm, args.sessions) + SERVER_SPARE  # also the clients
    limit = raise_fd_limit(wanted)
    if {"memory", "sweep"} & set(args.only):
        args.conns = fitting(args.conns, limit, "memory/sweep")
    if "storm" in args.only:
        args.storm = fitting(args.storm, limit, "storm")
    if {"imap", "ws"} & set(args.only):
        args.sessions = fitting(args.sessions, limit, "imap/ws")
    args.sources = max(args.sources, math.ceil(max(args.conns, args.storm) / 20_000))
    kinds = list(SERVERS)
    if args.baseline:
        kinds.append(add_base(SERVERS, "aionet-echo", args.baseline))
    data = run(args, kinds)
    data["machine"] = machine_facts()
    data["conditions"] = {k: getattr(args, k) for k in ("conns", "storm", "sessions", "rounds")}
    report(data, args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
