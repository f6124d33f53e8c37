"""``aionet bench``: TARGET-NAME ... | merge FILE... | compare BASE NEW.

Exit codes as for every aionet command: 0 ok, 2 usage error, 1 failure — including a run with
errors under ``--fail-on-error`` and a ``compare`` that finds a regression.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
from pathlib import Path

from rich.console import Console

from ..errors import RegistryError
from .registry import available, resolve
from .report import LiveLine, compare, render_compare, render_html, summary
from .result import Result, ResultError, merge
from .runner import Plan, WorkerFailed, default_workers, run

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FD_MARGIN = 64  # descriptors a worker needs besides its connections (loop, pipes, files)

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def duration(text: str) -> float:
    """``"10s"``, ``"500ms"``, ``"2m"``, ``"1.5"`` (seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(ms|s|m|h|)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 10s, 500ms, 2m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _percent(text: str) -> float:
    value = float(text.rstrip("%"))
    return value / 100


def _add_load_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("load")
    g.add_argument(
        "-c", "--connections", type=_positive_int, default=10, help="connections (default 10)"
    )
    g.add_argument(
        "--rate",
        type=float,
        help="open model: requests/s on a fixed schedule, latency from the intended send time",
    )
    g.add_argument("-d", "--duration", type=duration, help="measured time (default 10s)")
    g.add_argument("-n", "--requests", type=_positive_int, help="stop after N requests")
    g.add_argument(
        "--warmup",
        type=duration,
        help="unrecorded time before measuring (default: 10%% of -d, at most 2s; 0 with -n only)",
    )
    g.add_argument("--timeout", type=duration, default=5.0, help="per-request timeout (default 5s)")
    g.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="processes, each with its own event loop (default: all cores)",
    )
    g.add_argument(
        "--max-connections",
        type=_positive_int,
        default=10_000,
        help="refuse to open more than this many connections (default 10000)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, metavar="FILE", help="write the result as JSON")
    o.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    o.add_argument(
        "--uncorrected",
        action="store_true",
        help="open model: also show latency from the actual send time",
    )
    o.add_argument("--fail-on-error", action="store_true", help="exit 1 when any request failed")
    o.add_argument("-q", "--quiet", action="store_true", help="no live progress line")


def build_parser(names: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aionet bench",
        description="load generator: closed (-c) or open (--rate) model, exact percentiles",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    sub = parser.add_subparsers(dest="bench_command", metavar="TARGET")
    sub.required = True
    for name in names:
        cls = resolve(name)
        p = sub.add_parser(name, help=cls.help or name)
        cls.add_arguments(p)
        _add_load_arguments(p)
        p.set_defaults(target_name=name)
    m = sub.add_parser("merge", help="combine JSON results of simultaneous runs into one")
    m.add_argument("files", nargs="+", type=Path, metavar="FILE")
    m.add_argument("--json", type=Path, metavar="FILE", help="write the merged result")
    m.add_argument("--html", type=Path, metavar="FILE", help="write an HTML report")
    m.add_argument("--uncorrected", action="store_true", help="also show uncorrected latency")
    m.add_argument("--fail-on-error", action="store_true", help="exit 1 when any request failed")
    m.add_argument(
        "--sequential",
        action="store_true",
        help="the runs did not overlap in time: report their combined throughput over their "
        "summed durations (without it, runs that did not overlap are refused)",
    )
    c = sub.add_parser("compare", help="deltas between two results; exit 1 on a regression")
    c.add_argument("base", type=Path)
    c.add_argument("new", type=Path)
    c.add_argument(
        "--threshold",
        type=_percent,
        default=0.10,
        help="relative change counted as a regression (default 10%%)",
    )
    return parser


def _names(argv: list[str]) -> list[str]:
    """Built-in and plugin names, plus a ``module:Class`` given on this command line."""
    names = available()
    extra = [a for a in argv[:1] if ":" in a and not a.startswith("-")]
    return names + extra


def main(argv: list[str]) -> int:
    try:
        parser = build_parser(_names(argv))
    except RegistryError as exc:
        print(f"aionet bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        if args.bench_command == "merge":
            return _cmd_merge(args)
        if args.bench_command == "compare":
            return _cmd_compare(args)
        return _cmd_run(args, parser)
    except Exception as exc:
        if args.debug:
            raise
        print(f"aionet bench: {exc!r} (run with --debug for a traceback)", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # a second Ctrl-C: the workers were terminated
        print("aionet bench: aborted", file=sys.stderr)
        return EXIT_FAILURE


def _plan(args: argparse.Namespace) -> Plan:
    if args.duration is None and args.requests is None:
        args.duration = 10.0
    warmup = args.warmup
    if warmup is None:
        warmup = 0.0 if args.duration is None else min(2.0, args.duration / 10)
    if args.rate is not None and args.rate <= 0:
        raise ValueError("--rate must be positive")
    if args.rate is not None and getattr(args, "stream", False):
        raise ValueError("--stream is a closed-model mode; drop --rate")
    if args.connections > args.max_connections:
        raise ValueError(
            f"-c {args.connections} is over --max-connections {args.max_connections}; raise "
            "--max-connections if you mean it"
        )
    return Plan(
        connections=args.connections,
        rate=args.rate,
        duration=args.duration,
        requests=args.requests,
        warmup=warmup,
        timeout=args.timeout,
    )


def ensure_fd_limit(needed: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` if the hard limit allows; else a message."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard == resource.RLIM_INFINITY or hard >= needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            return None
        except (ValueError, OSError):
            pass
    return (
        f"{needed} file descriptors needed per process but the limit is {soft} (hard {hard}); "
        "raise it (ulimit -n, LimitNOFILE=, or the container's nofile) or use fewer "
        "connections per worker"
    )


def _cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        plan = _plan(args)
        resolve(args.target_name).from_args(args)  # option errors before any process starts
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    workers = args.workers or default_workers()
    workers = max(1, min(workers, plan.connections))
    per_worker = -(-plan.connections // workers)
    problem = ensure_fd_limit(per_worker + FD_MARGIN)
    if problem:
        print(f"aionet bench: {problem}", file=sys.stderr)
        return EXIT_USAGE
    out = Console(highlight=False)
    try:
        with LiveLine() as live:
            result = run(
                args.target_name,
                args,
                plan,
                workers=workers,
                progress=None if args.quiet else live,
            )
    except WorkerFailed as exc:
        if args.debug:
            raise
        print(f"aionet bench: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_FAILURE
    return _finish(result, args, out)


def _finish(result: Result, args: argparse.Namespace, out: Console) -> int:
    summary(result, out, uncorrected=args.uncorrected)
    failed = _nothing_completed(result)
    if args.json is not None:
        result.save(args.json)
    if args.html is not None:
        try:
            page = render_html(result)
        except ImportError:
            print(
                "aionet bench: --html needs matplotlib: pip install 'aionet[report]'",
                file=sys.stderr,
            )
            return 2
        args.html.write_text(page)
    if failed is not None:
        print(f"aionet bench: {failed}", file=sys.stderr)
        return EXIT_FAILURE
    if args.fail_on_error and result.error_count:
        return EXIT_FAILURE
    return EXIT_OK


def _nothing_completed(result: Result) -> str | None:
    """Why a run that completed no request failed (None when some did): never a quiet 0."""
    if result.requests:
        return None
    if not result.errors:
        return (
            f"no request completed in {result.duration:.2f}s and none failed: the run was too "
            "short for one request (raise -d or -n), or every reply is slower than --timeout"
        )
    kind, n = max(result.errors.items(), key=lambda kv: kv[1])
    detail = result.error_details.get(kind)
    return f"no request completed: {result.error_count:,} errors, most {kind!r} ({n:,})" + (
        f": {detail}" if detail else ""
    )


def _cmd_merge(args: argparse.Namespace) -> int:
    try:
        result, how = merge([Result.load(f) for f in args.files], sequential=args.sequential)
    except ResultError as exc:
        print(f"aionet bench merge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"aionet bench merge: {how}", file=sys.stderr)
    return _finish(result, args, Console(highlight=False))


def _cmd_compare(args: argparse.Namespace) -> int:
    try:
        base, new = Result.load(args.base), Result.load(args.new)
    except ResultError as exc:
        print(f"aionet bench compare: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = compare(base, new, args.threshold)
    render_compare(rows, Console(highlight=False), args.threshold)
    return EXIT_FAILURE if any(r.regressed for r in rows) else EXIT_OK
