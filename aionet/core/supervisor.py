"""``--workers N``: N worker processes, each binding every listener with SO_REUSEPORT.

The supervisor binds nothing and speaks no protocol. It resolves port-0 binds to concrete ports
once (so that every worker binds the same port), starts each worker as ``python -m aionet run``
with ``AIONET_WORKER=i/N``, restarts a worker that dies (exponential back-off, reset once a
worker has run for a while), forwards SIGHUP, and on SIGTERM/SIGINT forwards the signal and
waits for every worker to finish its drain; it exits 0 when all did.

Inside a worker (``worker_setup``): every inet listener gets ``reuse_port: true`` and its
resolved port; the worker reports "ready" on a pipe once its listeners are bound; and, when an
admin listener exists, it writes its metric samples to ``data_dir/run/metrics/`` every second so
whichever worker answers ``/metrics`` can add the others' (``PeerSamples``): the counters of
all workers are summed, as Prometheus' multiprocess mode does with its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ..errors import ConfigError
from .metrics import Sample
from .preflight import load_config
from .systemd import Notifier

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..config.models import Config
    from .privileges import Daemon
    from .server import Server

__all__ = [
    "PeerLockouts",
    "PeerSamples",
    "Supervisor",
    "WorkerInfo",
    "worker_info",
    "worker_transform",
]

_log = structlog.get_logger("aionet.supervisor")

#: Restart back-off: first delay, cap, and how long a worker must live to reset it.
BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET = 0.5, 30.0, 30.0
#: How often a worker publishes its metric samples for the others.
SHARE_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    index: int
    count: int
    ports: dict[str, int]
    ready_fd: int | None
    #: The supervisor's secret, the same in every worker (``Server.secret``).
    secret: bytes | None = None


def worker_info(environ: dict[str, str] | None = None) -> WorkerInfo | None:
    """This process's place among the workers (from the supervisor's environment), or None."""
    env = os.environ if environ is None else environ
    spec = env.get("AIONET_WORKER")
    if not spec:
        return None
    index, _, count = spec.partition("/")
    ports = json.loads(env.get("AIONET_WORKER_PORTS", "{}"))
    fd = env.get("AIONET_READY_FD")
    secret = env.get("AIONET_WORKER_SECRET")
    return WorkerInfo(int(index), int(count), {str(k): int(v) for k, v in ports.items()},
                      int(fd) if fd else None,
                      bytes.fromhex(secret) if secret else None)  # fmt: skip


def worker_transform(info: WorkerInfo) -> Any:
    """A function making a worker's config: SO_REUSEPORT on every inet listener, ports fixed."""

    def transform(config: Config) -> Config:
        listeners = []
        for lc in config.listeners:
            if lc.bind.kind == "inet":
                bind = lc.bind
                if bind.port == 0 and lc.name in info.ports:
                    bind = dataclasses.replace(bind, port=info.ports[lc.name])
                lc = lc.model_copy(update={"bind": bind, "reuse_port": True})
            listeners.append(lc)
        return config.model_copy(update={"listeners": tuple(listeners)})

    return transform


async def watch_parent(server: Server, interval: float = 1.0) -> None:
    """Drain and exit if the supervisor is gone (killed): no orphaned workers."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(interval)
        if os.getppid() != parent:
            _log.error("supervisor_gone", parent=parent)
            server.request_shutdown()
            return


def report_ready(info: WorkerInfo) -> None:
    """Tell the supervisor this worker has bound its listeners."""
    if info.ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(info.ready_fd, f"{info.index}\n".encode())


class PeerSamples:
    """Publish this worker's samples; read the other workers' for a merged ``/metrics``."""

    def __init__(self, server: Server, info: WorkerInfo) -> None:
        self.server = server
        self.info = info
        self.dir = Path(server.config.server.data_dir) / "run" / "metrics"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._publish_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            (self.dir / f"worker-{self.info.index}.json").unlink()

    async def _publish_forever(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(SHARE_INTERVAL)

    def publish(self) -> None:
        portal = self.server.portal
        data = {
            "pid": os.getpid(),
            "time": time.time(),
            "samples": [s.as_json() for s in self.server.samples()],
            "lockouts": portal.lockouts() if portal is not None else None,
        }
        lockouts = self.server.peer_lockouts
        if lockouts is not None:
            lockouts.apply_requests()
        path = self.dir / f"worker-{self.info.index}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def __call__(self) -> list[Sample]:
        """The samples of every other live worker (files of dead processes are skipped)."""
        return [
            Sample.from_json(s)
            for _, data in _published(self.dir, self.info)
            for s in data.get("samples", [])
        ]


class PeerLockouts:
    """Auth lock-outs across workers: each keeps its own tables (a client's attempts land on
    any of them), so ``POST /lockouts/clear`` in one worker leaves a request file the others
    apply at their next publish tick (within ``SHARE_INTERVAL``), and ``GET /lockouts`` adds
    what the others published."""

    #: Clear requests older than this are deleted by whoever sees them.
    KEEP = 60.0

    def __init__(self, server: Server, info: WorkerInfo) -> None:
        self.server = server
        self.info = info
        self.dir = Path(server.config.server.data_dir) / "run" / "metrics"
        self.started = time.time()
        self.applied: set[str] = set()

    def request_clear(self, network: str | None, user: str | None) -> None:
        name = f"clear-{time.time_ns()}-{os.getpid()}.json"
        self.applied.add(name)  # this worker has cleared already
        path = self.dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"network": network, "user": user}))
        os.replace(tmp, path)

    def apply_requests(self) -> None:
        portal = self.server.portal
        now = time.time()
        for path in sorted(self.dir.glob("clear-*.json")):
            try:
                age = now - path.stat().st_mtime
                if age > self.KEEP:
                    path.unlink()
                    continue
                if path.name in self.applied or path.stat().st_mtime < self.started:
                    continue
                request = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            self.applied.add(path.name)
            if portal is not None:
                portal.clear(network=request.get("network"), user=request.get("user"))

    def others(self) -> list[dict[str, Any]]:
        """What every other live worker published: its pid and lock-outs."""
        return [
            {"pid": data["pid"], "worker": i, **data["lockouts"]}
            for i, data in _published(self.dir, self.info)
            if data.get("lockouts") is not None
        ]


def _published(directory: Path, info: WorkerInfo) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, data) of what every other live worker last published (dead ones skipped)."""
    for i in range(info.count):
        if i == info.index:
            continue
        try:
            data = json.loads((directory / f"worker-{i}.json").read_text())
        except (OSError, ValueError):
            continue
        if _alive(int(data.get("pid", 0))):
            yield i, data


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_ports(config: Config) -> dict[str, int]:
    """A concrete port for every inet listener bound to port 0 (free for TCP and UDP alike)."""
    ports: dict[str, int] = {}
    for lc in config.listeners:
        if lc.bind.kind != "inet" or lc.bind.port != 0:
            continue
        host = lc.bind.host or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(100):
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                tcp.bind((host, 0))
                port = int(tcp.getsockname()[1])
                with socket.socket(family, socket.SOCK_DGRAM) as udp:
                    try:
                        udp.bind((host, port))
                    except OSError:
                        continue
            ports[lc.name] = port
            break
    return ports


class Supervisor:
    """Runs and watches ``count`` workers (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        config_path: str | None,
        argv: list[str],
        daemon: Daemon | None = None,
    ) -> None:
        self.config = config
        self.daemon = daemon
        self.notifier = Notifier.from_env()
        self.config_path = config_path
        self.count = config.server.workers
        self.argv = argv  # ``aionet run`` arguments to pass on (loop, logging overrides)
        self.ports = resolve_ports(config)
        self.secret = os.urandom(32)  # every worker's ``Server.secret``
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.ready: set[int] = set()
        self.stopping = False
        self._stopped = asyncio.Event()
        self.failed = False
        self.exit_codes: dict[int, int] = {}
        self.restarts = 0
        self._all_ready = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        loop.add_reader(read_fd, self._on_ready, read_fd)
        interrupts = 0

        def on_sigint() -> None:
            nonlocal interrupts
            interrupts += 1
            self._stop(signal.SIGINT)

        loop.add_signal_handler(signal.SIGTERM, self._stop, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        _log.info("supervisor_started", workers=self.count, pid=os.getpid(), ports=self.ports)
        if self.daemon is not None and self.daemon.pid_file is not None:
            self.daemon.pid_file.write()  # the workers bind (and drop privileges) themselves
        try:
            await asyncio.gather(*(self._keep(i, write_fd) for i in range(self.count)))
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            loop.remove_reader(read_fd)
            os.close(read_fd)
            os.close(write_fd)
        code = 0 if all(c == 0 for c in self.exit_codes.values()) and not self.failed else 1
        _log.info(
            "supervisor_stopped", exit_code=code, restarts=self.restarts, workers=self.exit_codes
        )
        return code

    async def _keep(self, index: int, ready_fd: int) -> None:
        """Run worker ``index`` until the supervisor stops, restarting it when it dies."""
        delay = BACKOFF_FIRST
        first = True
        while not self.stopping:
            started = time.monotonic()
            proc = await self._spawn(index, ready_fd)
            self.procs[index] = proc
            code = await proc.wait()
            self.procs.pop(index, None)
            was_ready = index in self.ready
            self.ready.discard(index)
            self.exit_codes[index] = code
            if self._stopped.is_set():
                break
            if first and not was_ready:
                # It never got as far as serving (a port taken, a handler failing to start):
                # restarting would fail the same way, so stop, as a single process would.
                _log.error("worker_failed_to_start", worker=index, exit_code=code)
                self.failed = True
                self._stop(signal.SIGTERM)
                break
            first = False
            if time.monotonic() - started >= BACKOFF_RESET:
                delay = BACKOFF_FIRST
            _log.error("worker_exited", worker=index, pid=proc.pid, exit_code=code,
                       restart_in=delay)  # fmt: skip
            self.restarts += 1
            await self._sleep_unless_stopping(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _sleep_unless_stopping(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # not wait_for: on 3.11 it can lose a cancel
                await self._stopped.wait()

    async def _spawn(self, index: int, ready_fd: int) -> asyncio.subprocess.Process:
        env = {
            **os.environ,
            "AIONET_WORKER": f"{index}/{self.count}",
            "AIONET_WORKER_PORTS": json.dumps(self.ports),
            "AIONET_READY_FD": str(ready_fd),
            "AIONET_WORKER_SECRET": self.secret.hex(),
        }
        env.pop("NOTIFY_SOCKET", None)  # readiness is the supervisor's to report
        argv = [sys.executable, "-m", "aionet", "run", *self.argv]
        if self.config_path is not None:
            argv[4:4] = ["-c", self.config_path]
        # A session of its own: a Ctrl-C on the terminal (or a signal to the supervisor's
        # process group) reaches the supervisor only, which forwards it once.
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, pass_fds=(ready_fd,), start_new_session=True
        )
        _log.info("worker_started", worker=index, pid=proc.pid)
        return proc

    def _on_ready(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        for line in data.split():
            self.ready.add(int(line))
        if not self._all_ready and len(self.ready) == self.count:
            self._all_ready = True
            _log.info("workers_ready", workers=self.count,
                      pids=sorted(p.pid for p in self.procs.values()))  # fmt: skip
            self.on_all_ready()

    def on_all_ready(self) -> None:
        """Every worker has bound its listeners once: tell systemd."""
        self.notifier.ready(f"serving with {self.count} workers")

    def _stop(self, sig: signal.Signals) -> None:
        if not self.stopping:
            _log.info("supervisor_stopping", signal=sig.name)
            self.notifier.stopping()
        self.stopping = True
        self._stopped.set()
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _reload(self) -> None:
        try:
            load_config(self.config_path)
        except ConfigError as exc:
            _log.error("reload_failed", errors=[str(i) for i in exc.issues])
            return
        _log.info("supervisor_reloading", workers=len(self.procs))
        # The workers reload on their own; systemd hears RELOADING then READY from us.
        self.notifier.reloading()
        self.notifier.ready(f"serving with {self.count} workers; reload forwarded")
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGHUP)
