"""The bench command line without a network: a custom target by reference, the live line, the
summary's corrected/uncorrected rows."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from aionet.bench import BenchError, Session, Target
from aionet.bench import cli as bench_cli
from aionet.bench.hist import Histogram
from aionet.bench.report import LiveLine, summary
from aionet.bench.result import Result
from aionet.bench.runner import Progress


class _Null(Session):
    def __init__(self, fail_every: int) -> None:
        self.n = 0
        self.fail_every = fail_every

    async def request(self) -> int:
        await asyncio.sleep(0)  # yields like a request on the network would
        self.n += 1
        if self.fail_every and self.n % self.fail_every == 0:
            raise BenchError("made up")
        return 1

    def abort(self) -> None:
        self.open = False


class NullTarget(Target):
    """A plugin target that needs no server: every ``--fail-every``-th request fails."""

    name = "null"

    def __init__(self, fail_every: int) -> None:
        self.fail_every = fail_every

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fail-every", type=int, default=0)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NullTarget:
        return cls(args.fail_every)

    async def connect(self) -> Session:
        return _Null(self.fail_every)

    def describe(self) -> dict[str, object]:
        return {"address": "nowhere"}


REF = "tests.unit.test_bench_cli:NullTarget"


def test_a_target_named_by_reference_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "n.json"
    argv = [REF, "-c", "2", "-n", "100", "--workers", "1", "-q", "--json", str(out)]
    assert bench_cli.main([*argv, "--fail-every", "10", "--fail-on-error"]) == 1
    data = json.loads(out.read_text())
    assert data["requests"] == 90 and data["errors"] == {"made up": 10}
    assert "made up" in capsys.readouterr().out
    assert bench_cli.main([*argv, "--fail-on-error"]) == 0


def test_live_line_only_on_a_terminal() -> None:
    h = Histogram()
    h.record(2_000_000)
    buf = io.StringIO()
    with LiveLine(Console(file=buf, force_terminal=True, width=120)) as live:
        live(Progress(elapsed=1.5, requests=1234, errors=2, latency=h))
    assert "1,234 req" in buf.getvalue() and "2 errors" in buf.getvalue()
    quiet = io.StringIO()
    with LiveLine(Console(file=quiet, force_terminal=False)) as live:
        live(Progress(elapsed=1.5, requests=1234, errors=2, latency=h))
    assert quiet.getvalue() == ""


def test_summary_shows_uncorrected_only_when_asked() -> None:
    r = Result("http", {"address": "a"}, "open", 4, 100.0, 1, 0.0, 1.0, 0.0, requests=1)
    r.latency.record(5_000_000)
    r.uncorrected = Histogram()
    r.uncorrected.record(1_000_000)
    for asked in (False, True):
        buf = io.StringIO()
        summary(r, Console(file=buf, width=120), uncorrected=asked)
        text = buf.getvalue()
        assert "corrected" in text and ("uncorrected" in text) is asked
        assert "5ms" in text and ("1ms" in text) is asked
