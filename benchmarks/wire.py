"""What nginx's loopback packets say, next to what each load generator reports.

    sudo python benchmarks/wire.py [--rates 1000,2000] [--duration 4]

A cross-check for ``loadgen.py``'s fixed-rate comparison, and the evidence behind its notes
in RESULTS.md. While h2load or aionet bench runs (the same commands as loadgen.py's), an
``AF_PACKET`` socket on ``lo`` records the kernel's timestamp of every TCP segment with a
payload to and from nginx. Per connection, a request's wire latency is from its segment to the
last response segment before the next request: what the server and the kernel took, without
either client's own work. Each tool's p50 minus the wire p50 is then that tool's overhead.
The capture reads its socket every 50 ms, so it wakes rarely. Needs root (or CAP_NET_RAW).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import socket
import struct
import threading
import time
from typing import Any

from loadgen import aionet_bench, h2load, nginx

SO_TIMESTAMPNS = 35
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4


def port_filter(port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF: outgoing IPv4 TCP segments from or to ``port``, first 96 bytes."""
    return [
        (0x20, 0, 0, 0xFFFFF004),  # ld pkttype (SKF_AD_OFF + SKF_AD_PKTTYPE)
        (0x15, 0, 10, PACKET_OUTGOING),  # lo shows each segment twice: keep one
        (0x28, 0, 0, 12),  # ldh ethertype
        (0x15, 0, 8, 0x0800),
        (0x30, 0, 0, 23),  # ldb ip protocol
        (0x15, 0, 6, 6),
        (0xB1, 0, 0, 14),  # ldxb 4*(ip[0]&15)
        (0x48, 0, 0, 14),  # ldh source port
        (0x15, 2, 0, port),
        (0x48, 0, 0, 16),  # ldh destination port
        (0x15, 0, 1, port),
        (0x06, 0, 0, 96),  # accept 96 bytes
        (0x06, 0, 0, 0),  # drop
    ]


class Capture(threading.Thread):
    """Payload segments to/from ``port`` on lo: (ns, to_server, client_port). Raw segments are
    kept while the run lasts and parsed after it, so the capture costs little meanwhile."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.raw: list[tuple[bytes, list[tuple[int, int, bytes]]]] = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        code = port_filter(port)
        self._prog = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in code))
        fprog = struct.pack("HL", len(code), ctypes.addressof(self._prog))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.drain()
        self.drain()
        self.sock.close()

    def drain(self) -> None:
        recv, keep = self.sock.recvmsg, self.raw.append
        while True:
            try:
                data, anc, _, _ = recv(96, 64)
            except BlockingIOError:
                return
            keep((data, anc))

    @property
    def rows(self) -> list[tuple[int, bool, int]]:
        out = []
        for data, anc in self.raw:
            ip = data[14:]
            ihl = (ip[0] & 15) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            tcp = ip[ihl:]
            if total - ihl - (tcp[12] >> 4) * 4 <= 0:  # a bare ACK
                continue
            sport, dport = struct.unpack("!HH", tcp[:4])
            sec, nsec = next(
                struct.unpack("qq", raw[:16]) for _, k, raw in anc if k == SO_TIMESTAMPNS
            )
            to_server = dport == self.port
            out.append((sec * 10**9 + nsec, to_server, sport if to_server else dport))
        return out


def wire_latencies(rows: list[tuple[int, bool, int]], skip_s: float) -> list[float]:
    """Microseconds from each request segment to the last response segment before the next."""
    by_conn: dict[int, list[tuple[int, bool]]] = collections.defaultdict(list)
    for ns, to_server, cport in rows:
        by_conn[cport].append((ns, to_server))
    first = min(r[0] for r in rows)
    out = []
    for segs in by_conn.values():
        segs.sort()
        sent = last = None
        for ns, to_server in [*segs, (0, True)]:
            if to_server:
                if sent is not None and last is not None and sent - first >= skip_s * 1e9:
                    out.append((last - sent) / 1000)
                sent, last = ns, None
            else:
                last = ns
    return sorted(out)


def pct(values: list[float], p: float) -> float:
    return values[max(0, -(-len(values) * p // 100) - 1)] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="1000,2000")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    d, w = args.duration, args.warmup
    results: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    with nginx() as port:
        url = f"http://127.0.0.1:{port}/hello"
        for i in range(args.rounds):
            for rate in (float(r) for r in args.rates.split(",")):
                paced = max(1, round(rate / 100))
                runs = {
                    f"{rate:g} bursts h2load -c{args.conns}": (
                        lambda rate=rate: h2load(url, args.conns, rate, d, w, False)
                    ),
                    f"{rate:g} bursts aionet bench -c{args.conns}": (
                        lambda rate=rate: aionet_bench(url, args.conns, d, rate, w)
                    ),
                    f"{rate:g} paced h2load -c{paced}": (
                        lambda rate=rate, c=paced: h2load(url, c, rate, d, w, True)
                    ),
                    f"{rate:g} paced aionet bench -c{paced}": (
                        lambda rate=rate, c=paced: aionet_bench(url, c, d, rate, w)
                    ),
                }
                names = list(runs) if i % 2 == 0 else list(reversed(runs))
                for name in names:
                    cap = Capture(port)
                    cap.start()
                    time.sleep(0.1)
                    row = runs[name]()
                    cap.stop.set()
                    cap.join()
                    # aionet bench's warm-up starts ~0.3 s after the interpreter; h2load's at once
                    wire = wire_latencies(cap.rows, w + 0.4)
                    row["wire_p50_us"] = pct(wire, 50)
                    row["wire_p90_us"] = pct(wire, 90)
                    row["wire_n"] = len(wire)
                    results[name].append(row)
                    print(
                        f"  {name}: p50 {row['p50_us']:.1f} wire p50 {row['wire_p50_us']:.1f}",
                        flush=True,
                    )
    print()
    print("| rate, schedule, tool | p50 µs | wire p50 µs | p50 minus wire p50 | rounds |")
    print("|---|---:|---:|---:|---:|")
    for name, rows in results.items():
        p50 = sorted(r["p50_us"] for r in rows)[len(rows) // 2]
        wp50 = sorted(r["wire_p50_us"] for r in rows)[len(rows) // 2]
        over = sorted(r["p50_us"] - r["wire_p50_us"] for r in rows)[len(rows) // 2]
        print(f"| {name} | {p50:.1f} | {wp50:.1f} | {over:+.1f} | {len(rows)} |")


if __name__ == "__main__":
    main()
