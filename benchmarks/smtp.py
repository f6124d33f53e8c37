"""SMTP delivery throughput: bare aiosmtpd with a minimal fsyncing Maildir handler vs aionet's
``smtp``, same run, same disk; then POP3 RETR throughput over 1,000 stored messages.

    python benchmarks/smtp.py [--duration 5] [--rounds 3] [--conns 32] [--json out.json]

Servers are pinned to core 0, this process (the load generator, a lean uvloop client) to
core 1. All servers run at once and the rounds rotate between them so machine noise spreads
evenly; the table shows medians of messages/s. Each client connection loops over
``MAIL``/``RCPT``/``DATA`` (the three commands in one write, then the body after the 354) with
a 1 KiB message; a message counts when its final 250 arrives, i.e. after the server fsynced it.

Peers (``benchmarks/servers/aiosmtpd_maildir.py``, aiosmtpd's ``SMTP`` on a uvloop server):

* ``aiosmtpd-inline`` — the handler writes, fsyncs and renames on the event loop;
* ``aiosmtpd-executor`` — the same on a thread pool (what aionet does, so a slow fsync does not
  stall other sessions);
* ``aiosmtpd-nofsync`` — inline without the two fsyncs: the gap to ``inline`` is what fsync
  costs, the rest is protocol.

``aionet`` is ``aionet run -c FILE`` with an ``smtp`` listener (policy checks, Received:
header, enhanced status codes, connection manager, all-or-nothing Maildir delivery through a
thread pool) and logging at ``warning``. Target (issue 19): aionet >= 2x ``aiosmtpd-inline``.

POP3: 1,000 messages of 1 KiB in one mailbox; one session RETRs all of them, one command at a
time (``sequential``) and all in one write (``pipelined``); on ``aionet`` and, with
``--baseline``, ``aionet@base``, rounds taken in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    PY,
    add_baseline_option,
    choose_servers,
    free_port,
    machine_facts,
    median,
    spawned,
    wait_listening,
)

SERVER_CORE, CLIENT_CORE = 0, 1
MESSAGE = (
    b"From: bench@bench.test\r\nTo: bench@localhost\r\nSubject: benchmark\r\n\r\n"
    + (b"x" * 70 + b"\r\n") * 13
)
MESSAGE = MESSAGE + b"y" * (1024 - len(MESSAGE) - 2) + b"\r\n"
assert len(MESSAGE) == 1024

Argv = Callable[[int, Path], list[str]]


def bare(mode: str) -> Argv:
    def argv(port: int, tmp: Path) -> list[str]:
        script = HERE / "servers" / "aiosmtpd_maildir.py"
        return [PY, str(script), str(port), str(tmp / "Maildir"), mode]

    return argv


def aionet(port: int, tmp: Path) -> list[str]:
    from argon2 import PasswordHasher

    from aionet.auth.users import UserStore

    users = tmp / "users.yaml"
    store = UserStore(users, hasher=PasswordHasher(time_cost=1, memory_cost=8192))
    store.add("bench", "bench")
    store.add("reader", "reader")
    pop3 = free_port()
    (tmp / "pop3.port").write_text(str(pop3))
    (tmp / "aionet.yaml").write_text(f"""
server:
  data_dir: {tmp / "var"}
  limits: {{max_connections: 50000, max_connections_per_ip: 50000, idle_timeout: 5m}}
logging: {{format: json, level: warning}}
auth: {{users_file: {users}}}
listeners:
  - {{name: smtp, protocol: smtp, bind: "127.0.0.1:{port}", backlog: 4096,
     options: {{hostname: bench}}}}
  - {{name: pop3, protocol: pop3, bind: "127.0.0.1:{pop3}", options: {{auth_without_tls: true}}}}
""")
    return [PY, "-m", "aionet", "run", "-c", str(tmp / "aionet.yaml")]


SERVERS: dict[str, Argv] = {
    "aiosmtpd-inline": bare("inline"),
    "aiosmtpd-executor": bare("executor"),
    "aiosmtpd-nofsync": bare("nofsync"),
    "aionet": aionet,
}


def new_dir(name: str, tmp: Path) -> Path:
    if name.startswith("aionet"):  # "aionet@base" too
        return tmp / "var" / "mail" / "localhost" / "bench" / "new"
    return tmp / "Maildir" / "new"


def empty(directory: Path) -> None:
    """Remove the delivered messages, keeping the directory (a running server writes there)."""
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


@contextlib.contextmanager
def serving(name: str) -> Iterator[tuple[int, Path, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmpname:
        tmp = Path(tmpname)
        with spawned(SERVERS[name](port, tmp), core=SERVER_CORE) as proc:
            wait_listening(port, proc)
            yield port, tmp, proc.pid


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed")
        if line[3:4] != b"-":
            return line[:3]


async def sender(port: int, done: list[int], stop: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO bench.test\r\n")
    await reply(reader)
    envelope = b"MAIL FROM:<bench@bench.test>\r\nRCPT TO:<bench@localhost>\r\nDATA\r\n"
    body = MESSAGE + b".\r\n"
    while time.monotonic() < stop:
        writer.write(envelope)
        codes = [await reply(reader) for _ in range(3)]
        assert codes == [b"250", b"250", b"354"], codes
        writer.write(body)
        code = await reply(reader)
        assert code == b"250", code
        done[0] += 1
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def smtp_round(
    port: int, pid: int, conns: int, duration: float, warmup: float = 1.0
) -> tuple[float, float]:
    """Messages/s and server CPU microseconds per message over the measured window."""
    done = [0]
    start = time.monotonic()
    stop = start + warmup + duration
    tasks = [asyncio.create_task(sender(port, done, stop)) for _ in range(conns)]
    await asyncio.sleep(warmup)
    first, t0, cpu0 = done[0], time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(max(0.0, stop - time.monotonic()))
    last, t1, cpu1 = done[0], time.monotonic(), cpu_seconds(pid)
    await asyncio.gather(*tasks)
    count = max(1, last - first)
    return (last - first) / (t1 - t0), (cpu1 - cpu0) / count * 1e6


async def pop3_rounds(port: int, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"sequential": [], "pipelined": []}
    for _ in range(rounds):
        for mode in out:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()
            writer.write(b"USER reader\r\nPASS reader\r\n")
            await reader.readline()
            assert (await reader.readline()).startswith(b"+OK maildrop"), "login failed"
            t0 = time.monotonic()
            if mode == "pipelined":
                writer.write(b"".join(b"RETR %d\r\n" % i for i in range(1, 1001)))
            for i in range(1, 1001):
                if mode == "sequential":
                    writer.write(b"RETR %d\r\n" % i)
                await reader.readuntil(b"\r\n.\r\n")
            out[mode].append(1000 / (time.monotonic() - t0))
            writer.write(b"QUIT\r\n")
            await reader.readline()
            writer.close()
    return out


def fill_reader_mailbox(tmp: Path) -> None:
    from aionet.storage.maildir import Maildir, deliver_many

    box = Maildir(tmp / "var" / "mail" / "localhost" / "reader")
    for _ in range(1000):
        deliver_many([box], MESSAGE)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, list[float]] = {name: [] for name in SERVERS}
    cpu: dict[str, list[float]] = {name: [] for name in SERVERS}
    with contextlib.ExitStack() as stack:
        started = {name: stack.enter_context(serving(name)) for name in SERVERS}
        for r in range(args.rounds):
            order = list(SERVERS)[r % len(SERVERS) :] + list(SERVERS)[: r % len(SERVERS)]
            for name in order:
                port, tmp, pid = started[name]
                rate, us = await smtp_round(port, pid, args.conns, args.duration)
                results[name].append(rate)
                cpu[name].append(us)
                print(f"round {r + 1} {name:18} {rate:9.0f} msgs/s {us:7.0f} us CPU/msg",
                      file=sys.stderr)  # fmt: skip
                empty(new_dir(name, tmp))  # keep new/ small (the directory stays)
        pop3: dict[str, dict[str, list[float]]] = {}
        readers = [name for name in started if name.startswith("aionet")]  # @base too
        for name in readers:
            fill_reader_mailbox(started[name][1])
        for _ in range(args.rounds):  # interleaved, one round each in turn
            for name in readers:
                pop_port = int((started[name][1] / "pop3.port").read_text())
                for mode, rates in (await pop3_rounds(pop_port, 1)).items():
                    pop3.setdefault(name, {}).setdefault(mode, []).extend(rates)
    return {"smtp": results, "cpu_us": cpu, "pop3": pop3}


def report(data: dict[str, Any], args: argparse.Namespace) -> None:
    smtp = {name: median(rates) for name, rates in data["smtp"].items()}
    base = smtp.get("aiosmtpd-inline") or next(iter(smtp.values()))
    print(f"\n1 KiB messages, {args.conns} connections, {args.duration:g} s x {args.rounds} rounds")
    print("| server | msgs/s (median) | vs aiosmtpd-inline | server CPU µs/msg (median) | rounds |")
    print("|---|---:|---:|---:|---|")
    for name, rate in smtp.items():
        rounds = " · ".join(f"{r:,.0f}" for r in sorted(data["smtp"][name]))
        us = median(data["cpu_us"][name])
        print(f"| {name} | {rate:,.0f} | {rate / base:.3f} | {us:,.0f} | {rounds} |")
    print("\nPOP3 RETR of 1,000 1 KiB messages, one session")
    print("| server | mode | msgs/s (median) | rounds |")
    print("|---|---|---:|---|")
    for name, modes in data["pop3"].items():
        for mode, rates in modes.items():
            rounds = " · ".join(f"{r:,.0f}" for r in sorted(rates))
            print(f"| {name} | {mode} | {median(rates):,.0f} | {rounds} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--json", type=Path)
    add_baseline_option(parser)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    args = parser.parse_args()
    choose_servers(SERVERS, args.servers, args.baseline, aionet)
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {CLIENT_CORE})
    import uvloop

    data = uvloop.run(run(args))
    data["machine"] = machine_facts()
    report(data, args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
