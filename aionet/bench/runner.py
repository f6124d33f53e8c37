"""Drive a target: connection tasks in one event loop per worker process, results merged.

Load models:

* **closed** (``rate is None``): each of the ``connections`` tasks sends its next request as
  soon as the previous one answered. Latency is measured from the actual send.
* **open** (``rate`` requests/s): each connection has a fixed schedule (``connections / rate``
  seconds apart, connections staggered), as wrk2 does. A request whose time has come is sent
  as soon as its connection is free, and its latency is measured from the *intended* send time,
  so a stalled server shows up in the percentiles (coordinated omission corrected). One
  refinement over wrk2: when the connection was idle at the intended time, the request is
  measured from its actual send, so the event loop's timer granularity (about 1 ms with epoll
  and libuv) is not reported as server latency. The latency from the actual send is kept too
  (``Result.uncorrected``).

A watchdog aborts requests that outlive ``timeout``; the next request opens a new session.

Where the clock runs: sessions stamp a request's send time just before the write
(``Session.sent_ns``) and its end when the bytes that complete the reply are received
(``Session.done_ns``), so building the request and parsing the reply (client work, slower in
Python than in C) are not counted as latency. wrk starts its clock just before the write too
(and stops it when its parser has the whole response); h2load starts it when the request is
queued for the write.

Warm-up requests are performed but not recorded. ``-n`` counts recorded requests (successes
and errors); ``-d`` is the measured time after the warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue as queue_mod
import signal
import socket
import ssl
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .hist import Histogram
from .registry import resolve
from .result import Result, merge

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from .target import Session, Target

__all__ = ["Plan", "Progress", "WorkerRun", "classify", "run", "split"]

#: The longest error detail kept (one per kind: the first seen).
DETAIL_LIMIT = 200
CONNECT_BACKOFF = 0.05  # seconds between failed connects of one connection task
PROGRESS_EVERY = 0.5


@dataclass(frozen=True)
class Plan:
    connections: int
    rate: float | None = None
    duration: float | None = None
    requests: int | None = None
    warmup: float = 0.0
    timeout: float = 5.0


@dataclass
class Progress:
    """What the live line shows: totals so far over all workers."""

    elapsed: float
    requests: int
    errors: int
    latency: Histogram
    warming: bool = False


def describe(exc: BaseException) -> str:
    """What the error table shows beside a kind: the exception's own words (bounded)."""
    from .target import BenchError

    if isinstance(exc, BenchError):
        return exc.detail[:DETAIL_LIMIT]
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:DETAIL_LIMIT]


def classify(exc: BaseException, *, connecting: bool) -> str:
    """The error-table kind of an exception a session or a connect raised."""
    from .target import BenchError

    if isinstance(exc, BenchError):
        return exc.kind
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, TimeoutError):
        return "connect timeout" if connecting else "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect refused"
    if isinstance(exc, socket.gaierror):
        return "dns resolution"
    if connecting and isinstance(exc, OSError):
        return "connect error"
    if isinstance(exc, OSError | EOFError | asyncio.IncompleteReadError):
        return "closed"
    return f"error {type(exc).__name__}"


class WorkerRun:
    """One process's share of the load, in one event loop."""

    def __init__(
        self,
        target: Target,
        plan: Plan,
        *,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.target = target
        self.plan = plan
        self.progress = progress
        self.result = Result(
            protocol=getattr(target, "name", type(target).__name__),
            target=target.describe(),
            model="closed" if plan.rate is None else "open",
            connections=plan.connections,
            rate=plan.rate,
            workers=1,
            started=0.0,
            duration=0.0,
            warmup=plan.warmup,
            uncorrected=None if plan.rate is None else Histogram(),
            sources=[socket.gethostname()],
        )
        # One request loop per stream a connection carries (``Target.streams``: HTTP/2's
        # ``--streams``), each with its own Session; the target has the loops share connections.
        n = self._loops = plan.connections * max(1, getattr(target, "streams", 1))
        self._sessions: list[Session | None] = [None] * n
        self._inflight = [0] * n  # send time of the pending request, 0 when idle
        self._timed_out = [False] * n
        self._recorded = 0
        self._done: asyncio.Event | None = None
        self._t0 = self._measure_start = 0
        self._measure_end: int | None = None

    # -- the run -------------------------------------------------------------------------------

    async def run(self, should_stop: Callable[[], bool] | None = None) -> Result:
        """Run until the duration, the request count, or ``should_stop()`` (polled) ends it."""
        plan = self.plan
        done = self._done = asyncio.Event()
        self._t0 = time.perf_counter_ns()
        self._measure_start = self._t0 + int(plan.warmup * 1e9)
        started_wall = time.time() + plan.warmup
        loop = asyncio.get_running_loop()
        if plan.duration is not None:
            self._measure_end = self._measure_start + int(plan.duration * 1e9)
            loop.call_later(plan.warmup + plan.duration, done.set)
        if plan.requests is not None and plan.requests <= 0:
            done.set()
        tasks = [asyncio.create_task(self._connection(i)) for i in range(self._loops)]
        helpers = [asyncio.create_task(self._watchdog(should_stop))]
        if self.progress is not None:
            helpers.append(asyncio.create_task(self._report_progress()))
        try:
            await done.wait()
        finally:
            stopped = time.perf_counter_ns()
            for task in (*tasks, *helpers):
                task.cancel()
            await asyncio.gather(*tasks, *helpers, return_exceptions=True)
            for session in self._sessions:
                if session is not None:
                    session.abort()
        end = stopped if self._measure_end is None else min(stopped, self._measure_end)
        self.result.started = started_wall
        self.result.duration = max(0, end - self._measure_start) / 1e9
        return self.result

    async def _connection(self, slot: int) -> None:
        plan, target = self.plan, self.target
        session: Session | None = None
        next_ns = interval = 0
        if plan.rate is not None:
            interval = int(self._loops / plan.rate * 1e9)
            next_ns = self._t0 + interval * slot // self._loops
        intended = idle_since = 0
        clock = time.perf_counter_ns
        done = self._done
        try:
            # ``done`` as well as the cancel: on Python 3.11 a cancel that lands as an inner
            # ``wait_for`` completes is lost (gh-86296), and a session must not run on unseen.
            while done is None or not done.is_set():
                if interval:
                    intended, next_ns = next_ns, next_ns + interval
                    delay = intended - clock()
                    if delay > 0:
                        await asyncio.sleep(delay / 1e9)
                sent = clock()
                if session is None or not session.open:
                    if session is not None:
                        session.abort()
                    session = self._sessions[slot] = None
                    try:
                        async with asyncio.timeout(plan.timeout):
                            session = await target.connect()
                    except (OSError, EOFError, TimeoutError, ssl.SSLError) as exc:
                        self._error(classify(exc, connecting=True), clock(), exc)
                        await asyncio.sleep(CONNECT_BACKOFF)
                        continue
                    except Exception as exc:  # a target's own failure during its handshake
                        self._error(classify(exc, connecting=True), clock(), exc)
                        await asyncio.sleep(CONNECT_BACKOFF)
                        continue
                    self._sessions[slot] = session
                    if not target.connect_per_request:
                        sent = clock()
                self._timed_out[slot] = False
                self._inflight[slot] = sent
                session.sent_ns = session.done_ns = None
                try:
                    n = await session.request()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    now = clock()
                    self._inflight[slot] = 0
                    if self._timed_out[slot]:
                        kind = session.timeout_kind
                        session.open = False
                        self._error(kind, now)
                    else:
                        kind = classify(exc, connecting=False)
                        if not hasattr(exc, "kind"):
                            session.open = False
                        self._error(kind, now, exc)
                    idle_since = now
                    continue
                now = clock()
                self._inflight[slot] = 0
                # From the write to the arrival of the reply's last bytes, as stamped by the
                # session; without a connection per request (whose connect counts, as with
                # ab), the stamps taken here around request() are only the fallback.
                actual = sent if target.connect_per_request else session.sent_ns or sent
                end = session.done_ns or now
                # Open model: if this connection was still busy with an earlier request when
                # this one was due, the wait is the server's doing and counts (coordinated
                # omission); if it was idle, any lateness is our own timer's and does not.
                start = intended if intended and idle_since > intended else actual
                idle_since = end
                self._record(n, end, end - start, end - actual)
        finally:
            if session is not None:
                session.abort()

    def _recordable(self, now: int) -> bool:
        if now < self._measure_start:
            return False
        return self._measure_end is None or now <= self._measure_end

    def _take(self, n: int) -> int:
        limit = self.plan.requests
        if limit is None:
            return n
        n = min(n, limit - self._recorded)
        self._recorded += max(n, 0)
        if self._recorded >= limit and self._done is not None:
            self._done.set()
        return n

    def _record(self, n: int, now: int, latency: int, uncorrected: int) -> None:
        if not self._recordable(now):
            return
        n = self._take(n)
        if n <= 0:
            return
        result = self.result
        result.requests += n
        result.latency.record(latency, n)
        if result.uncorrected is not None:
            result.uncorrected.record(uncorrected, n)
        second = (now - self._measure_start) // 1_000_000_000
        timeline = result.timeline
        while len(timeline) <= second:
            timeline.append([0, 0])
        timeline[second][0] += n

    def _error(self, kind: str, now: int, exc: BaseException | None = None) -> None:
        if not self._recordable(now) or self._take(1) <= 0:
            return
        self.result.add_error(kind, detail=None if exc is None else describe(exc))
        self.result.add_timeline((now - self._measure_start) // 1_000_000_000, 0, 1)

    async def _watchdog(self, should_stop: Callable[[], bool] | None) -> None:
        timeout_ns = int(self.plan.timeout * 1e9)
        tick = min(0.1, self.plan.timeout / 4)
        while True:
            await asyncio.sleep(tick)
            if should_stop is not None and should_stop():
                self.result.interrupted = True
                assert self._done is not None
                self._done.set()
                return
            now = time.perf_counter_ns()
            for slot, sent in enumerate(self._inflight):
                if sent and now - sent > timeout_ns and not self._timed_out[slot]:
                    session = self._sessions[slot]
                    if session is not None:
                        self._timed_out[slot] = True
                        session.abort()

    async def _report_progress(self) -> None:
        assert self.progress is not None
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            now = time.perf_counter_ns()
            self.progress(
                Progress(
                    elapsed=max(0, now - self._measure_start) / 1e9,
                    requests=self.result.requests,
                    errors=self.result.error_count,
                    latency=self.result.latency,
                    warming=now < self._measure_start,
                )
            )


# -- processes -------------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _worker_plans(plan: Plan, workers: int) -> list[Plan]:
    conns = split(plan.connections, workers)
    reqs = split(plan.requests, workers) if plan.requests is not None else [None] * workers
    return [
        Plan(
            connections=c,
            rate=None if plan.rate is None else plan.rate * c / plan.connections,
            duration=plan.duration,
            requests=r,
            warmup=plan.warmup,
            timeout=plan.timeout,
        )
        for c, r in zip(conns, reqs, strict=True)
    ]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency on every supported OS
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _worker_main(
    name: str,
    args: argparse.Namespace,
    plan: Plan,
    index: int,
    out: Any,
    stop: Any,
    go: Any,
) -> None:
    """Body of a worker process: build the target, wait for the start signal, run, send back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        target = resolve(name).from_args(args)
        target.prepare()
        out.put(("ready", index, None))
        go.wait()

        def progress(p: Progress) -> None:
            state = (p.elapsed, p.requests, p.errors, p.latency.encode(), p.warming)
            out.put(("progress", index, state))

        work = WorkerRun(target, plan, progress=progress)
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            result = runner.run(work.run(stop.is_set))
        result.protocol = name
        out.put(("result", index, result.to_json()))
    except BaseException as exc:
        out.put(("error", index, f"{exc!r}\n{traceback.format_exc()}"))


class WorkerFailed(RuntimeError):
    """A worker process raised or died."""


def run(
    name: str,
    args: argparse.Namespace,
    plan: Plan,
    *,
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
) -> Result:
    """Run the bench (in this process when ``workers == 1``); SIGINT stops it cleanly.

    Raises:
        WorkerFailed: a worker process raised or died.
    """
    workers = max(1, min(workers, plan.connections))
    if workers == 1:
        return _run_here(name, args, plan, progress)
    return _run_processes(name, args, _worker_plans(plan, workers), progress)


def _run_here(
    name: str, args: argparse.Namespace, plan: Plan, progress: Callable[[Progress], None] | None
) -> Result:
    target = resolve(name).from_args(args)
    target.prepare()
    stop = False

    def on_sigint() -> None:
        nonlocal stop
        stop = True

    async def main() -> Result:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, NotImplementedError):  # not the main thread
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            return await WorkerRun(target, plan, progress=progress).run(lambda: stop)
        finally:
            with contextlib.suppress(ValueError, NotImplementedError):
                loop.remove_signal_handler(signal.SIGINT)

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        result = runner.run(main())
    result.protocol = name
    return result


def _run_processes(
    name: str,
    args: argparse.Namespace,
    plans: list[Plan],
    progress: Callable[[Progress], None] | None,
) -> Result:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no inherited loop or threads; same on every OS
    out = ctx.Queue()
    stop, go = ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=_worker_main, args=(name, args, p, i, out, stop, go), daemon=True)
        for i, p in enumerate(plans)
    ]
    interrupts = 0

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        stop.set()
        if interrupts > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        for proc in procs:
            proc.start()
        return _collect(procs, out, stop, go, progress)
    finally:
        signal.signal(signal.SIGINT, previous)
        for proc in procs:
            proc.join(2)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def _collect(
    procs: list[Any], out: Any, stop: Any, go: Any, progress: Callable[[Progress], None] | None
) -> Result:
    n = len(procs)
    ready = 0
    results: dict[int, Result] = {}
    latest: dict[int, tuple[float, int, int, Histogram, bool]] = {}
    while len(results) < n:
        try:
            kind, index, payload = out.get(timeout=0.25)
        except queue_mod.Empty:
            dead = [p for i, p in enumerate(procs) if i not in results and not p.is_alive()]
            if dead:
                raise WorkerFailed(f"worker process exited with code {dead[0].exitcode}") from None
            continue
        if kind == "ready":
            ready += 1
            if ready == n:
                go.set()
        elif kind == "progress" and progress is not None:
            elapsed, req, err, hist, warming = payload
            latest[index] = (elapsed, req, err, Histogram.decode(hist), warming)
            total = Histogram()
            for v in latest.values():
                total.add(v[3])
            progress(
                Progress(
                    elapsed=max(v[0] for v in latest.values()),
                    requests=sum(v[1] for v in latest.values()),
                    errors=sum(v[2] for v in latest.values()),
                    latency=total,
                    warming=any(v[4] for v in latest.values()),
                )
            )
        elif kind == "result":
            results[index] = Result.from_json(payload)
        elif kind == "error":
            stop.set()
            go.set()
            raise WorkerFailed(f"worker {index} failed: {payload}")
    merged, _ = merge([results[i] for i in range(n)], simultaneous=True)
    merged.sources = sorted(set(merged.sources))
    return merged


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
