"""A bench result: what one run (or a merge of runs) measured, and its versioned JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .hist import Histogram, HistogramError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["PERCENTILES", "SCHEMA", "Result", "ResultError", "merge"]

SCHEMA = "aionet-bench/1"
PERCENTILES = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0]


class ResultError(ValueError):
    """A JSON file that is not a bench result of this schema, or results that cannot merge."""


@dataclass
class Result:
    """Counts are exact; ``latency`` is from the intended send time in open mode (corrected
    for coordinated omission) and from the actual send time in closed mode; ``uncorrected`` is
    the actual-send-time histogram of an open-mode run (None in closed mode)."""

    protocol: str
    target: dict[str, Any]
    model: str  # "closed" | "open"
    connections: int
    rate: float | None
    workers: int
    started: float  # unix time the measurement began
    duration: float  # measured seconds (warm-up excluded)
    warmup: float
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    uncorrected: Histogram | None = None
    #: per second of the measurement: ``[requests, errors]``
    timeline: list[list[int]] = field(default_factory=list)
    interrupted: bool = False
    sources: list[str] = field(default_factory=list)
    #: The first detail seen for each error kind (the exception's words), for the summary.
    error_details: dict[str, str] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    def add_error(self, kind: str, n: int = 1, *, detail: str | None = None) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + n
        if detail and kind not in self.error_details:
            self.error_details[kind] = detail

    def add_timeline(self, second: int, requests: int, errors: int) -> None:
        while len(self.timeline) <= second:
            self.timeline.append([0, 0])
        self.timeline[second][0] += requests
        self.timeline[second][1] += errors

    # -- JSON ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        pct = {_pkey(p): self.latency.percentile(p) for p in PERCENTILES}
        return {
            "schema": SCHEMA,
            "protocol": self.protocol,
            "target": self.target,
            "model": self.model,
            "connections": self.connections,
            "rate": self.rate,
            "workers": self.workers,
            "sources": self.sources,
            "started": self.started,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "interrupted": self.interrupted,
            "requests": self.requests,
            "errors": dict(sorted(self.errors.items())),
            "error_details": dict(sorted(self.error_details.items())),
            "throughput_rps": self.throughput,
            # derived, for people and jq; merging and comparing use the histograms
            "latency_ns": {**pct, "mean": round(self.latency.mean)},
            "histogram": self.latency.encode(),
            "uncorrected_histogram": self.uncorrected.encode() if self.uncorrected else None,
            "timeline": self.timeline,
        }

    @classmethod
    def from_json(cls, data: Any) -> Result:
        """Raises: ResultError: another schema or a malformed document."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ResultError(f"not an aionet bench result (schema {found!r}, want {SCHEMA!r})")
        try:
            unc = data.get("uncorrected_histogram")
            return cls(
                protocol=str(data["protocol"]),
                target=dict(data["target"]),
                model=str(data["model"]),
                connections=int(data["connections"]),
                rate=None if data["rate"] is None else float(data["rate"]),
                workers=int(data["workers"]),
                started=float(data["started"]),
                duration=float(data["duration_s"]),
                warmup=float(data["warmup_s"]),
                requests=int(data["requests"]),
                errors={str(k): int(v) for k, v in data["errors"].items()},
                latency=Histogram.decode(data["histogram"]),
                uncorrected=None if unc is None else Histogram.decode(unc),
                timeline=[[int(a), int(b)] for a, b in data["timeline"]],
                interrupted=bool(data.get("interrupted", False)),
                sources=[str(s) for s in data.get("sources", [])],
                error_details={str(k): str(v) for k, v in data.get("error_details", {}).items()},
            )
        except (KeyError, TypeError, ValueError, HistogramError) as exc:
            raise ResultError(f"malformed bench result: {exc}") from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Result:
        """Raises: ResultError (also for unreadable or non-JSON files)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ResultError(f"{path}: {exc}") from None
        try:
            return cls.from_json(data)
        except ResultError as exc:
            raise ResultError(f"{path}: {exc}") from None


def _pkey(p: float) -> str:
    return "max" if p >= 100 else f"p{p:g}"


def merge(
    results: Sequence[Result], *, sequential: bool = False, simultaneous: bool = False
) -> tuple[Result, str]:
    """Combine runs into one, and say how their throughput was combined.

    Counts, errors, histograms and timelines add exactly. Runs that overlapped in time (workers,
    machines started together) ran side by side: the duration is the span from the first start
    to the last end, so throughput is everything completed per second of that span. Runs that
    did not all overlap are refused (adding their throughputs would count the same capacity
    twice), unless ``sequential``: then the duration is the sum of theirs, and throughput is
    their combined rate while running. ``simultaneous``: the caller started the runs together
    (the workers of one run): not checked.

    Raises:
        ResultError: no results, runs of different protocols or load models, or runs that
            did not overlap without ``sequential``.
    """
    if not results:
        raise ResultError("nothing to merge")
    first = results[0]
    for other in results[1:]:
        if (other.protocol, other.model) != (first.protocol, first.model):
            raise ResultError(
                f"cannot merge a {other.protocol}/{other.model} run into a "
                f"{first.protocol}/{first.model} run"
            )
    start = min(r.started for r in results)
    end = max(r.started + r.duration for r in results)
    latest_start = max(r.started for r in results)
    earliest_end = min(r.started + r.duration for r in results)
    overlap = latest_start < earliest_end
    if sequential:
        duration = sum(r.duration for r in results)
        how = f"{len(results)} sequential runs: throughput over their summed {duration:.2f}s"
    elif overlap or simultaneous or len(results) == 1:
        duration = end - start
        how = f"{len(results)} runs overlapping in time: throughput over their {duration:.2f}s span"
    else:
        gap = latest_start - earliest_end
        raise ResultError(
            f"the runs did not overlap in time (one started {gap:.1f}s after another ended): "
            "merge adds up simultaneous runs; pass --sequential to combine runs made one after "
            "another"
        )
    merged = Result(
        protocol=first.protocol,
        target=first.target,
        model=first.model,
        connections=sum(r.connections for r in results),
        rate=None if first.rate is None else sum(r.rate or 0.0 for r in results),
        workers=sum(r.workers for r in results),
        started=start,
        duration=duration,
        warmup=max(r.warmup for r in results),
        uncorrected=None if first.uncorrected is None else Histogram(),
        interrupted=any(r.interrupted for r in results),
    )
    for r in results:
        merged.requests += r.requests
        for kind, n in r.errors.items():
            merged.add_error(kind, n, detail=r.error_details.get(kind))
        merged.latency.add(r.latency)
        if merged.uncorrected is not None and r.uncorrected is not None:
            merged.uncorrected.add(r.uncorrected)
        for second, (req, err) in enumerate(r.timeline):
            merged.add_timeline(second, req, err)
        merged.sources.extend(r.sources)
    return merged, how
