"""Metrics: read at scrape time from the counters the core and handlers already keep.

Nothing here runs on a hot path. The connection manager's per-listener counters, the auth
portal's outcome counters and whatever a handler reports from ``Handler.metrics()`` are turned
into plain ``Sample`` values when ``/metrics`` is asked for; samples from several worker
processes are summed (``merge``) before they are rendered in the Prometheus text exposition
format by ``prometheus_client``. A sample is JSON-able, so workers can hand theirs over as files.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from .samples import Kind, Labels, Sample, labels

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from prometheus_client.metrics_core import Metric

    from ..auth.portal import Portal
    from .connections import ConnectionManager

__all__ = [
    "CONTENT_TYPE",
    "Histogram",
    "Labels",
    "Sample",
    "labels",
    "merge",
    "process_samples",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

@dataclass
class Histogram:
    """A fixed-bucket latency histogram: ``observe`` is one bisect and two adds."""

    bounds: Sequence[float] = (
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
    )
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def value(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append([bound, running])
        return {"buckets": cumulative, "sum": self.total, "count": running}


#: Per-listener samples from the connection manager's counters: kind and help text.
_LISTENER_METRICS: dict[str, tuple[Kind, str]] = {
    "aionet_connections_open": ("gauge", "Live connections."),
    "aionet_connections_accepted": ("counter", "Connections admitted."),
    "aionet_connections_closed": ("counter", "Connections closed."),
    "aionet_connections_idle_closed": ("counter", "Connections closed by the idle timeout."),
    "aionet_received_bytes": ("counter", "Bytes received."),
    "aionet_sent_bytes": ("counter", "Bytes sent."),
    "aionet_datagrams_received": ("counter", "Datagrams received."),
    "aionet_datagrams_sent": ("counter", "Datagrams sent."),
    "aionet_handler_errors": ("counter", "Unhandled handler exceptions."),
    "aionet_tls_handshake_failures": ("counter", "Failed TLS handshakes."),
}


class Measured(Protocol):
    """Anything that reports its own samples (every ``Handler``)."""

    def metrics(self) -> list[Sample]:
        """Its samples, read at scrape time."""


def process_samples(
    manager: ConnectionManager,
    handlers: Mapping[str, Measured],
    portal: Portal | None,
    *,
    ready: bool,
    reload_counts: Mapping[str, int],
) -> list[Sample]:
    """Every sample of this process: connections, bytes, refusals, auth, handlers, state.

    ``Server.samples()`` calls it with its own parts; nothing here reaches into the server."""
    out: list[Sample] = []
    add = out.append
    live_bytes: dict[str, list[int]] = {}
    for rec in manager.live.values():
        pair = live_bytes.setdefault(rec.slot.name, [0, 0])
        pair[0] += rec.bytes_in
        pair[1] += rec.bytes_out
    for name, slot in manager.slots.items():
        st = slot.stats
        lb = labels(listener=name)
        bytes_in, bytes_out = live_bytes.get(name, (0, 0))
        values = {
            "aionet_connections_open": slot.count,
            "aionet_connections_accepted": st.accepted,
            "aionet_connections_closed": st.closed,
            "aionet_connections_idle_closed": st.idle_closed,
            "aionet_received_bytes": st.bytes_in + bytes_in,
            "aionet_sent_bytes": st.bytes_out + bytes_out,
            "aionet_datagrams_received": st.datagrams_in,
            "aionet_datagrams_sent": st.datagrams_out,
            "aionet_handler_errors": st.handler_errors,
            "aionet_tls_handshake_failures": st.tls_failures,
        }
        for metric, value in values.items():
            kind, help_text = _LISTENER_METRICS[metric]
            add(Sample(metric, kind, help_text, lb, value))
        for reason, count in sorted(st.refused.items()):
            add(
                Sample(
                    "aionet_connections_refused",
                    "counter",
                    "Connections (or datagrams) refused, by reason.",
                    labels(listener=name, reason=reason),
                    count,
                )
            )
    for name, handler in handlers.items():
        for sample in handler.metrics():
            add(sample if ("listener", name) in sample.labels else _with_listener(sample, name))
    if portal is not None:
        for protocol, outcomes in sorted(portal.counters.by_protocol.items()):
            for outcome, count in outcomes.items():
                add(
                    Sample(
                        "aionet_logins",
                        "counter",
                        "Authentication attempts by result.",
                        labels(protocol=protocol, result=outcome),
                        count,
                    )
                )
    add(Sample("aionet_ready", "gauge", "1 when /readyz answers 200.", (), float(ready)))
    for result, count in sorted(reload_counts.items()):
        add(
            Sample(
                "aionet_reloads",
                "counter",
                "Configuration reloads by result.",
                labels(result=result),
                count,
            )
        )
    add(Sample("aionet_workers", "gauge", "Worker processes reporting.", (), 1))
    return out


def _with_listener(sample: Sample, name: str) -> Sample:
    return Sample(
        sample.name, sample.kind, sample.help, (("listener", name), *sample.labels), sample.value
    )


def merge(groups: Iterable[Iterable[Sample]]) -> list[Sample]:
    """Sum samples of the same name and labels across workers (histograms bucket-wise)."""
    merged: dict[tuple[str, Labels], Sample] = {}
    for group in groups:
        for s in group:
            key = (s.name, s.labels)
            prev = merged.get(key)
            if prev is None:
                merged[key] = s
            elif isinstance(s.value, dict) and isinstance(prev.value, dict):
                merged[key] = Sample(
                    s.name, s.kind, s.help, s.labels, _add_hist(prev.value, s.value)
                )
            elif not isinstance(s.value, dict) and not isinstance(prev.value, dict):
                merged[key] = Sample(s.name, s.kind, s.help, s.labels, prev.value + s.value)
    return list(merged.values())


def _add_hist(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    counts = {bound: n for bound, n in a["buckets"]}
    for bound, n in b["buckets"]:
        counts[bound] = counts.get(bound, 0) + n
    ordered = sorted(counts.items(), key=lambda kv: float(kv[0]))
    return {
        "buckets": [[k, v] for k, v in ordered],
        "sum": a["sum"] + b["sum"],
        "count": a["count"] + b["count"],
    }


class _SampleCollector:
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        order: list[str] = []
        for s in self.samples:
            family = families.get(s.name)
            names = [k for k, _ in s.labels]
            if family is None:
                family = _family(s, names)
                families[s.name] = family
                order.append(s.name)
            values = [v for _, v in s.labels]
            if isinstance(s.value, dict):
                assert isinstance(family, HistogramMetricFamily)
                family.add_metric(
                    values, [(b, float(n)) for b, n in s.value["buckets"]], s.value["sum"]
                )
            else:
                family.add_metric(values, float(s.value))  # type: ignore[attr-defined]
        for name in order:
            yield families[name]


def _family(s: Sample, names: list[str]) -> Metric:
    if s.kind == "counter":
        return CounterMetricFamily(s.name, s.help, labels=names)
    if s.kind == "gauge":
        return GaugeMetricFamily(s.name, s.help, labels=names)
    return HistogramMetricFamily(s.name, s.help, labels=names)


def render(samples: list[Sample], process: bool = True) -> bytes:
    """The Prometheus text exposition of ``samples`` (plus this process's CPU/memory/fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SampleCollector(sorted(samples, key=lambda s: s.name)))
    if process:
        ProcessCollector(namespace="aionet", registry=registry)
    return generate_latest(registry)
