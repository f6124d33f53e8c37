"""DNS queries/s over UDP (A, AAAA and MX in turn) and queries/s per core of server CPU:
aionet's ``dns`` handler, a minimal dnspython server on uvloop and NSD, in one run, with
dnsperf as the load generator.

    python benchmarks/dns_bench.py [--duration 10] [--rounds 5] [--clients 4] [--outstanding 200]
                             [--json out.json]

* aionet: ``python -m aionet run -c tmp.yaml --log-level warning`` with a ``dns`` listener
  serving zone ``aionet.test`` (rate limiting off, the default).
* dnspython: ``servers/dnspython_server.py``, parse + build + render per query on uvloop.
* uvloop-floor: ``servers/raw_uvloop_dns.py``, a bare ``DatagramProtocol`` answering the three
  questions from a table of finished replies — not a DNS server, the least Python work per
  query: how close to NSD any server on uvloop's datagram callbacks can come.
* NSD (Debian package ``nsd``, if installed): one server process (``server-count: 1``), in the
  foreground with a temporary config, rate limiting off (``rrl-ratelimit: 0``).

Every server runs for the whole measurement, pinned to core 0; dnsperf (one thread, pinned to
core 1) runs against each in turn, the order rotating every round, so that the noise of a
shared machine spreads evenly; the table shows medians. The server's CPU time over each run
(``/proc``, its children included) gives its CPU share and so its queries/s per core — the
fair comparison when one server saturates its core and another does not. Targets: aionet >=
5x dnspython; aionet per core >= 0.8x NSD per core (issue 19).

Needs: ``dnsperf`` (Debian package ``dnsperf``); ``nsd`` optional.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import struct
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
    cpu_seconds,
    free_port,
    machine_facts,
    median,
    pinned,
    spawned,
    wait_datagram,
)

SERVER_CORE, CLIENT_CORE = 0, 1
QNAME = "www.aionet.test"

ZONE_FILE = """\
$ORIGIN aionet.test.
$TTL 300
@   IN SOA ns1 hostmaster 1 3600 600 604800 300
@   IN NS ns1
ns1 IN A 127.0.0.1
www 60 IN A 127.0.0.1
www 60 IN AAAA ::1
@   IN MX 10 mail
mail IN A 127.0.0.2
"""

#: dnsperf's query file: the names and types asked for, in turn.
QUERIES = f"{QNAME} A\n{QNAME} AAAA\naionet.test MX\n"

Argv = Callable[[int, Path], list[str]]


def aionet(port: int, tmp: Path) -> list[str]:
    config = tmp / "aionet.yaml"
    config.write_text(f"""
server:
  data_dir: {tmp / "var"}
logging: {{format: json, level: warning}}
listeners:
  - name: dns
    protocol: dns
    bind: 127.0.0.1:{port}
    options:
      zones:
        aionet.test:
          ttl: 300
          records:
            - {{name: ns1, type: A, value: 127.0.0.1}}
            - {{name: www, type: A, value: 127.0.0.1, ttl: 60}}
            - {{name: www, type: AAAA, value: "::1", ttl: 60}}
            - {{name: "@", type: MX, value: "10 mail"}}
            - {{name: mail, type: A, value: 127.0.0.2}}
""")
    return [PY, "-m", "aionet", "run", "-c", str(config), "--log-level", "warning"]


def dnspython(port: int, tmp: Path) -> list[str]:
    return [PY, str(HERE / "servers" / "dnspython_server.py"), str(port)]


def floor(port: int, tmp: Path) -> list[str]:
    return [PY, str(HERE / "servers" / "raw_uvloop_dns.py"), str(port)]


def nsd(port: int, tmp: Path) -> list[str]:
    (tmp / "aionet.test.zone").write_text(ZONE_FILE)
    (tmp / "nsd.conf").write_text(f"""
server:
  ip-address: 127.0.0.1
  port: {port}
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "{tmp}"
  database: ""
  zonelistfile: "{tmp}/zone.list"
  xfrdfile: "{tmp}/xfrd.state"
  xfrdir: "{tmp}"
  pidfile: "{tmp}/nsd.pid"
  logfile: "{tmp}/nsd.log"
  verbosity: 0
  hide-version: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: aionet.test
  zonefile: aionet.test.zone
""")
    return ["nsd", "-d", "-c", str(tmp / "nsd.conf")]


SERVERS: dict[str, Argv] = {
    "aionet": aionet,
    "dnspython": dnspython,
    "uvloop-floor": floor,
    "nsd": nsd,
}


def a_query(ident: int) -> bytes:
    """A plain UDP query for QNAME/A, built by hand: this script's name shadows dnspython."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in QNAME.split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def answers_a(reply: bytes) -> bool:
    """Our A query's reply (id 0x4242) with one answer record."""
    return reply[:2] == b"\x42\x42" and reply[6:8] == b"\x00\x01"


@contextlib.contextmanager
def serving(argv_for: Argv) -> Iterator[tuple[int, int]]:
    """Start one server on a free port (UDP and TCP), pinned to the server core: its port and
    process id."""
    port = free_port()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with spawned(argv_for(port, tmp), core=SERVER_CORE, cwd=tmp) as proc:
            wait_datagram(port, proc, a_query(0x4242), answers_a)
            yield port, proc.pid


def dnsperf(
    server: tuple[int, int], datafile: Path, args: argparse.Namespace, duration: float
) -> dict[str, float]:
    """One dnsperf run: queries/s, the share of queries lost, the server's CPU share."""
    port, pid = server
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile), "-T", "1"]
    argv += ["-c", str(args.clients), "-q", str(args.outstanding), "-l", f"{duration:g}"]
    out = subprocess.run(
        pinned(CLIENT_CORE, argv), capture_output=True, text=True, check=True
    ).stdout
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", out)
    return {"qps": qps, "lost_pct": float(lost.group(1)) if lost else 0.0, "cpu": cpu}


def aionet_bench_dns(
    server: tuple[int, int], args: argparse.Namespace, duration: float
) -> dict[str, float]:
    """The same load from ``aionet bench dns`` (one worker, one query in flight per socket, as
    many sockets as dnsperf keeps queries outstanding): its qps and lost share."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        argv = [PY, "-m", "aionet", "bench", "dns", f"127.0.0.1:{server[0]}", "--name", QNAME]
        argv += ["-c", str(args.outstanding), "-d", f"{duration:g}s", "--warmup", "0.5s"]
        argv += ["--workers", "1", "--timeout", "1s", "-q", "--json", str(out)]
        subprocess.run(pinned(CLIENT_CORE, argv), capture_output=True, check=True)
        data = json.loads(out.read_text())
    lost = data["errors"].get("lost", 0)
    return {"qps": data["throughput_rps"], "lost_pct": 100 * lost / max(1, data["requests"] + lost)}


BENCH_CLIENT = "aionet, loaded by aionet bench"


def measure(servers: dict[str, Argv], args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    names = list(servers)
    with tempfile.TemporaryDirectory() as name, contextlib.ExitStack() as stack:
        datafile = Path(name) / "queries.txt"
        datafile.write_text(QUERIES)
        ports = {n: stack.enter_context(serving(servers[n])) for n in names}
        for n in names:
            dnsperf(ports[n], datafile, args, 2.0)  # warm-up
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                result = dnsperf(ports[n], datafile, args, args.duration)
                runs.append(result | {"server": n, "round": r + 1})
                print(
                    f"round {r + 1} {n:10s} {result['qps']:10.0f} qps"
                    f"  lost {result['lost_pct']:.2f}%  server cpu {result['cpu']:.0%}",
                    flush=True,
                )
                if n == "aionet" and args.aionet_bench:
                    result = aionet_bench_dns(ports[n], args, args.duration)
                    runs.append(result | {"server": BENCH_CLIENT, "round": r + 1})
                    print(f"round {r + 1} {BENCH_CLIENT} {result['qps']:10.0f} qps", flush=True)
    return runs


def summarize(runs: list[dict[str, Any]], names: list[str]) -> str:
    qps = {n: median([x["qps"] for x in runs if x["server"] == n]) for n in names}
    per_core = {
        n: median([x["qps"] / x["cpu"] for x in runs if x["server"] == n and x.get("cpu")] or [0])
        for n in names
    }
    cpu = {n: median([x.get("cpu", 0.0) for x in runs if x["server"] == n]) for n in names}
    lines = [
        "| server | qps (median) | rounds (sorted) | server CPU | qps per core | aionet ÷ server"
        " (qps · per core) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for n in names:
        spread = " · ".join(f"{x:,.0f}" for x in sorted(r["qps"] for r in runs if r["server"] == n))
        ratio = f"{qps['aionet'] / qps[n]:.2f}x" if qps[n] else "n/a (no answers)"
        core = f"{per_core['aionet'] / per_core[n]:.2f}x" if per_core[n] else "n/a"
        lines.append(
            f"| {n} | {qps[n]:,.0f} | {spread} | {cpu[n]:.0%} | {per_core[n]:,.0f} |"
            f" {ratio} · {core} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c (source sockets)")
    parser.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--aionet-bench",
        action="store_true",
        help="also load aionet with `aionet bench dns` (the Python load generator) each round",
    )
    add_baseline_option(parser)
    args = parser.parse_args()
    if args.baseline:
        add_base(SERVERS, "aionet", args.baseline)
    if shutil.which("dnsperf") is None:
        sys.exit("dnsperf is not installed (Debian package: dnsperf)")
    servers = {k: v for k, v in SERVERS.items() if k != "nsd" or shutil.which("nsd")}
    if "nsd" not in servers:
        print("nsd is not installed (Debian package: nsd): measuring without it", flush=True)
    facts = machine_facts()
    print("machine:", facts, flush=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    runs = measure(servers, args)
    print(f"\nUDP queries/s, A · AAAA · MX in turn (medians of {args.rounds} rounds):")
    names = list(servers) + ([BENCH_CLIENT] if args.aionet_bench else [])
    print(summarize(runs, names))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"facts": facts, "args": vars(args) | {"json": str(args.json)}, "runs": runs}
            )
        )


if __name__ == "__main__":
    main()
