"""Metric samples: the values handlers and the core report, read at scrape time.

A leaf module (no aionet imports) so the handler API can name ``Sample`` without importing the
metrics machinery; ``aionet.core.metrics`` renders and merges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Kind", "Labels", "Sample", "labels"]

Kind = Literal["counter", "gauge", "histogram"]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One labelled value of one metric family (for a histogram, its buckets, sum and count).

    ``name`` has no ``_total`` suffix for counters (prometheus_client adds it).
    """

    name: str
    kind: Kind
    help: str
    labels: Labels
    value: float | dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "help": self.help,
            "labels": [list(p) for p in self.labels],
            "value": self.value,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        labels = tuple((str(k), str(v)) for k, v in data["labels"])
        return cls(data["name"], data["kind"], data["help"], labels, data["value"])


def labels(**pairs: str) -> Labels:
    return tuple(pairs.items())
