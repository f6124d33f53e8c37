"""IMAP: Dovecot and aionet's ``imap`` side by side, same Maildir, same run, same load generator.

    python benchmarks/imap.py [--messages 10000] [--duration 5] [--rounds 3] [--conns 32]
                              [--idle 1000] [--servers dovecot,aionet] [--baseline REV]

One Maildir of ``--messages`` 4 KiB messages is written once; each server gets its own copy
(Dovecot's owned by ``nobody``, as its mail processes run). Servers are pinned to core 0, the
load generator (``aionet bench imap``, a separate process) to core 1; rounds rotate the
servers so machine noise spreads evenly; tables show medians.

Scenarios (the issue's):

* **select** — ``SELECT INBOX`` again and again on one session (after the first, which builds
  the index): what opening a 10,000-message folder costs; latency p50 is the figure.
* **login+select** — a whole session per request: connect, LOGIN, SELECT, LOGOUT.
* **flags** — ``FETCH 1:* (UID FLAGS RFC822.SIZE)`` of the whole mailbox, one session.
* **body** — ``FETCH n BODY.PEEK[]`` of 4 KiB messages at ``--conns`` sessions.
* **idle** — memory per logged-in, INBOX-selected, idle session at ``--idle`` sessions (a
  second user with 20 messages): the growth of the server's PSS / sessions — aionet's one
  process; Dovecot's master and children summed (one ``imap`` process per session, by design;
  PSS shares their common pages out instead of counting them once per process).

Targets (issue 16): flags and body >= 0.5x Dovecot; SELECT of 10,000 under 100 ms after the
first; <= 64 KiB per idle session.

Dovecot needs root (it drops to ``nobody`` for mail and ``dovenull`` for logins) and the
Debian package ``dovecot-imapd``; without them only aionet runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    PY,
    choose_servers,
    free_port,
    machine_facts,
    median,
    pinned,
    pss_kib,
    spawned,
    wait_listening,
)

SERVER_CORE, CLIENT_CORE = 0, 1
USER, PASSWORD = "bench", "bench"
IDLE_USER = "idler"
MESSAGE_SIZE = 4096

Server = Callable[[int, Path, Path], list[str]]


def message(i: int) -> bytes:
    head = (
        f"From: Sender {i} <sender{i}@example.test>\r\nTo: bench@localhost\r\n"
        f"Subject: benchmark message {i}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{i}@bench.test>\r\n\r\n"
    ).encode()
    body = (b"x" * 70 + b"\r\n") * ((MESSAGE_SIZE - len(head)) // 72)
    return head + body + b"y" * (MESSAGE_SIZE - len(head) - len(body) - 2) + b"\r\n"


def write_maildir(path: Path, count: int) -> None:
    """``count`` messages straight into ``cur/`` (benchmark data: no fsync per message)."""
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    base = 1_700_000_000
    for i in range(count):
        name = f"{base + i}.M{i % 1_000_000}P1Q{i}R{i:08x}.bench:2,"
        (path / "cur" / name).write_bytes(message(i))


# -- servers -------------------------------------------------------------------------------


def aionet(port: int, tmp: Path, maildirs: Path) -> list[str]:
    from argon2 import PasswordHasher

    from aionet.auth.users import UserStore

    users = tmp / "users.yaml"
    store = UserStore(users, hasher=PasswordHasher(time_cost=1, memory_cost=8192))
    store.add(USER, PASSWORD)
    store.add(IDLE_USER, PASSWORD)
    store.close()
    mail = tmp / "var" / "mail" / "localhost"
    mail.mkdir(parents=True)
    for user in (USER, IDLE_USER):
        shutil.copytree(maildirs / user, mail / user)
    (tmp / "aionet.yaml").write_text(f"""
server:
  data_dir: {tmp / "var"}
  limits: {{max_connections: 50000, max_connections_per_ip: 50000, idle_timeout: 30m}}
logging: {{format: json, level: warning}}
auth: {{users_file: {users}, throttle: {{max_failures: 1000000}}}}
listeners:
  - {{name: imap, protocol: imap, bind: "127.0.0.1:{port}", backlog: 4096,
     options: {{auth_without_tls: true, special_use: false}}}}
""")
    return [PY, "-m", "aionet", "run", "-c", str(tmp / "aionet.yaml")]


DOVECOT_CONF = """
protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{tmp}/mail/%u
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={tmp}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  process_limit = 4096
  client_limit = 4096
}}
service imap {{
  process_limit = 4096
}}
default_process_limit = 4096
default_client_limit = 8192
protocol imap {{
  mail_max_userip_connections = 100000
}}
first_valid_uid = 1
mail_uid = nobody
mail_gid = nogroup
default_login_user = dovenull
default_internal_user = dovecot
"""


def dovecot(port: int, tmp: Path, maildirs: Path) -> list[str]:
    for sub in ("run", "state", "mail"):
        (tmp / sub).mkdir()
    for user in (USER, IDLE_USER):
        shutil.copytree(maildirs / user, tmp / "mail" / user)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(tmp / "mail")], check=True)
    os.chmod(tmp, 0o755)
    conf = tmp / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(tmp=tmp, port=port, password=PASSWORD))
    return ["dovecot", "-F", "-c", str(conf)]


SERVERS: dict[str, Server] = {"dovecot": dovecot, "aionet": aionet}


@contextlib.contextmanager
def serving(name: str, maildirs: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmpname:
        tmp = Path(tmpname)
        with spawned(SERVERS[name](port, tmp, maildirs), core=SERVER_CORE) as proc:
            wait_listening(port, proc, timeout=30)
            yield port, proc.pid


# -- load ------------------------------------------------------------------------------------


def bench(port: int, fetch: str, conns: int, duration: float, *extra: str) -> dict[str, Any]:
    """One ``aionet bench imap`` run pinned to the client core; its JSON result.
    ``duration`` 0: one request (``-n 1``) however long it takes."""
    length = ["-d", f"{duration:g}"] if duration else ["-n", "1", "--timeout", "120"]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [
            PY, "-m", "aionet", "bench", "imap", f"127.0.0.1:{port}", "--user", USER,
            "--password", PASSWORD, "--fetch", fetch, "-c", str(conns), *length,
            "--json", out.name, *extra,
        ]  # fmt: skip
        done = subprocess.run(pinned(CLIENT_CORE, argv), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"bench failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    if result["errors"]:
        raise RuntimeError(f"bench errors: {result.get('error_details')}")
    return result


SCENARIOS: dict[str, Callable[[int, argparse.Namespace], dict[str, Any]]] = {
    "select": lambda port, a: bench(port, "select", 1, a.duration),
    "login+select": lambda port, a: bench(port, "select", 1, a.duration, "--relogin"),
    "flags": lambda port, a: bench(port, "flags", 1, a.duration),
    "body": lambda port, a: bench(port, "body", a.conns, a.duration),
}


async def idle_sessions(port: int, count: int) -> list[tuple[asyncio.StreamReader, Any]]:
    sessions = []
    for i in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(
            b"a LOGIN %s %s\r\nb SELECT INBOX\r\n" % (IDLE_USER.encode(), PASSWORD.encode())
        )
        while not (line := await reader.readline()).startswith(b"b "):
            if not line:
                raise RuntimeError(f"session {i} closed")
        if not line.startswith(b"b OK"):
            raise RuntimeError(f"SELECT failed: {line!r}")
        sessions.append((reader, writer))
    return sessions


async def idle_round(port: int, pid: int, count: int) -> float:
    before = pss_kib(pid)  # Dovecot: the master and every child
    sessions = await idle_sessions(port, count)
    await asyncio.sleep(1.0)
    after = pss_kib(pid)
    for _, writer in sessions:
        writer.close()
    return (after - before) / count


# -- run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, maildirs: Path) -> dict[str, Any]:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {s: [] for s in SCENARIOS} for name in SERVERS
    }
    idle: dict[str, float] = {}
    first_select: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        started = {name: stack.enter_context(serving(name, maildirs)) for name in SERVERS}
        for name, (port, _) in started.items():  # the first SELECT builds each one's index
            t0 = time.monotonic()
            bench(port, "select", 1, 0)
            first_select[name] = time.monotonic() - t0
        for r in range(args.rounds):
            order = list(SERVERS)[r % len(SERVERS) :] + list(SERVERS)[: r % len(SERVERS)]
            for scenario, measure in SCENARIOS.items():
                for name in order:
                    port, _ = started[name]
                    result = measure(port, args)
                    results[name][scenario].append(result)
                    print(
                        f"round {r + 1} {scenario:13} {name:12} "
                        f"{result['throughput_rps']:9.1f} req/s "
                        f"p50 {result['latency_ns']['p50'] / 1e6:8.2f} ms",
                        file=sys.stderr,
                    )
        if args.idle:
            for name, (port, pid) in started.items():
                idle[name] = asyncio.run(idle_round(port, pid, args.idle))
                print(f"idle {name:12} {idle[name]:8.1f} KiB/session", file=sys.stderr)
    return {"results": results, "idle_kib": idle, "first_select_s": first_select}


def report(data: dict[str, Any], args: argparse.Namespace) -> None:
    results = data["results"]
    names = list(results)
    peer = "dovecot" if "dovecot" in names else names[0]
    print(
        f"\n{args.messages:,} messages of 4 KiB; {args.duration:g} s x {args.rounds} rounds; "
        f"body at {args.conns} sessions"
    )
    print(
        "| scenario | server | req/s (median) | p50 ms (median) | vs " + peer + " | rounds req/s |"
    )
    print("|---|---|---:|---:|---:|---|")
    for scenario in SCENARIOS:
        base = median([r["throughput_rps"] for r in results[peer][scenario]])
        for name in names:
            runs = results[name][scenario]
            rate = median([r["throughput_rps"] for r in runs])
            p50 = median([r["latency_ns"]["p50"] / 1e6 for r in runs])
            rounds = " · ".join(f"{r['throughput_rps']:,.1f}" for r in runs)
            print(
                f"| {scenario} | {name} | {rate:,.1f} | {p50:,.2f} | {rate / base:.2f} | {rounds} |"
            )
    print("\nfirst SELECT (index built), seconds: " + ", ".join(
        f"{k} {v:.2f}" for k, v in data["first_select_s"].items()
    ))  # fmt: skip
    if data["idle_kib"]:
        print(f"idle sessions ({args.idle}, INBOX of 20 selected): " + ", ".join(
            f"{k} {v:.1f} KiB/session" for k, v in data["idle_kib"].items()
        ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--idle", type=int, default=1000, help="idle sessions (0: skip)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", metavar="REV", help="also run aionet as of REV")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    args = parser.parse_args()
    choose_servers(SERVERS, args.servers, args.baseline, aionet)
    if "dovecot" in SERVERS and (shutil.which("dovecot") is None or os.geteuid() != 0):
        print("dovecot (or root) missing: running aionet alone", file=sys.stderr)
        del SERVERS["dovecot"]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmpname:
        maildirs = Path(tmpname)
        write_maildir(maildirs / USER, args.messages)
        write_maildir(maildirs / IDLE_USER, 20)
        data = run(args, maildirs)
    data["machine"] = machine_facts()
    report(data, args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
