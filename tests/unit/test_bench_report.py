"""Bench results: JSON schema, merge, compare, HTML, option parsing, the fd-limit guard."""

from __future__ import annotations

import argparse
import json
import re
import resource
from pathlib import Path

import pytest

from aionet.bench import cli as bench_cli
from aionet.bench.clients.http import HttpTarget, parse_expect
from aionet.bench.hist import Histogram
from aionet.bench.registry import resolve
from aionet.bench.report import compare, render_html
from aionet.bench.result import Result, ResultError, merge
from aionet.bench.target import parse_hostport
from aionet.errors import RegistryError


def make_result(requests: int, latency_ns: int, errors: int = 0, duration: float = 1.0) -> Result:
    r = Result(
        protocol="http",
        target={"address": "127.0.0.1:1"},
        model="closed",
        connections=4,
        rate=None,
        workers=1,
        started=1e9,
        duration=duration,
        warmup=0.0,
        sources=["a"],
    )
    r.requests = requests
    r.latency.record(latency_ns, requests)
    if errors:
        r.add_error("status 500", errors)
    r.add_timeline(0, requests, errors)
    return r


def test_json_round_trip(tmp_path: Path) -> None:
    r = make_result(100, 2_000_000, errors=3)
    r.uncorrected = Histogram()
    r.uncorrected.record(1000, 100)
    path = tmp_path / "r.json"
    r.save(path)
    data = json.loads(path.read_text())
    assert data["schema"] == "aionet-bench/1"
    assert data["latency_ns"]["p99"] == pytest.approx(2_000_000, rel=0.005)
    back = Result.load(path)
    assert back.to_json() == r.to_json()


def test_load_rejects_other_documents(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"schema": "other/9"}')
    with pytest.raises(ResultError, match="not an aionet bench result"):
        Result.load(path)
    path.write_text("not json")
    with pytest.raises(ResultError):
        Result.load(path)


def test_merge_adds_counts_errors_histograms_and_timelines() -> None:
    a, b = make_result(100, 1_000_000, errors=1), make_result(50, 3_000_000, errors=2)
    b.sources = ["b"]
    m, how = merge([a, b])
    assert how.startswith("2 runs overlapping in time")
    assert m.requests == 150 and m.errors == {"status 500": 3}
    assert m.latency.total == 150 and m.workers == 2 and m.connections == 8
    assert m.timeline == [[150, 3]]
    assert m.duration == 1.0 and m.throughput == 150
    assert m.sources == ["a", "b"]
    other = make_result(1, 1)
    other.model = "open"
    with pytest.raises(ResultError, match="cannot merge"):
        merge([a, other])


def test_merge_spans_runs_that_started_apart_and_refuses_runs_that_never_overlapped() -> None:
    a, b = make_result(100, 1_000_000), make_result(100, 1_000_000)
    b.started += 0.5  # overlapping for half of each: 200 requests in 1.5 s
    m, _ = merge([a, b])
    assert m.duration == pytest.approx(1.5) and m.throughput == pytest.approx(200 / 1.5)
    later = make_result(100, 1_000_000)
    later.started += 60  # a minute after a ended: adding throughputs would double it
    with pytest.raises(ResultError, match=r"did not overlap in time .*--sequential"):
        merge([a, later])
    seq, how = merge([a, later], sequential=True)
    assert how.startswith("2 sequential runs")
    assert seq.duration == 2.0 and seq.throughput == 100
    together, _ = merge([a, later], simultaneous=True)  # a run's own workers: not checked
    assert together.requests == 200


def test_error_details_keep_the_first_words_of_each_kind(tmp_path: Path) -> None:
    a = make_result(0, 1)
    a.add_error("tls", detail="SSLCertVerificationError: certificate verify failed")
    a.add_error("tls", detail="a later one")
    b = make_result(0, 1)
    b.add_error("tls", detail="from b")
    b.add_error("timeout")
    assert a.error_details == {"tls": "SSLCertVerificationError: certificate verify failed"}
    path = tmp_path / "a.json"
    a.save(path)
    assert Result.load(path).error_details == a.error_details
    m, _ = merge([a, b])
    assert m.error_details == {"tls": "SSLCertVerificationError: certificate verify failed"}
    assert m.errors == {"tls": 3, "timeout": 1}


def test_compare_flags_regressions_beyond_the_threshold() -> None:
    base = make_result(1000, 1_000_000)
    same = make_result(950, 1_050_000)  # -5 % throughput, +5 % latency
    worse = make_result(700, 1_500_000, errors=10)
    assert not any(row.regressed for row in compare(base, same, 0.10))
    flagged = {row.metric for row in compare(base, worse, 0.10) if row.regressed}
    assert flagged == {
        "throughput req/s",
        "latency p50",
        "latency p90",
        "latency p99",
        "latency p99.9",
        "error rate",
    }


def test_compare_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    make_result(1000, 1_000_000).save(base)
    make_result(500, 1_000_000).save(new)
    assert bench_cli.main(["compare", str(base), str(base)]) == 0
    assert bench_cli.main(["compare", str(base), str(new)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert bench_cli.main(["compare", str(base), str(new), "--threshold", "60%"]) == 0


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    r = make_result(100, 2_000_000, errors=5)
    r.uncorrected = Histogram()
    r.uncorrected.record(10_000, 100)
    page = render_html(r)
    assert page.count("<svg") == 2 and "uncorrected" in page and "status 500" in page
    # nothing to fetch: no script, stylesheet or image from anywhere (namespaces aside)
    assert not re.search(r'(src|href)="(?!#)', page.replace('xlink:href="#', ""))
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page  # inline SVG elements
    assert "<script" not in page


def test_option_parsers() -> None:
    assert bench_cli.duration("500ms") == 0.5 and bench_cli.duration("2m") == 120
    with pytest.raises(argparse.ArgumentTypeError):
        bench_cli.duration("fast")
    assert parse_hostport("[::1]:53", 1) == ("::1", 53)
    assert parse_hostport("example.test", 25) == ("example.test", 25)
    with pytest.raises(ValueError, match="bad address"):
        parse_hostport("host:0", 1)
    assert parse_expect(["200", "3xx"]) == {200, *range(300, 400)}
    with pytest.raises(ValueError, match="--expect"):
        parse_expect(["2x"])


def test_http_target_encodes_requests_once() -> None:
    t = HttpTarget(
        ["http://h.test:8080/a?x=1", "http://h.test:8080/b"],
        method="post",
        headers=["X-A: 1"],
        body=b"hi",
        keepalive=False,
    )
    first = t.encoded[0][0]
    assert first.startswith(b"POST /a?x=1 HTTP/1.1\r\nHost: h.test:8080\r\nX-A: 1\r\n")
    assert b"Content-Length: 2\r\nConnection: close\r\n\r\nhi" in first
    assert t.connect_per_request
    with pytest.raises(ValueError, match="same scheme"):
        HttpTarget(["http://a.test/", "http://b.test/"])


def test_registry_names_and_errors() -> None:
    assert resolve("echo").name == "echo"
    with pytest.raises(RegistryError, match="unknown bench target"):
        resolve("gopher")
    with pytest.raises(RegistryError, match="not a bench target"):
        resolve("aionet.bench.hist:Histogram")


def test_fd_limit_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: calls.append(limits))
    assert bench_cli.ensure_fd_limit(2000) is None
    assert calls == [(2000, 4096)]
    message = bench_cli.ensure_fd_limit(100_000)
    assert message is not None and "limit is 1024 (hard 4096)" in message


def test_max_connections_guard(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_cli.main(["echo", "127.0.0.1:9", "-c", "20", "--max-connections", "10"])
    assert exc.value.code == 2
    assert "over --max-connections" in capsys.readouterr().err
