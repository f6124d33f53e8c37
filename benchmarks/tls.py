"""TLS: full-handshake rate and TLS echo, aionet's TLS listener vs a raw uvloop ``ssl=`` server.

    python benchmarks/tls.py [--seconds 5] [--rounds 3]

Handshakes: ``openssl s_time -new`` (a C client, every connection a full handshake, no session
reuse) pinned to core 1 against each server pinned to core 0, for an ECDSA P-256 and an
RSA-2048 certificate. Echo: 64 connections of 64-byte TLS ping-pong from a Python client; the
client, not the server, is the bottleneck there, so besides msgs/s the server's CPU time per
message (from /proc) is compared. Target: aionet >= 0.9 x the raw server.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import HERE, PY, free_port, median, pinned, wait_listening

from aionet.core.certgen import generate_self_signed

ECHO_CLIENT = """
import asyncio, ssl, sys, time, uvloop
port, conns, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
async def one(stop, counts):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    n = 0
    while time.monotonic() < stop:
        w.write(b"x" * 64); await r.readexactly(64); n += 1
    counts.append(n); w.close()
async def main():
    counts = []; stop = time.monotonic() + seconds
    await asyncio.gather(*(one(stop, counts) for _ in range(conns)))
    print(sum(counts))
uvloop.run(main())
"""


def make_cert(out: Path, kind: str) -> tuple[Path, Path]:
    key_type = "ec-p256" if kind == "ecdsa" else "rsa-2048"
    return generate_self_signed(out / kind, ["localhost"], key_type=key_type)


def server_argv(kind: str, port: int, cert: Path, key: Path, tmp: Path) -> list[str]:
    if kind == "raw-uvloop-ssl":
        return [
            PY,
            str(HERE / "servers" / "raw_uvloop_tls_echo.py"),
            str(port),
            str(cert),
            str(key),
        ]
    config = tmp / f"tls-{port}.yaml"
    config.write_text(f"""
server: {{data_dir: {tmp}/var, limits: {{max_connections: 50000, max_connections_per_ip: 50000}}}}
logging: {{format: json, level: warning}}
tls: {{certificates: [{{name: bench, cert: "{cert}", key: "{key}"}}]}}
listeners:
  - {{name: bench, protocol: echo, bind: "127.0.0.1:{port}", backlog: 4096, tls: bench}}
""")
    return [PY, "-m", "aionet", "run", "-c", str(config)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def handshakes(port: int, seconds: float) -> float:
    out = subprocess.run(
        pinned(
            1,
            [
                "openssl",
                "s_time",
                "-connect",
                f"127.0.0.1:{port}",
                "-new",
                "-time",
                str(int(seconds)),
            ],
        ),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out.stdout)
    if not m:
        raise RuntimeError(f"s_time said: {out.stdout[-500:]} {out.stderr[-500:]}")
    return int(m.group(1)) / float(m.group(2))


def echo(port: int, pid: int, seconds: float) -> tuple[float, float]:
    before = cpu_seconds(pid)
    out = subprocess.run(
        pinned(1, [PY, "-c", ECHO_CLIENT, str(port), "64", str(seconds)]),
        capture_output=True,
        text=True,
        check=True,
    )
    msgs = int(out.stdout.strip())
    return msgs / seconds, (cpu_seconds(pid) - before) * 1e6 / msgs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--certs", nargs="+", default=["ecdsa", "rsa"], choices=["ecdsa", "rsa"])
    args = parser.parse_args()
    kinds = ["raw-uvloop-ssl", "aionet-tls"]
    rows: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        certs = {k: make_cert(tmp, k) for k in args.certs}
        for r in range(args.rounds):
            for cert_kind, (cert, key) in certs.items():
                for kind in kinds if r % 2 == 0 else kinds[::-1]:
                    port = free_port()
                    proc = subprocess.Popen(
                        pinned(0, server_argv(kind, port, cert, key, tmp)),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    try:
                        wait_listening(port, proc)
                        time.sleep(0.5)
                        before = cpu_seconds(proc.pid)
                        hs = handshakes(port, args.seconds)
                        cpu_us = (cpu_seconds(proc.pid) - before) * 1e6 / (hs * args.seconds)
                        rows.setdefault((kind, f"handshakes/s {cert_kind}"), []).append(hs)
                        rows.setdefault((kind, f"server us/handshake {cert_kind}"), []).append(
                            cpu_us
                        )
                        if cert_kind == "ecdsa":
                            rate, us = echo(port, proc.pid, args.seconds)
                            rows.setdefault((kind, "echo msgs/s"), []).append(rate)
                            rows.setdefault((kind, "echo server us/msg"), []).append(us)
                    finally:
                        proc.terminate()
                        proc.wait(15)
                    print(
                        f"round {r + 1} {cert_kind:5s} {kind:15s} {hs:8.0f} handshakes/s",
                        flush=True,
                    )
    print()
    print(f"{'metric':24s} {'raw uvloop ssl':>15s} {'aionet':>10s} {'aionet/raw':>11s}")
    metrics = [
        "handshakes/s ecdsa",
        "server us/handshake ecdsa",
        "handshakes/s rsa",
        "server us/handshake rsa",
        "echo msgs/s",
        "echo server us/msg",
    ]
    for metric in metrics:
        if ("raw-uvloop-ssl", metric) not in rows:
            continue
        raw = median(rows[("raw-uvloop-ssl", metric)])
        ours = median(rows[("aionet-tls", metric)])
        ratio = raw / ours if "us/" in metric else ours / raw  # efficiency for CPU costs
        print(f"{metric:24s} {raw:15.1f} {ours:10.1f} {ratio:11.3f}")
    print("(for the 'us/' rows the ratio is raw/aionet: above 1 means aionet spends less CPU)")


if __name__ == "__main__":
    sys.exit(main())
