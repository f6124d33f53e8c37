"""A log-bucketed latency histogram: exact counts, bounded value error, mergeable by addition.

Values are integers in nanoseconds. The bucket layout is HDR-like: values below
``2 ** (SUB_BITS + 1)`` ns get a bucket each; above that, every power of two is split into
``2 ** SUB_BITS`` equal buckets. A bucket's width is therefore at most ``1 / 2 ** SUB_BITS`` of
its lower bound, and reporting its midpoint keeps the value error at most half that: with
``SUB_BITS = 7`` that is 0.39 %, everywhere from 1 ns to hours. (The issue asks for ≤ 1 % from
1 µs to 60 s.)

Two histograms with the same layout merge exactly: their bucket counts add. The JSON form is a
sparse list of ``[bucket, count]`` pairs plus the layout parameters, so results from other
processes and other machines merge without loss.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SUB_BITS", "Histogram", "HistogramError"]

SUB_BITS = 7
_SUB = 1 << SUB_BITS  # buckets per power of two above the linear range
_LINEAR = _SUB << 1  # values below this have a bucket each
#: Values above this (about 73 minutes) are clamped into the top bucket; latencies are bounded
#: by the per-request timeout long before.
MAX_VALUE_NS = (1 << 42) - 1


class HistogramError(ValueError):
    """An encoded histogram that cannot be decoded or merged."""


def bucket_of(value: int) -> int:
    """The bucket index of ``value`` nanoseconds (clamped to ``[0, MAX_VALUE_NS]``)."""
    if value < _LINEAR:
        return max(value, 0)
    if value > MAX_VALUE_NS:
        value = MAX_VALUE_NS
    shift = value.bit_length() - SUB_BITS - 1
    return (shift << SUB_BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``(lowest, highest)`` value (inclusive) that falls into bucket ``index``."""
    if index < _LINEAR:
        return index, index
    shift = (index >> SUB_BITS) - 1
    low = (index - (shift << SUB_BITS)) << shift
    return low, low + (1 << shift) - 1


def bucket_value(index: int) -> int:
    """The value a bucket stands for: its midpoint."""
    low, high = bucket_bounds(index)
    return (low + high + 1) // 2


class Histogram:
    """Counts of latencies (ns) in log buckets, plus the exact min, max and sum."""

    __slots__ = ("counts", "max", "min", "sum", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    def record(self, value: int, count: int = 1) -> None:
        """Add ``count`` observations of ``value`` nanoseconds."""
        if value < _LINEAR:
            index = max(value, 0)
        else:
            if value > MAX_VALUE_NS:
                value = MAX_VALUE_NS
            shift = value.bit_length() - SUB_BITS - 1
            index = (shift << SUB_BITS) + (value >> shift)
        counts = self.counts
        counts[index] = counts.get(index, 0) + count
        if self.total == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.total += count
        self.sum += value * count

    def add(self, other: Histogram) -> None:
        """Merge ``other`` into this histogram (exact: bucket counts add)."""
        if not other.total:
            return
        counts = self.counts
        for index, n in other.counts.items():
            counts[index] = counts.get(index, 0) + n
        self.min = other.min if not self.total else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.total += other.total
        self.sum += other.sum

    def copy(self) -> Histogram:
        clone = Histogram()
        clone.add(self)
        return clone

    def percentile(self, p: float) -> int:
        """The value (ns) at percentile ``p`` (0-100); 0 for an empty histogram.

        ``p = 100`` is the exact maximum; other percentiles are the midpoint of the bucket that
        holds the ``ceil(p/100 * total)``-th smallest value, clamped to ``[min, max]``.
        """
        if not self.total:
            return 0
        if p >= 100:
            return self.max
        rank = max(1, -(-int(p * self.total * 1_000_000) // 100_000_000))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(max(bucket_value(index), self.min), self.max)
        return self.max  # pragma: no cover - rank <= total

    def percentiles(self, ps: list[float]) -> dict[float, int]:
        return {p: self.percentile(p) for p in ps}

    @property
    def mean(self) -> float:
        return self.sum / self.total if self.total else 0.0

    def distribution(self) -> list[tuple[float, int]]:
        """``(cumulative fraction, value ns)`` per occupied bucket, for percentile plots."""
        out: list[tuple[float, int]] = []
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            out.append((seen / self.total, min(bucket_value(index), self.max)))
        return out

    # -- encoding ------------------------------------------------------------------------------

    def encode(self) -> dict[str, Any]:
        """A JSON-able form: layout, exact aggregates and sparse ``[bucket, count]`` pairs."""
        return {
            "unit": "ns",
            "sub_bucket_bits": SUB_BITS,
            "total": self.total,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "buckets": [[i, self.counts[i]] for i in sorted(self.counts)],
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> Histogram:
        """The inverse of ``encode``.

        Raises:
            HistogramError: another layout or unit, or inconsistent counts.
        """
        try:
            if data["unit"] != "ns" or data["sub_bucket_bits"] != SUB_BITS:
                raise HistogramError(
                    f"histogram layout {data['unit']}/{data['sub_bucket_bits']} bits is not "
                    f"ns/{SUB_BITS} bits"
                )
            hist = cls()
            for index, n in data["buckets"]:
                hist.counts[int(index)] = hist.counts.get(int(index), 0) + int(n)
            hist.total, hist.sum = int(data["total"]), int(data["sum"])
            hist.min, hist.max = int(data["min"]), int(data["max"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, HistogramError):
                raise
            raise HistogramError(f"malformed histogram: {exc!r}") from None
        if sum(hist.counts.values()) != hist.total:
            raise HistogramError("malformed histogram: bucket counts do not add up to total")
        return hist

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]
