"""The dashboard's pieces without a server: tickets, the frame built from samples, and the
feed's latest-frame-only delivery to a dashboard that reads slowly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aionet.admin.dashboard import Feed, check_ticket, make_ticket, snapshot
from aionet.core.metrics import Histogram, merge
from aionet.core.samples import Sample, labels

SECRET = b"s" * 32


def test_tickets_expire_and_are_bound_to_the_secret() -> None:
    ticket = make_ticket(SECRET, now=1000.0, ttl=60)
    assert check_ticket(SECRET, ["aionet.dashboard.v1", ticket], now=1059.0)
    assert not check_ticket(SECRET, [ticket], now=1061.0)  # expired
    assert not check_ticket(b"t" * 32, [ticket], now=1000.0)  # another server's
    assert not check_ticket(SECRET, [], now=1000.0)
    prefix, expiry, mac = ticket.split(".")
    assert not check_ticket(SECRET, [f"{prefix}.{int(expiry) + 3600}.{mac}"], now=1000.0)
    assert not check_ticket(SECRET, [f"{prefix}.{expiry}.{'0' * len(mac)}"], now=1000.0)
    assert not check_ticket(SECRET, [f"{prefix}.x{expiry}.{mac}"], now=1000.0)
    assert not check_ticket(SECRET, [f"{prefix}.{'9' * 40}.{mac}"], now=1000.0)


def _worker(open_: int, refused: dict[str, int], ok: int, latencies: list[float]) -> list[Sample]:
    hist = Histogram()
    for t in latencies:
        hist.observe(t)
    web = labels(listener="web")
    out = [
        Sample("aionet_connections_open", "gauge", "", web, open_),
        Sample("aionet_connections_accepted", "counter", "", web, 10),
        Sample("aionet_http_requests", "counter", "", (*web, ("code", "2xx")), ok),
        Sample("aionet_http_request_duration_seconds", "histogram", "", web, hist.value()),
        Sample("aionet_smtp_messages_accepted", "counter", "", labels(listener="mx"), 3),
        Sample("aionet_logins", "counter", "", labels(protocol="smtp", result="ok"), 1),
        Sample("aionet_workers", "gauge", "", (), 1),
        Sample("aionet_ready", "gauge", "", (), 1),
    ]
    out += [
        Sample("aionet_connections_refused", "counter", "", labels(listener="web", reason=r), n)
        for r, n in refused.items()
    ]
    return out


def test_a_frame_sums_workers_as_metrics_does() -> None:
    samples = merge([
        _worker(2, {"rate": 1, "max_connections": 2}, 5, [0.001, 0.2]),
        _worker(3, {"rate": 4}, 7, [0.003]),
    ])  # fmt: skip
    frame = snapshot(samples, {"web": "http", "mx": "smtp", "quiet": "echo"})
    assert frame["workers"] == 2 and frame["ready"] == 2
    web = frame["listeners"]["web"]
    assert web["protocol"] == "http"
    assert (web["open"], web["accepted"], web["refused"]) == (5, 20, 7)  # reasons summed
    assert web["http"] == {"2xx": 12}
    assert web["latency"]["counts"][-1] == 3  # cumulative buckets: the last is the count
    assert web["latency"]["bounds"][-1] == "+Inf"
    assert frame["listeners"]["mx"] == {"protocol": "smtp", "smtp_accepted": 6}
    assert frame["listeners"]["quiet"] == {"protocol": "echo"}  # a listener with no samples
    json.dumps(frame)  # it goes over the wire as JSON


async def test_a_slow_dashboard_gets_the_latest_frame_not_a_backlog() -> None:
    counter = 0

    def sample() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        return {"n": counter}

    feed = Feed(sample, interval=0.01)
    gate = asyncio.Event()
    sent: list[int] = []
    disconnect = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        await gate.wait()  # a client that does not read: the write blocks
        sent.append(json.loads(message["text"])["n"])

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    task = asyncio.create_task(feed.serve(receive, send))
    await asyncio.sleep(0.3)  # ~30 samples while the first send is blocked
    assert counter >= 10
    gate.set()
    await asyncio.sleep(0.05)
    missed_then = counter
    disconnect.set()
    await asyncio.wait_for(task, 5)
    # The first frame, then the latest one: not one per sample taken meanwhile.
    assert sent[0] == 1
    assert len(sent) < missed_then / 2
    assert sent[1] >= missed_then - 6
    assert feed._sampler is None and not feed.subscribers
