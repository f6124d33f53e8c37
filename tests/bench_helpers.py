"""Run a bench target in the test's own event loop, from a command line like the CLI's."""

from __future__ import annotations

from aionet.bench.cli import build_parser
from aionet.bench.registry import resolve
from aionet.bench.result import Result
from aionet.bench.runner import Plan, WorkerRun


async def bench(argv: list[str], plan: Plan) -> Result:
    """``bench(["echo", "127.0.0.1:7", "--size", "8"], Plan(connections=2, requests=50))``."""
    args = build_parser([argv[0]]).parse_args(argv)
    target = resolve(argv[0]).from_args(args)
    target.prepare()
    result = await WorkerRun(target, plan).run()
    result.protocol = argv[0]
    return result
