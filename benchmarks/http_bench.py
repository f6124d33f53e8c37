"""HTTP throughput: the same raw ASGI hello app on uvicorn, granian and aionet; static files
against nginx. One run, wrk as the load generator.

    python benchmarks/http_bench.py [--duration 10] [--rounds 3] [--conns 64 256] [--access-log]
                              [--skip-static] [--json out.json]

Servers are pinned to core 0, wrk (``-t1``, keep-alive) to core 1. All servers of a table run
at once and the wrk runs rotate between them, so that machine noise spreads evenly; the tables
show medians of req/s and of wrk's p99 latency. Targets: aionet >= 1.2x uvicorn's req/s at
every concurrency, with a p99 no worse.

* ASGI: ``benchmarks/apps/hello.py`` (13-byte body, explicit Content-Length) on uvicorn
  (``--http httptools --loop uvloop``, 1 worker), granian (``--interface asgi``, 1 worker, if
  installed) and ``aionet run`` (``protocol: http``, ``app: hello:app``). Access logs are off on
  every server unless ``--access-log`` turns them on everywhere.
* Static: a 1 KiB file from aionet's built-in app (``static_dir``) and from nginx (1 worker,
  ``sendfile on``, access log off), the native reference.

Needs: ``wrk`` and ``nginx`` (Debian packages), ``pip install 'uvicorn[standard]' granian``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    PY,
    add_baseline_option,
    baseline_tree,
    free_port,
    machine_facts,
    median,
    on_baseline,
    run_wrk,
    spawned,
    wait_listening,
)

APPS = HERE / "apps"
BIN = Path(sys.executable).parent
SERVER_CORE, CLIENT_CORE = 0, 1

Argv = Callable[[int, Path, bool], list[str]]


def _aionet_config(port: int, tmp: Path, options: str, access_log: bool) -> str:
    return f"""
server:
  data_dir: {tmp / "var"}
  limits: {{max_connections: 50000, max_connections_per_ip: 50000, idle_timeout: 5m}}
logging: {{format: json, level: {"info" if access_log else "warning"}}}
listeners:
  - name: bench
    protocol: http
    bind: 127.0.0.1:{port}
    backlog: 4096
    options: {{{options}, access_log: {str(access_log).lower()}}}
"""


def aionet_asgi(port: int, tmp: Path, access_log: bool) -> list[str]:
    config = tmp / "aionet.yaml"
    config.write_text(_aionet_config(port, tmp, 'app: "hello:app"', access_log))
    return [PY, "-m", "aionet", "run", "-c", str(config)]


def aionet_static(port: int, tmp: Path, access_log: bool) -> list[str]:
    config = tmp / "aionet.yaml"
    config.write_text(_aionet_config(port, tmp, f'static_dir: "{tmp / "www"}"', access_log))
    return [PY, "-m", "aionet", "run", "-c", str(config)]


def uvicorn(port: int, tmp: Path, access_log: bool) -> list[str]:
    argv = [str(BIN / "uvicorn"), "hello:app", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--http", "httptools", "--loop", "uvloop", "--workers", "1"]
    argv += ["--log-level", "info" if access_log else "warning", "--backlog", "4096"]
    return argv + ([] if access_log else ["--no-access-log"])


def granian(port: int, tmp: Path, access_log: bool) -> list[str]:
    argv = [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--loop", "uvloop", "--backlog", "4096"]
    return [*argv, "--access-log" if access_log else "--no-access-log", "hello:app"]


def nginx(port: int, tmp: Path, access_log: bool) -> list[str]:
    log = f"access_log {tmp / 'access.log'};" if access_log else "access_log off;"
    (tmp / "nginx.conf").write_text(f"""
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 8192; }}
http {{
    {log}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    types {{ text/plain txt; }}
    server {{ listen 127.0.0.1:{port} backlog=4096; root {tmp / "www"}; }}
}}
""")
    return ["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g", "daemon off;"]


ASGI: dict[str, Argv] = {"aionet": aionet_asgi, "uvicorn": uvicorn, "granian": granian}
STATIC: dict[str, Argv] = {"aionet-static": aionet_static, "nginx": nginx}


@contextlib.contextmanager
def serving(argv_for: Argv, access_log: bool) -> Iterator[int]:
    """Start one server on a free port, pinned to the server core; stop it after."""
    port = free_port()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "www").mkdir()
        (tmp / "www" / "1k.txt").write_bytes(b"x" * 1023 + b"\n")
        env = {**os.environ, "PYTHONPATH": str(APPS)}
        with spawned(argv_for(port, tmp, access_log), core=SERVER_CORE, cwd=APPS, env=env) as proc:
            wait_listening(port, proc)
            yield port


def wrk(port: int, path: str, conns: int, duration: float) -> dict[str, float]:
    """One wrk run pinned to the client core (see ``_harness.wrk``)."""
    return run_wrk(port, path, conns, duration, CLIENT_CORE)


def measure(servers: dict[str, Argv], path: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every server runs for the whole measurement; wrk runs rotate between them.

    On a shared, noisy machine the load changes over minutes: alternating the servers run by
    run (rather than one server for a whole round) keeps the runs being compared close in time.
    """
    runs: list[dict[str, Any]] = []
    names = list(servers)
    with contextlib.ExitStack() as stack:
        ports = {
            name: stack.enter_context(serving(servers[name], args.access_log)) for name in names
        }
        for name in names:
            wrk(ports[name], path, 64, 2.0)  # warm-up
        for r in range(args.rounds):
            for conns in args.conns:
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    result = wrk(ports[name], path, conns, args.duration)
                    runs.append(result | {"server": name, "conns": conns, "round": r + 1})
                    print(
                        f"round {r + 1} {name:14s} c={conns:<4d} {result['rps']:10.0f} req/s"
                        f"  p99 {result['p99_us'] / 1000:7.2f} ms",
                        flush=True,
                    )
    return runs


def summarize(runs: list[dict[str, Any]], names: list[str], base: str, conns: list[int]) -> str:
    lines = [
        f"| conns | server | req/s (median) | p99 ms (median) | vs {base} req/s | vs {base} p99 |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in conns:
        stats = {}
        for name in names:
            mine = [x for x in runs if x["server"] == name and x["conns"] == c]
            if mine:
                stats[name] = (
                    median([x["rps"] for x in mine]),
                    median([x["p99_us"] for x in mine]),
                )
        for name, (rps, p99) in stats.items():
            ref = stats.get(base)
            ratio = f"{rps / ref[0]:.2f}x" if ref else "-"
            lat = f"{p99 / ref[1]:.2f}x" if ref else "-"
            lines.append(f"| {c} | {name} | {rps:,.0f} | {p99 / 1000:.2f} | {ratio} | {lat} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--access-log", action="store_true", help="access logs on everywhere")
    parser.add_argument("--skip-static", action="store_true")
    parser.add_argument("--json", type=Path)
    add_baseline_option(parser)
    parser.add_argument("--servers", help="comma-separated subset of the ASGI servers")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian package: wrk)")
    asgi = {k: v for k, v in ASGI.items() if k != "granian" or (BIN / "granian").exists()}
    static = {k: v for k, v in STATIC.items() if k != "nginx" or shutil.which("nginx")}
    if args.servers:
        asgi = {k: v for k, v in asgi.items() if k in args.servers.split(",")}
    if args.baseline:
        tree = baseline_tree(args.baseline)
        asgi["aionet@base"] = on_baseline(ASGI["aionet"], tree)
        static["aionet-static@base"] = on_baseline(STATIC["aionet-static"], tree)
    facts = machine_facts()
    print("machine:", facts, flush=True)
    asgi_runs = measure(asgi, "/", args)
    static_runs = [] if args.skip_static else measure(static, "/1k.txt", args)
    print("\nASGI hello (medians of", args.rounds, "rounds):")
    print(summarize(asgi_runs, list(asgi), "uvicorn", args.conns))
    if static_runs:
        print("\nStatic 1 KiB file:")
        print(summarize(static_runs, list(static), "nginx", args.conns))
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "asgi": asgi_runs, "static": static_runs}))


if __name__ == "__main__":
    main()
