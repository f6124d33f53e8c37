"""The idle sweep's deadline wheel: records filed by the moment they may next need the sweep.

Time is cut into buckets ``WHEEL_TICK`` wide; a record waits in the bucket of its deadline
(idle timeout reached, or the end of its close grace), and a sweep opens only the buckets
that have come due — its work is the records that may be due, not every live connection.
Traffic never moves a record: a protocol only stores ``last_active``, and the sweep files a
record that was active since again under its new deadline when its bucket opens.

A bucket is a list (8 bytes a record, where a set costs 30-80): a record leaves its bucket
lazily — ``unfile`` forgets the bucket and counts the entry dead, and a bucket more than half
dead is compacted, so released records are not held until their bucket opens. An entry is
current only while its record's ``due`` is that bucket.
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["WHEEL_TICK", "Bucket", "DeadlineWheel"]

#: The width (seconds) of one bucket. A record filed near the end of one may be looked at a
#: sweep early and filed again; wider buckets mean fewer buckets and more such early looks.
WHEEL_TICK = 0.25
#: A bucket shorter than this is never compacted (opening it soon is cheaper).
_COMPACT_MIN = 64


class Bucket:
    """The records filed under one tick (some of them stale entries, counted in ``dead``)."""

    __slots__ = ("dead", "records")

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.dead = 0


class DeadlineWheel:
    """Buckets by tick number, and a heap of the tick numbers that have a bucket.

    Filed objects need a ``due`` attribute (their ``Bucket``, or None).
    """

    __slots__ = ("_heap", "_ticks")

    def __init__(self) -> None:
        self._ticks: dict[int, Bucket] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        """How many records are filed (stale entries not counted)."""
        return sum(len(b.records) - b.dead for b in self._ticks.values())

    def file(self, rec: Any, deadline: float) -> None:
        """File ``rec`` under ``deadline`` (leaving the bucket it was in, if another)."""
        tick = int(deadline // WHEEL_TICK)
        bucket = self._ticks.get(tick)
        if bucket is None:
            bucket = self._ticks[tick] = Bucket()
            heapq.heappush(self._heap, tick)
        elif rec.due is bucket:
            return
        if rec.due is not None:
            self.unfile(rec)
        bucket.records.append(rec)
        rec.due = bucket

    @staticmethod
    def unfile(rec: Any) -> None:
        """``rec`` leaves its bucket (released, or filed elsewhere)."""
        bucket: Bucket = rec.due
        rec.due = None
        bucket.dead += 1
        records = bucket.records
        if bucket.dead * 2 > len(records) >= _COMPACT_MIN:
            bucket.records = [r for r in records if r.due is bucket]
            bucket.dead = 0

    def pop_due(self, now: float) -> list[Any]:
        """Take out every record filed under a tick up to ``now``'s (each once, unfiled)."""
        due = int(now // WHEEL_TICK)
        heap, ticks = self._heap, self._ticks
        opened: list[Any] = []
        while heap and heap[0] <= due:
            bucket = ticks.pop(heapq.heappop(heap))
            for rec in bucket.records:
                if rec.due is bucket:
                    rec.due = None
                    opened.append(rec)
        return opened
