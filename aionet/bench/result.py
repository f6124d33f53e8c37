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

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    def add_error(self, kind: str, n: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + n

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


def merge(results: Sequence[Result]) -> Result:
    """Combine runs that happened at the same time (workers, machines) into one.

    Counts, errors, histograms and timelines add exactly. The duration is the longest of the
    runs (they ran side by side), so throughput is the sum of what was sent per second.

    Raises:
        ResultError: no results, or runs of different protocols or load models.
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
    merged = Result(
        protocol=first.protocol,
        target=first.target,
        model=first.model,
        connections=sum(r.connections for r in results),
        rate=None if first.rate is None else sum(r.rate or 0.0 for r in results),
        workers=sum(r.workers for r in results),
        started=min(r.started for r in results),
        duration=max(r.duration for r in results),
        warmup=max(r.warmup for r in results),
        uncorrected=None if first.uncorrected is None else Histogram(),
        interrupted=any(r.interrupted for r in results),
    )
    for r in results:
        merged.requests += r.requests
        for kind, n in r.errors.items():
            merged.add_error(kind, n)
        merged.latency.add(r.latency)
        if merged.uncorrected is not None and r.uncorrected is not None:
            merged.uncorrected.add(r.uncorrected)
        for second, (req, err) in enumerate(r.timeline):
            merged.add_timeline(second, req, err)
        merged.sources.extend(r.sources)
    return merged
