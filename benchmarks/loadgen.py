"""The load generator itself: how much load ``aionet bench`` can make, next to wrk and h2load.

    python benchmarks/loadgen.py [--duration 5] [--rounds 5] [--rates 200,2000,5000]
                                 [--only max,closed,fixed] [--json out.json]

nginx (1 worker, a static 5-byte file ``hello``, access log off) is pinned to core 0; each load
generator gets core 1 alone (``taskset``), one at a time, rotating round by round so machine
noise spreads evenly. Reported: medians over the rounds.

1. **Max throughput**: ``wrk -t1 -c64`` against ``aionet bench http -c 64 --workers 1`` (one
   core each). Target: aionet bench ≥ 0.5x wrk's req/s per core. nginx on one core may be the
   bottleneck for wrk, which flatters the ratio: the table says how busy each side was.
2. **Latency below saturation, closed**: both tools closed at a low concurrency (``-c 4``),
   p50 next to p50. (wrk has no fixed-rate mode; wrk2 runs too if installed.)
3. **p50 at a fixed rate**, against h2load (nghttp2-client; ``--h1``, ``--rps`` per client,
   ``--log-file`` with one line per request: start, status, µs until the response was
   complete; percentiles computed exactly from it). Two schedules per rate:

   * ``-c 8 --rps R/8 -D``: h2load's obvious command line. Its rate timer ticks every
     ``max(10 ms, 1/rps)`` (h2load.cc) and the 8 clients connect together, so at R/8 > 100 it
     sends bursts: each tick every client sends its first request at once and the rest of the
     tick's share back to back. Requests then wait on each other in nginx, which is not the
     evenly spaced load aionet bench makes at the same ``--rate``.
   * paced: ``-c R/100 --rps 100`` (one request per client per 10 ms tick) with the connects
     spread over one tick (``-r R/1000 --rate-period 1ms``, or one every ``1000/R`` ms below
     1,000 req/s; ``-r`` excludes ``-D``, so ``-n``, and the first ``--warmup`` seconds of the
     log are dropped). That is the schedule of ``aionet bench --rate R -c R/100`` (each
     connection every 10 ms, connections staggered). Both tools' timers have 1 ms resolution,
     so above 1,000 req/s a tick's requests leave together: h2load (C) writes them within a
     few µs, aionet bench (Python) some tens of µs apart, so nginx queues them differently
     (``wire.py`` shows it). At 200 req/s (``-c 2``) every request is alone: the cleanest
     comparison of what the two tools measure.

   aionet bench reports corrected and uncorrected percentiles; h2load measures from when the
   request is queued for its write, like the uncorrected ones (they agree when nothing
   stalls). The log also gives how many
   requests were in flight when each was sent (burstiness).
4. **echo against tcpkali**, if tcpkali is installed (it is not a Debian package here).

Needs: ``wrk``, ``nginx``, ``h2load``, ``taskset``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
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
    url: str, conns: int, duration: float, rate: float | None = None, warmup: float = 0.5
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        argv = [sys.executable, "-m", "aionet", "bench", "http", url, "-c", str(conns)]
        argv += ["-d", f"{duration:g}s", "--warmup", f"{warmup:g}s", "--workers", "1", "-q"]
        argv += ["--json", str(out)] + (["--rate", f"{rate:g}"] if rate else [])
        subprocess.run(pinned(CLIENT_CORE, argv), check=True, capture_output=True, cwd=ROOT)
        r = Result.load(out)
    row = {"rps": r.throughput, "errors": float(r.error_count)}
    for p in (50, 90, 99):
        row[f"p{p}_us"] = r.latency.percentile(p) / 1000
        if r.uncorrected is not None:
            row[f"p{p}_uncorrected_us"] = r.uncorrected.percentile(p) / 1000
    return row


def h2load(
    url: str, conns: int, rate: float, duration: float, warmup: float, paced: bool
) -> dict[str, float]:
    """One h2load run at ``rate`` req/s in total; percentiles from its per-request log."""
    per_client = rate / conns
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "h2load.log"
        argv = ["h2load", "--h1", f"-c{conns}", f"--rps={per_client:g}", f"--log-file={log}"]
        if paced:  # connects spread over one 10 ms tick; -r excludes -D, so -n
            per_tick, period_ms = (round(conns / 10), 1) if conns >= 10 else (1, 10 // conns)
            total = round(rate * (warmup + duration))
            argv += [f"-r{per_tick}", f"--rate-period={period_ms}ms", f"-n{total}"]
        else:
            argv += [f"-D{duration * 1000:.0f}ms", f"--warm-up-time={warmup * 1000:.0f}ms"]
        out = subprocess.run(
            pinned(CLIENT_CORE, [*argv, url]), capture_output=True, text=True, check=True
        ).stdout
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    # start (µs since the epoch), status, µs until the response was complete
    reqs = sorted((int(r[0]), int(r[1]), int(r[2])) for r in rows)
    if paced:  # no warm-up phase with -n: drop the first seconds of the log
        first = reqs[0][0]
        reqs = [r for r in reqs if r[0] - first >= warmup * 1e6]
    assert reqs, out
    span = (reqs[-1][0] - reqs[0][0]) / 1e6
    lat = sorted(r[2] for r in reqs)
    ends = sorted(r[0] + r[2] for r in reqs)
    starts = [r[0] for r in reqs]
    # requests in flight (sent, not yet complete) when each request was sent
    inflight = [bisect.bisect_left(starts, s) - bisect.bisect_right(ends, s) for s in starts]
    row = {
        "rps": len(reqs) / span if span > 0 else 0.0,
        "inflight_at_send": sum(inflight) / len(inflight),
        "errors": float(sum(1 for r in reqs if not 200 <= r[1] < 400)),
    }
    for p in (50, 90, 99):
        row[f"p{p}_us"] = float(lat[max(0, math.ceil(p / 100 * len(lat)) - 1)])
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


def fixed_rate_runs(
    url: str, rates: list[float], conns: int, d: float, warmup: float
) -> dict[str, Any]:
    """Per rate: h2load's bursty and paced schedules, each beside aionet bench at its -c."""
    runs: dict[str, Any] = {}
    for rate in rates:
        paced_conns = max(1, round(rate / 100))
        for c, paced in ((conns, False), (paced_conns, True)):
            label = "paced" if paced else "bursts"
            runs[f"{rate:g} {label} h2load -c{c}"] = lambda c=c, paced=paced, rate=rate: h2load(
                url, c, rate, d, warmup, paced
            )
            runs[f"{rate:g} {label} aionet bench -c{c}"] = lambda c=c, rate=rate: aionet_bench(
                url, c, d, rate, warmup
            )
    return runs


def ratio_rows(fixed: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """aionet bench's p50 over h2load's, per rate and schedule: of the medians, and the median
    of the round-by-round ratios (the two tools ran back to back in each round)."""
    out = []
    for name, h2rows in fixed.items():
        if " h2load " not in name:
            continue
        key = name.split(" h2load ")[0]
        ai = next(v for k, v in fixed.items() if k.startswith(f"{key} aionet bench"))
        row: dict[str, Any] = {"run": key, "h2load_p50_us": med(h2rows, "p50_us")}
        for kind in ("p50_us", "p50_uncorrected_us"):
            row[f"aionet_{kind}"] = med(ai, kind)
            row[f"ratio_{kind}"] = med(ai, kind) / med(h2rows, "p50_us")
            row[f"paired_{kind}"] = median(
                [a[kind] / h["p50_us"] for a, h in zip(ai, h2rows, strict=True)]
            )
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--rates", default="200,2000,5000", help="fixed total rates for the p50 comparison"
    )
    parser.add_argument("--conns", type=int, default=8, help="connections, h2load's schedule")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, fixed-rate runs")
    parser.add_argument(
        "--only", default="max,closed,fixed", help="sections to run (max, closed, fixed)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    only = set(args.only.split(","))
    rates = [float(r) for r in args.rates.split(",")]
    for tool in ("wrk", "nginx", "h2load"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    facts = machine_facts()
    facts["h2load"] = subprocess.run(
        ["h2load", "--version"], capture_output=True, text=True
    ).stdout.strip()
    print("machine:", facts, flush=True)
    report: dict[str, Any] = {"facts": facts, "args": vars(args) | {"json": str(args.json)}}
    d = args.duration
    top: dict[str, list[dict[str, float]]] = {}
    lat: dict[str, list[dict[str, float]]] = {}
    fixed: dict[str, list[dict[str, float]]] = {}
    wrk2 = wrk_has_rate()
    with nginx() as port:
        url = f"http://127.0.0.1:{port}/hello"
        wrk(url, 64, 1.0)  # warm-up
        if "max" in only:
            print("1. max req/s at -c 64, one core each", flush=True)
            top = rounds(
                args.rounds,
                {
                    "wrk": lambda: wrk(url, 64, d),
                    "aionet bench": lambda: aionet_bench(url, 64, d),
                },
            )
            report["max"] = top
        if "closed" in only:
            print("2. p50 below saturation, closed -c4", flush=True)
            lat_runs: dict[str, Any] = {
                "wrk -c4": lambda: wrk(url, 4, d),
                "aionet bench -c4": lambda: aionet_bench(url, 4, d),
            }
            if wrk2:
                rate = rates[0]
                lat_runs[f"wrk2 -R{rate:g} -c4"] = lambda: wrk(url, 4, d, rate)
            lat = rounds(args.rounds, lat_runs)
            report["latency"] = lat
        if "fixed" in only:
            print("3. p50 at a fixed rate: h2load and aionet bench", flush=True)
            fixed = rounds(args.rounds, fixed_rate_runs(url, rates, args.conns, d, args.warmup))
            report["fixed"] = fixed
    tcpkali = shutil.which("tcpkali")
    report["tcpkali"] = bool(tcpkali)

    if top:
        w, a = med(top["wrk"], "rps"), med(top["aionet bench"], "rps")
        print()
        print("| load generator (1 core) | req/s (median) | vs wrk |")
        print("|---|---:|---:|")
        print(f"| wrk -t1 -c64 | {w:,.0f} | 1.00x |")
        print(f"| aionet bench http -c 64 --workers 1 | {a:,.0f} | {a / w:.2f}x |")
    if lat:
        print()
        print("| run | req/s (median) | p50 µs (median) |")
        print("|---|---:|---:|")
        for name, rows in lat.items():
            print(f"| {name} | {med(rows, 'rps'):,.0f} | {med(rows, 'p50_us'):.1f} |")
        wp, ap = med(lat["wrk -c4"], "p50_us"), med(lat["aionet bench -c4"], "p50_us")
        print(f"\np50 closed -c4: aionet bench {ap:.1f} µs vs wrk {wp:.1f} µs ({ap / wp - 1:+.0%})")
    if fixed:
        print()
        print(
            "| rate, schedule, tool | req/s | p50 µs | p90 µs | p99 µs "
            "| p50 uncorrected µs | in flight at send |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, rows in fixed.items():
            unc = (
                f"{med(rows, 'p50_uncorrected_us'):.1f}" if "p50_uncorrected_us" in rows[0] else "-"
            )
            infl = f"{med(rows, 'inflight_at_send'):.2f}" if "inflight_at_send" in rows[0] else "-"
            print(
                f"| {name} | {med(rows, 'rps'):,.0f} | {med(rows, 'p50_us'):.1f} "
                f"| {med(rows, 'p90_us'):.1f} | {med(rows, 'p99_us'):.1f} | {unc} | {infl} |"
            )
        print()
        print("| rate, schedule | aionet/h2load p50 | (uncorrected) | paired, median of rounds |")
        print("|---|---:|---:|---:|")
        ratios = ratio_rows(fixed)
        report["ratios"] = ratios
        for r in ratios:
            ok = abs(r["paired_p50_uncorrected_us"] - 1) <= 0.10
            print(
                f"| {r['run']} | {r['ratio_p50_us']:.2f} | {r['ratio_p50_uncorrected_us']:.2f} "
                f"| {r['paired_p50_uncorrected_us']:.2f} {'(within 10%)' if ok else ''} |"
            )
    print(
        f"\nwrk2 / fixed-rate wrk: {'yes' if wrk2 else 'not installed'}; "
        f"tcpkali: {'yes' if tcpkali else 'not installed (echo comparison skipped)'}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
