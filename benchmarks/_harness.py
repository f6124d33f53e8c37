"""Shared plumbing for the benchmarks: start servers pinned to a core, find ports, read RSS."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

# The servers a benchmark starts are loopback-only and short-lived; as root (CI, containers)
# aionet refuses to serve unless told root is intended.
os.environ.setdefault("AIONET_ALLOW_ROOT", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable


def baseline_tree(rev: str) -> Path:
    """A checkout of ``rev`` (a detached git worktree under ``benchmarks/out/``) whose aionet a
    benchmark runs beside this tree's, for before/after numbers from one invocation."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    tree = HERE / "out" / f"baseline-{sha}"
    if not (tree / "aionet").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--force", "--detach", str(tree), sha],
            check=True, capture_output=True,
        )  # fmt: skip
    return tree


def add_baseline_option(parser: argparse.ArgumentParser, what: str = "aionet") -> None:
    """``--baseline REV``: the option every benchmark that runs aionet takes."""
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help=f"also run {what} as of git revision REV (before/after numbers in one run)",
    )


def add_base(servers: dict[str, Any], name: str, rev: str) -> str:
    """Add ``NAME@base`` to ``servers``: ``servers[name]`` run on a checkout of ``rev``."""
    base = f"{name}@base"
    servers[base] = on_baseline(servers[name], baseline_tree(rev))
    return base


def choose_servers(
    servers: dict[str, Any], wanted: str, baseline: str | None, aionet: Callable[..., Any]
) -> list[str]:
    """Keep in ``servers`` only the comma-separated ``wanted`` ones, plus ``aionet@base`` (the
    ``aionet`` factory on a checkout of ``baseline``) when a baseline is asked for; their names.
    """
    chosen = wanted.split(",")
    if baseline:
        servers.setdefault("aionet", aionet)
        chosen.append(add_base(servers, "aionet", baseline))
    for name in list(servers):
        if name not in chosen:
            del servers[name]
    return chosen


def on_baseline(make: Callable[..., Any], tree: Path) -> Callable[..., Any]:
    """The same server factory, but its ``python -m aionet`` imports aionet from ``tree``.

    The factory may return an argv list or an object with an ``argv`` list (FTP's ``Setup``);
    the argv is prefixed with ``env PYTHONSAFEPATH=1 PYTHONPATH=TREE:...`` (keeping the
    script's own path). ``PYTHONSAFEPATH``: ``python -m``/``-c`` put the working directory
    first on ``sys.path``, and a benchmark run from the repository's root would import the
    working tree's aionet there, ahead of ``TREE`` — the "baseline" would be the tree itself."""

    def prefix(argv: list[str]) -> list[str]:
        path = os.pathsep.join([str(tree), str(HERE), str(HERE / "apps")])
        return ["env", "PYTHONSAFEPATH=1", f"PYTHONPATH={path}", *argv]

    def make_on_baseline(*args: Any, **kwargs: Any) -> Any:
        made = make(*args, **kwargs)
        if isinstance(made, list):
            return prefix(made)
        made.argv = prefix(made.argv)
        return made

    return make_on_baseline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: int | None, argv: list[str]) -> list[str]:
    """Prefix ``argv`` with ``taskset -c CORE`` when taskset exists and there are 2+ cores."""
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", str(core), *argv]


def aionet_config(port: int, protocol: str, data_dir: str) -> str:
    return f"""
server:
  data_dir: {data_dir}
  limits: {{max_connections: 50000, max_connections_per_ip: 50000, idle_timeout: 5m}}
logging: {{format: json, level: warning}}
listeners:
  - {{name: bench, protocol: "{protocol}", bind: "127.0.0.1:{port}", backlog: 4096}}
"""


SERVERS = {
    "raw-uvloop": lambda port, tmp: [PY, str(HERE / "servers" / "raw_uvloop_echo.py"), str(port)],
    "streams": lambda port, tmp: [PY, str(HERE / "servers" / "streams_echo.py"), str(port)],
    "aionet-echo": lambda port, tmp: _aionet(port, tmp, "echo"),
    "aionet-stream": lambda port, tmp: _aionet(port, tmp, "stream_echo_handler:StreamEcho"),
}


def _aionet(port: int, tmp: Path, protocol: str) -> list[str]:
    config = tmp / f"aionet-{port}.yaml"
    config.write_text(aionet_config(port, protocol, str(tmp / "var")))
    return [PY, "-m", "aionet", "run", "-c", str(config)]


@contextlib.contextmanager
def spawned(
    argv: list[str], *, core: int | None = None, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (pinned to ``core``, output discarded) that is stopped afterwards:
    SIGTERM, then SIGKILL if it has not exited within 15 s."""
    proc = subprocess.Popen(
        pinned(core, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running(kind: str, port: int, core: int | None = 0) -> Iterator[subprocess.Popen[bytes]]:
    """Start server ``kind`` on ``port`` pinned to ``core``; wait until it accepts; stop after."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        with spawned(SERVERS[kind](port, Path(tmp)), core=core, env=env) as proc:
            wait_listening(port, proc)
            yield proc


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def wait_datagram(
    port: int,
    proc: subprocess.Popen[bytes],
    probe: bytes,
    answered: Callable[[bytes], bool],
    timeout: float = 20,
) -> None:
    """Until the server answers ``probe`` over UDP with a datagram ``answered`` accepts."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            with contextlib.suppress(OSError):
                sock.sendto(probe, ("127.0.0.1", port))
                if answered(sock.recv(65536)):
                    return
            time.sleep(0.05)
    raise RuntimeError(f"no answer on udp port {port} after {timeout}s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settle(pid: int, timeout: float = 30.0) -> int:
    """RSS (KiB) of ``pid`` once two readings 0.5 s apart agree within 64 KiB."""
    last = rss_kib(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


def c_binary(name: str) -> Path:
    """``benchmarks/NAME.c`` compiled (``gcc -O2``) into ``benchmarks/bin/NAME``, again only
    when the source is newer."""
    out = HERE / "bin" / name
    source = HERE / f"{name}.c"
    if not out.exists() or out.stat().st_mtime < source.stat().st_mtime:
        out.parent.mkdir(exist_ok=True)
        subprocess.run(["gcc", "-O2", "-o", str(out), str(source)], check=True)
    return out


def pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` and every process below it (KiB): shared pages divided
    among the processes sharing them, so a server of one process per session (Dovecot) or one
    serving from a child (hypercorn) is counted fairly beside a single process."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            total += int(line.split()[1])
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):  # a child may exit meanwhile
                    total += pss_kib(int(child))
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and every process below it (Linux ``/proc``)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` and every process below it (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):  # a child may exit meanwhile
                    more = cpu_split(int(child))
                    user, system = user + more[0], system + more[1]
    return user, system


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (every core, any process: ``/proc/stat``)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait


def machine_facts() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": version("uvloop"),
        "aionet": version("aionet"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def run_wrk(
    port: int, path: str, conns: int, duration: float, core: int | None, threads: int = 1
) -> dict[str, float]:
    """One wrk run (pinned to ``core`` unless None); req/s, p99 in microseconds, errors."""
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--latency"]
    out = subprocess.run(
        pinned(core, [*argv, f"http://127.0.0.1:{port}{path}"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p99_us": float(value) * _UNITS[unit],
        "errors": float(bool(errors)) + float(non2xx.group(1) if non2xx else 0),
    }
