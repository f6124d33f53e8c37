"""The Python cost of one datagram through aionet's datagram protocol, in process.

    python benchmarks/udp_path.py [--baseline REV] [--calls 200000] [--repeat 15]

``udp.py`` measures the whole path (kernel, uvloop, the handler) under load, and on this shared
two-core VM its rounds swing by ±20%, more than the few hundred nanoseconds that separate
aionet's ``datagram_received`` from a bare ``DatagramProtocol``'s. This measures only that
part: ``datagram_received(data, addr)`` called directly for a 64-byte datagram, with the
``udp-echo`` handler and a transport whose ``sendto`` is a C builtin (no syscall), the best of
``--repeat`` runs of ``--calls`` calls (the minimum: the run least disturbed by the machine).
Beside it, a bare protocol that only calls ``sendto`` — what uvloop's own path adds is the
same for both and is not here. ``--baseline REV``: the same for aionet as of REV, in a child
process importing that tree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import timeit
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import add_base, add_baseline_option

DATA = b"x" * 64
ADDR = ("127.0.0.1", 40000)


class Bare(asyncio.DatagramProtocol):
    """What a hand-written echo does per datagram."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


def transport() -> Any:
    """``sendto(data, addr)`` and ``is_closing()`` as C builtins: no Python frame of ours."""
    return types.SimpleNamespace(sendto={}.__setitem__, is_closing=(0).__bool__)


def best_ns(call: Any, calls: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=calls, repeat=repeat)) / calls * 1e9


async def measure(calls: int, repeat: int) -> dict[str, float]:
    import structlog

    from aionet.config.models import Limits
    from aionet.core.connections import ConnectionManager
    from aionet.core.handler import Services
    from aionet.core.listeners._datagram import _DatagramProtocol
    from aionet.handlers.udp_echo import UdpEchoHandler

    services = Services(listener="udp", data_dir=Path("."), log=structlog.get_logger())
    handler = UdpEchoHandler(UdpEchoHandler.Options(), services)
    slot = ConnectionManager(Limits()).add_listener("udp", handler, Limits())
    proto = _DatagramProtocol(slot, handler, None)
    proto.connection_made(transport())
    bare = Bare()
    bare.connection_made(transport())
    received, bare_received = proto.datagram_received, bare.datagram_received
    out = {
        "bare": best_ns(lambda: bare_received(DATA, ADDR), calls, repeat),
        "aionet": best_ns(lambda: received(DATA, ADDR), calls, repeat),
    }
    assert slot.stats.datagrams_out == slot.stats.datagrams_in > 0  # every one answered
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=15)
    add_baseline_option(parser)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(asyncio.run(measure(args.calls, args.repeat))))
        return
    inner = [sys.executable, __file__, "--inner", "--calls", str(args.calls)]
    inner += ["--repeat", str(args.repeat)]
    runs: dict[str, Callable[[], list[str]]] = {"aionet": lambda: inner}
    if args.baseline:  # the same child, importing the baseline's aionet
        add_base(runs, "aionet", args.baseline)
    rows: dict[str, dict[str, float]] = {}
    for name, argv in runs.items():
        done = subprocess.run(argv(), capture_output=True, text=True, check=True)
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"datagram_received, 64 B, best of {args.repeat} x {args.calls:,} calls (ns/datagram)")
    print("| server | ns | bare protocol ns | added ns |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        added = row["aionet"] - row["bare"]
        print(f"| {name} | {row['aionet']:.0f} | {row['bare']:.0f} | {added:.0f} |")


if __name__ == "__main__":
    main()
