"""The bench histogram: value error, percentiles, exact merging, encoding."""

from __future__ import annotations

import random

import pytest

from aionet.bench.hist import Histogram, HistogramError, bucket_of, bucket_value


def test_value_error_is_under_half_a_percent_from_1us_to_60s() -> None:
    rng = random.Random(7)
    values = [1_000, 1_001, 60_000_000_000, 59_999_999_999]
    values += [int(10 ** rng.uniform(3, 10.78)) for _ in range(20_000)]
    for v in values:
        assert abs(bucket_value(bucket_of(v)) - v) / v <= 0.004, v


def test_small_values_are_exact_and_buckets_are_monotonic() -> None:
    assert [bucket_value(bucket_of(v)) for v in range(256)] == list(range(256))
    indices = [bucket_of(v) for v in range(0, 5_000_000, 997)]
    assert indices == sorted(indices)


def test_percentiles_of_a_uniform_distribution() -> None:
    h = Histogram()
    for us in range(1, 10_001):  # 1 µs .. 10 ms
        h.record(us * 1000)
    assert h.total == 10_000
    assert h.percentile(50) == pytest.approx(5_000_000, rel=0.005)
    assert h.percentile(99) == pytest.approx(9_900_000, rel=0.005)
    assert h.percentile(99.99) == pytest.approx(9_999_000, rel=0.005)
    assert h.percentile(100) == h.max == 10_000_000
    assert h.min == 1000
    assert h.mean == pytest.approx(5_000_500, rel=1e-9)


def test_one_outlier_moves_only_the_top_percentiles() -> None:
    h = Histogram()
    h.record(1_000_000, 9_999)
    h.record(2_000_000_000)
    assert h.percentile(99.9) == pytest.approx(1_000_000, rel=0.005)
    assert h.percentile(100) == 2_000_000_000


def test_merge_is_exact_addition() -> None:
    rng = random.Random(3)
    a, b, both = Histogram(), Histogram(), Histogram()
    for i in range(5000):
        v = int(rng.lognormvariate(13, 2))
        (a if i % 3 else b).record(v)
        both.record(v)
    merged = a.copy()
    merged.add(b)
    assert merged == both
    assert merged.counts == both.counts
    assert merged.percentile(99.9) == both.percentile(99.9)


def test_encode_decode_round_trip_and_rejects_other_layouts() -> None:
    h = Histogram()
    for v in (5, 50_000, 5_000_000_000):
        h.record(v, 3)
    data = h.encode()
    assert Histogram.decode(data) == h
    with pytest.raises(HistogramError, match="layout"):
        Histogram.decode({**data, "sub_bucket_bits": 5})
    with pytest.raises(HistogramError, match="add up"):
        Histogram.decode({**data, "total": 10})
    with pytest.raises(HistogramError, match="malformed"):
        Histogram.decode({"unit": "ns"})


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.percentile(99) == 0 and h.mean == 0.0 and h.distribution() == []
