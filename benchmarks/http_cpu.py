"""Server CPU time per HTTP request: the raw ASGI hello app under wrk, aionet beside its peers.

    python benchmarks/http_cpu.py [--servers aionet,granian] [--variants log,metrics]
                                  [--baseline REV] [--conns 64 256] [--duration 4] [--rounds 3]

Req/s on a shared two-core machine moves with whatever else runs; the CPU the server spends per
request moves much less. Each server runs pinned to core 0 (wrk ``-t1`` to core 1, as in
``http_bench.py``); for every wrk run the server's user + system CPU seconds (the whole process
tree from ``/proc``: granian's worker process and every thread count) are read before and after,
and divided by the requests wrk completed. The runs rotate between the servers, round by round;
the table shows medians (user and system time apart), with req/s and wrk's p99 beside them.

Variants of aionet (``--variants``): ``log`` turns the access log on (JSON lines, written to
``/dev/null`` as every server's output is here; each peer runs with its own access log on
too), ``metrics`` adds an ``admin`` listener, which
makes the HTTP handler count every request and time it into the latency histogram; ``burn``
is the control: the hello app plus ``--burn`` µs of Python work per request (a spin), to read
a variant's growth against what a known amount of in-process work costs under wrk here.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    PY,
    add_base,
    add_baseline_option,
    cpu_split,
    free_port,
    machine_facts,
    median,
    pinned,
    spawned,
    wait_listening,
)
from http_bench import _aionet_config, granian, uvicorn

APPS = HERE / "apps"
SERVER_CORE, CLIENT_CORE = 0, 1
TOKEN_SHA = "0" * 64

Factory = Callable[[int, Path], list[str]]


def aionet(access_log: bool = False, metrics: bool = False, app: str = "hello:app") -> Factory:
    """``aionet run`` on the hello app, its access log and metrics on or off."""

    def argv(port: int, tmp: Path) -> list[str]:
        text = _aionet_config(port, tmp, f'app: "{app}"', access_log)
        if metrics:
            text += (
                f"  - {{name: admin, protocol: admin, bind: '127.0.0.1:{free_port()}',"
                f" options: {{tokens: [{{name: b, role: viewer, sha256: '{TOKEN_SHA}'}}]}}}}\n"
            )
        (tmp / "aionet.yaml").write_text(text)
        return [PY, "-m", "aionet", "run", "-c", str(tmp / "aionet.yaml")]

    return argv


def peers(wanted: list[str], logs: bool) -> dict[str, Factory]:
    """The peers asked for and installed; with ``logs``, each also with its access log on
    (its own default access logger, output to ``/dev/null`` like aionet's)."""
    made = {"uvicorn": uvicorn, "granian": granian}
    found: dict[str, Factory] = {}
    for name in wanted:
        if name not in made or not (Path(sys.executable).parent / name).exists():
            continue
        make = made[name]
        found[name] = lambda port, tmp, make=make: make(port, tmp, False)
        if logs:
            found[f"{name}+log"] = lambda port, tmp, make=make: make(port, tmp, True)
    return found


@contextlib.contextmanager
def serving(argv_for: Factory) -> Iterator[tuple[int, int]]:
    """One server on a free port, pinned to the server core: ``(port, pid)``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = {**os.environ, "PYTHONPATH": str(APPS)}
        with spawned(argv_for(port, tmp), core=SERVER_CORE, cwd=APPS, env=env) as proc:
            wait_listening(port, proc)
            yield port, proc.pid


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def wrk_run(port: int, pid: int, conns: int, duration: float) -> dict[str, float]:
    """One wrk run; the server's CPU µs per request, req/s, p99 (µs)."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency"]
    before = cpu_split(pid)
    out = subprocess.run(
        pinned(CLIENT_CORE, [*argv, f"http://127.0.0.1:{port}/"]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    after = cpu_split(pid)
    user, system = after[0] - before[0], after[1] - before[1]
    used = user + system
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    per = 1e6 / max(done, 1)
    return {
        "cpu_us": used * per, "user_us": user * per, "sys_us": system * per,
        "rps": rps, "p99_us": float(value) * _UNITS[unit],
    }  # fmt: skip


def measure(servers: dict[str, Factory], args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    names = list(servers)
    with contextlib.ExitStack() as stack:
        live = {name: stack.enter_context(serving(servers[name])) for name in names}
        for name in names:
            wrk_run(*live[name], 64, 1.0)  # warm-up
        for r in range(args.rounds):
            for conns in args.conns:
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    result = wrk_run(*live[name], conns, args.duration)
                    runs.append(result | {"server": name, "conns": conns, "round": r + 1})
                    print(
                        f"round {r + 1} {name:16s} c={conns:<4d} {result['cpu_us']:6.1f} µs/req"
                        f" (user {result['user_us']:5.1f} sys {result['sys_us']:5.1f})"
                        f" {result['rps']:9.0f} req/s  p99 {result['p99_us'] / 1000:6.2f} ms",
                        flush=True,
                    )
    return runs


def summarize(runs: list[dict[str, Any]], names: list[str], conns: list[int]) -> str:
    lines = [
        "| conns | server | CPU µs/req (median) | range | user | system | req/s | p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in conns:
        for name in names:
            mine = [x for x in runs if x["server"] == name and x["conns"] == c]
            if not mine:
                continue
            cpu = [x["cpu_us"] for x in mine]
            lines.append(
                f"| {c} | {name} | {median(cpu):.1f} | {min(cpu):.1f}..{max(cpu):.1f} "
                f"| {median([x['user_us'] for x in mine]):.1f} "
                f"| {median([x['sys_us'] for x in mine]):.1f} "
                f"| {median([x['rps'] for x in mine]):,.0f} "
                f"| {median([x['p99_us'] for x in mine]) / 1000:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--servers", default="aionet,granian", help="aionet, uvicorn, granian")
    parser.add_argument("--variants", default="", help="aionet variants: log, metrics, burn")
    parser.add_argument(
        "--burn", type=float, default=8.0, help="burn: µs of Python work added per request"
    )
    add_baseline_option(parser, "each aionet variant")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian package: wrk)")
    wanted = args.servers.split(",")
    servers: dict[str, Factory] = {"aionet": aionet()} if "aionet" in wanted else {}
    variants = {v for v in args.variants.split(",") if v}
    if "log" in variants:
        servers["aionet+log"] = aionet(access_log=True)
    if "metrics" in variants:
        servers["aionet+metrics"] = aionet(metrics=True)
    if "burn" in variants:
        servers[f"aionet+burn{args.burn:g}"] = aionet(app="hello_burn:app")
        os.environ["BURN_US"] = f"{args.burn:g}"
    if args.baseline:  # each aionet variant as of REV too
        for name in list(servers):
            add_base(servers, name, args.baseline)
    servers.update(peers(wanted, "log" in variants))
    facts = machine_facts()
    print("machine:", facts, flush=True)
    runs = measure(servers, args)
    print(f"\nServer CPU per request, hello app (medians of {args.rounds} rounds):")
    print(summarize(runs, list(servers), args.conns))
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "runs": runs}))


if __name__ == "__main__":
    main()
