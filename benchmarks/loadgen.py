"""The load generator itself: how much load ``aionet bench`` can make, next to wrk.

    python benchmarks/loadgen.py [--duration 5] [--rounds 5] [--json out.json]

nginx (1 worker, a static 5-byte file ``hello``, access log off) is pinned to core 0; each load
generator gets core 1 alone (``taskset``), one at a time, rotating round by round so machine
noise spreads evenly. Reported: medians over the rounds.

1. **Max throughput**: ``wrk -t1 -c64`` against ``aionet bench http -c 64 --workers 1`` (one
   core each). Target: aionet bench ≥ 0.5x wrk's req/s per core. nginx on one core may be the
   bottleneck for wrk, which flatters the ratio: the table says how busy each side was.
2. **Latency below saturation**: p50 at a fixed rate. wrk has no fixed-rate mode and wrk2 is
   used only if installed (``wrk2`` or a ``wrk`` that accepts ``-R``); otherwise both tools run
   closed at a low concurrency (``-c 4``) and their p50s are compared — and aionet bench's
   open model at ``--rate`` is shown beside, corrected and uncorrected.
3. **echo against tcpkali**, if tcpkali is installed (it is not a Debian package here).

Needs: ``wrk``, ``nginx``, ``taskset``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import ROOT, free_port, machine_facts, median, pinned, wait_listening

from aionet.bench.result import Result

SERVER_CORE, CLIENT_CORE = 0, 1
_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


@contextlib.contextmanager
def nginx() -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "www").mkdir()
        (tmp / "www" / "hello").write_text("hello")
        (tmp / "nginx.conf").write_text(f"""
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 10000000;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    default_type text/plain;
    server {{ listen 127.0.0.1:{port} backlog=4096; root {tmp / "www"}; }}
}}
""")
        argv = ["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g", "daemon off;"]
        proc = subprocess.Popen(pinned(SERVER_CORE, argv))
        try:
            wait_listening(port, proc)  # type: ignore[arg-type]
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def wrk(url: str, conns: int, duration: float, rate: float | None = None) -> dict[str, float]:
    exe = "wrk2" if rate is not None and shutil.which("wrk2") else "wrk"
    argv = [exe, "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency"]
    if rate is not None:
        argv.append(f"-R{rate:g}")
    out = subprocess.run(
        pinned(CLIENT_CORE, [*argv, url]), capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50(?:\.000)?%\s+([\d.]+)(us|ms|s)", out)
    assert p50 is not None, out
    return {"rps": rps, "p50_us": float(p50.group(1)) * _UNITS[p50.group(2)]}


def wrk_has_rate() -> bool:
    if shutil.which("wrk2"):
        return True
    out = subprocess.run(["wrk"], capture_output=True, text=True).stdout
    return "-R" in out or "--rate" in out


def aionet_bench(
    url: str, conns: int, duration: float, rate: float | None = None
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        argv = [sys.executable, "-m", "aionet", "bench", "http", url, "-c", str(conns)]
        argv += ["-d", f"{duration:g}s", "--warmup", "0.5s", "--workers", "1", "-q"]
        argv += ["--json", str(out)] + (["--rate", f"{rate:g}"] if rate else [])
        subprocess.run(pinned(CLIENT_CORE, argv), check=True, capture_output=True, cwd=ROOT)
        r = Result.load(out)
    row = {
        "rps": r.throughput,
        "p50_us": r.latency.percentile(50) / 1000,
        "errors": float(r.error_count),
    }
    if r.uncorrected is not None:
        row["p50_uncorrected_us"] = r.uncorrected.percentile(50) / 1000
    return row


def rounds(n: int, runs: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for i in range(n):
        names = list(runs) if i % 2 == 0 else list(reversed(runs))
        for name in names:
            out[name].append(runs[name]())
            print(f"  round {i + 1} {name}: {out[name][-1]}", flush=True)
    return out


def med(rows: list[dict[str, float]], key: str) -> float:
    return median([r[key] for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2000.0, help="the fixed rate for p50")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    facts = machine_facts()
    print("machine:", facts, flush=True)
    report: dict[str, Any] = {"facts": facts}
    d = args.duration
    with nginx() as port:
        url = f"http://127.0.0.1:{port}/hello"
        wrk(url, 64, 1.0)  # warm-up
        print("1. max req/s at -c 64, one core each", flush=True)
        top = rounds(
            args.rounds,
            {
                "wrk": lambda: wrk(url, 64, d),
                "aionet bench": lambda: aionet_bench(url, 64, d),
            },
        )
        report["max"] = top
        print("2. p50 below saturation", flush=True)
        fixed = wrk_has_rate()
        lat_runs: dict[str, Any] = {
            "wrk -c4": lambda: wrk(url, 4, d),
            "aionet bench -c4": lambda: aionet_bench(url, 4, d),
            f"aionet bench --rate {args.rate:g} -c4": lambda: aionet_bench(url, 4, d, args.rate),
        }
        if fixed:
            lat_runs[f"wrk2 -R{args.rate:g} -c4"] = lambda: wrk(url, 4, d, args.rate)
        lat = rounds(args.rounds, lat_runs)
        report["latency"] = lat
    tcpkali = shutil.which("tcpkali")
    report["tcpkali"] = bool(tcpkali)

    w, a = med(top["wrk"], "rps"), med(top["aionet bench"], "rps")
    print()
    print("| load generator (1 core) | req/s (median) | vs wrk |")
    print("|---|---:|---:|")
    print(f"| wrk -t1 -c64 | {w:,.0f} | 1.00x |")
    print(f"| aionet bench http -c 64 --workers 1 | {a:,.0f} | {a / w:.2f}x |")
    print()
    print("| run | req/s (median) | p50 µs (median) | p50 uncorrected µs |")
    print("|---|---:|---:|---:|")
    for name, rows in lat.items():
        unc = f"{med(rows, 'p50_uncorrected_us'):.1f}" if "p50_uncorrected_us" in rows[0] else "-"
        print(f"| {name} | {med(rows, 'rps'):,.0f} | {med(rows, 'p50_us'):.1f} | {unc} |")
    wp, ap = med(lat["wrk -c4"], "p50_us"), med(lat["aionet bench -c4"], "p50_us")
    print(f"\np50 closed -c4: aionet bench {ap:.1f} µs vs wrk {wp:.1f} µs ({ap / wp - 1:+.0%})")
    print(
        f"wrk2 / fixed-rate wrk: {'yes' if fixed else 'not installed'}; "
        f"tcpkali: {'yes' if tcpkali else 'not installed (echo comparison skipped)'}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
