"""HTTP/2 throughput: the raw ASGI hello app (``benchmarks/apps/hello.py``) on hypercorn,
granian and aionet, h2c (prior knowledge) and TLS (ALPN h2), h2load as the load; and aionet's
HTTP/1.1 on the same app and port for the "HTTP/2 vs its own HTTP/1.1" line.

    python benchmarks/http2.py [--duration 10] [--rounds 3] [--conns 64] [--streams 10]
                               [--servers ...] [--json out.json]

Load: ``h2load -c 64 -m 10 -D SECONDS -t 1`` (64 connections x 10 concurrent streams), which
negotiates h2 by ALPN over TLS and uses prior knowledge for ``http://``; the HTTP/1.1 line is
``h2load --h1 -c 64`` (one request at a time per connection: no pipelining, as browsers do).
The negotiated protocol is checked on every run (``Application protocol:`` must be ``h2``,
``h2c`` or ``http/1.1`` as asked), and a run with failed requests or non-2xx answers stops the
benchmark. p99 comes from h2load's per-request log (``--log-file``).

Servers are pinned to core 0, h2load to core 1. Every server runs at once and the runs rotate
between them round by round (machine noise spreads evenly); tables show medians of req/s and of
p99, and the ratios aionet/hypercorn and aionet/granian for h2c and TLS. Target (issue 18):
aionet >= 1.5x hypercorn's req/s.

* hypercorn: ``--worker-class uvloop``, 1 worker (h2c by prior knowledge; TLS with its default
  ALPN list ``h2, http/1.1``).
* granian: ``--interface asgi --http 2 --loop uvloop``, 1 worker (TLS: ``--ssl-certificate``).
* aionet: ``protocol: http`` with ``http2: true`` (h2c beside HTTP/1.1 on one port) and a TLS
  listener with ``alpn: [h2, http/1.1]``; access logs off everywhere.

Needs ``h2load`` (Debian: nghttp2-client), ``pip install hypercorn granian`` (the bench extra);
a server that is not installed is left out (said on stderr). Certificates: a self-signed P-256
pair made for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    PY,
    free_port,
    machine_facts,
    median,
    pinned,
    spawned,
    wait_listening,
)

APPS = HERE / "apps"
BIN = Path(sys.executable).parent
SERVER_CORE, CLIENT_CORE = 0, 1


def hypercorn(port: int, tmp: Path, cert: Path, key: Path, tls: bool) -> list[str]:
    argv = [PY, "-m", "hypercorn", "hello:app", "--bind", f"127.0.0.1:{port}"]
    argv += ["--worker-class", "uvloop", "--workers", "1", "--log-level", "warning"]
    return argv + (["--certfile", str(cert), "--keyfile", str(key)] if tls else [])


def granian(port: int, tmp: Path, cert: Path, key: Path, tls: bool) -> list[str]:
    argv = [str(BIN / "granian"), "--interface", "asgi", "--http", "2", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--loop", "uvloop", "--backlog", "4096"]
    argv += ["--no-access-log", "--log-level", "warning"]
    tls_args = ["--ssl-certificate", str(cert), "--ssl-keyfile", str(key)] if tls else []
    return [*argv, *tls_args, "hello:app"]


def aionet(port: int, tmp: Path, cert: Path, key: Path, tls: bool) -> list[str]:
    if tls:
        listener_tls = 'tls: {certificates: [bench], alpn: [h2, "http/1.1"]},'
        options = 'app: "hello:app", access_log: false'
    else:
        listener_tls, options = "", 'app: "hello:app", http2: true, access_log: false'
    config = tmp / f"aionet-{port}.yaml"
    config.write_text(f"""
server:
  data_dir: {tmp / f"var-{port}"}
  limits: {{max_connections: 50000, max_connections_per_ip: 50000, idle_timeout: 5m}}
logging: {{format: json, level: warning}}
tls: {{certificates: [{{name: bench, cert: "{cert}", key: "{key}"}}]}}
listeners:
  - {{name: bench, protocol: http, bind: "127.0.0.1:{port}", backlog: 4096, {listener_tls}
     options: {{{options}}}}}
""")
    return [PY, "-m", "aionet", "run", "-c", str(config)]


#: name -> (port, tmp dir, cert, key, tls) -> argv
SERVERS: dict[str, Callable[[int, Path, Path, Path, bool], list[str]]] = {
    "hypercorn": hypercorn,
    "granian": granian,
    "aionet": aionet,
}
NEEDS = {"hypercorn": "hypercorn", "granian": "granian"}
#: Every measured line: (name, server, tls, protocol h2load must report).
Line = tuple[str, str, bool, str]


def lines_for(servers: list[str]) -> list[Line]:
    lines: list[Line] = []
    for server in servers:
        lines += [(f"{server}-h2c", server, False, "h2c"), (f"{server}-tls", server, True, "h2")]
    if "aionet" in servers:
        lines.append(("aionet-http1.1", "aionet", False, "http/1.1"))  # the h2c server's port
    return lines


@contextlib.contextmanager
def serving(server: str, tls: bool, tmp: Path, cert: Path, key: Path) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), str(HERE)])}
    argv = SERVERS[server](port, tmp, cert, key, tls)
    with spawned(argv, core=SERVER_CORE, cwd=APPS, env=env) as proc:
        wait_listening(port, proc, timeout=30)
        yield port


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def h2load(
    url: str, protocol: str, conns: int, streams: int, duration: float, log: Path
) -> dict[str, float]:
    """One h2load run pinned to the client core: req/s, p99 and mean (microseconds)."""
    log.unlink(missing_ok=True)  # h2load appends to its log
    argv = ["h2load", "-t", "1", "-c", str(conns), "-D", f"{duration:g}", f"--log-file={log}"]
    argv += ["--h1", "-m", "1"] if protocol == "http/1.1" else ["-m", str(streams)]
    done = subprocess.run(pinned(CLIENT_CORE, [*argv, url]), capture_output=True, text=True)
    out = done.stdout
    spoken = re.search(r"Application protocol: (\S+)", out)
    if done.returncode or spoken is None or spoken.group(1) != protocol:
        got = spoken.group(1) if spoken else "none"
        raise RuntimeError(f"h2load {url}: protocol {got} (wanted {protocol}): {out[-800:]}")
    counts = re.search(r"requests: (\d+) total.*?(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    if counts is None or codes is None or rate is None or mean is None:
        raise RuntimeError(f"h2load {url}: unexpected output: {out[-800:]}")
    failed = int(counts.group(3)) + int(counts.group(4)) + sum(int(g) for g in codes.groups()[2:])
    if failed or not int(counts.group(2)):
        raise RuntimeError(f"h2load {url}: {failed} failed requests: {out[-800:]}")
    durations = sorted(int(row.split("\t")[2]) for row in log.read_text().splitlines() if row)
    return {
        "rps": float(rate.group(1)),
        "p99_us": float(durations[min(len(durations) - 1, int(len(durations) * 0.99))]),
        "mean_us": float(mean.group(1)) * _UNITS[mean.group(2)],
        "requests": float(counts.group(2)),
    }


def measure(lines: list[Line], args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        from aionet.core.certgen import generate_self_signed

        cert, key = generate_self_signed(tmp / "cert", ["localhost"])
        ports = {}
        for name, server, tls, _ in lines:
            if name != "aionet-http1.1":
                ports[name] = stack.enter_context(serving(server, tls, tmp, cert, key))
        ports["aionet-http1.1"] = ports.get("aionet-h2c", 0)

        def run(name: str, tls: bool, protocol: str, duration: float) -> dict[str, float]:
            url = f"{'https' if tls else 'http'}://127.0.0.1:{ports[name]}/"
            return h2load(url, protocol, args.conns, args.streams, duration, tmp / "h2load.log")

        for name, _, tls, protocol in lines:
            run(name, tls, protocol, min(2.0, args.duration))  # warm-up
        for r in range(args.rounds):
            order = lines[r % len(lines) :] + lines[: r % len(lines)]
            for name, _, tls, protocol in order:
                result = run(name, tls, protocol, args.duration)
                runs.append(result | {"line": name, "round": r + 1})
                print(
                    f"round {r + 1} {name:16s} {result['rps']:10.0f} req/s"
                    f"  p99 {result['p99_us'] / 1000:7.2f} ms",
                    flush=True,
                )
    return runs


def summarize(runs: list[dict[str, Any]], lines: list[Line]) -> tuple[str, dict[str, float]]:
    stats = {}
    for name, *_ in lines:
        mine = [x for x in runs if x["line"] == name]
        stats[name] = (median([x["rps"] for x in mine]), median([x["p99_us"] for x in mine]))
    table = ["| line | req/s (median) | p99 ms (median) | rounds req/s |", "|---|---:|---:|---|"]
    for name, (rps, p99) in stats.items():
        rounds = " · ".join(f"{x['rps']:,.0f}" for x in runs if x["line"] == name)
        table.append(f"| {name} | {rps:,.0f} | {p99 / 1000:.2f} | {rounds} |")
    ratios = {}
    for mode in ("h2c", "tls"):
        for peer in ("hypercorn", "granian"):
            mine, theirs = stats.get(f"aionet-{mode}"), stats.get(f"{peer}-{mode}")
            if mine and theirs:
                ratios[f"aionet/{peer} {mode}"] = mine[0] / theirs[0]
    if "aionet-h2c" in stats and "aionet-http1.1" in stats:
        ratios["aionet h2c/http1.1"] = stats["aionet-h2c"][0] / stats["aionet-http1.1"][0]
    table.append("")
    table += [f"{k}: {v:.2f}x" for k, v in ratios.items()]
    if any(k.startswith("aionet/hypercorn") for k in ratios):
        met = all(v >= 1.5 for k, v in ratios.items() if k.startswith("aionet/hypercorn"))
        table.append(f"target aionet >= 1.5x hypercorn req/s: {'met' if met else 'NOT met'}")
    return "\n".join(table), ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per h2load run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10, help="h2load -m (HTTP/2 lines)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        sys.exit("h2load is not installed (Debian package: nghttp2-client)")
    chosen = [s for s in args.servers.split(",") if s in SERVERS]
    for name, module in NEEDS.items():
        if name in chosen and importlib.util.find_spec(module) is None:
            print(f"{name}: {module} is not installed, left out", file=sys.stderr)
            chosen.remove(name)
    lines = lines_for(chosen)
    facts = machine_facts()
    print("machine:", facts, flush=True)
    runs = measure(lines, args)
    table, ratios = summarize(runs, lines)
    print(
        f"\nASGI hello over HTTP/2: h2load -c {args.conns} -m {args.streams}, "
        f"{args.duration:g} s x {args.rounds} rounds (medians)"
    )
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "runs": runs, "ratios": ratios}))


if __name__ == "__main__":
    main()
