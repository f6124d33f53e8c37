"""The passive-port pool (``aionet.core.passive``): ranges, caps per address and per user,
accepting only the control connection's peer, the split between workers."""

from __future__ import annotations

import asyncio
import socket

import pytest

from aionet.core.passive import (
    PassiveCapped,
    PassiveExhausted,
    PassivePorts,
    fair_share,
    parse_port_range,
)


def test_port_range_parsing() -> None:
    assert parse_port_range("30000-30100") == (30000, 30100)
    assert parse_port_range("0") == (0, 0)
    assert parse_port_range("40000") == (40000, 40000)
    for bad in ("x", "10-5", "0-10", "70000"):
        with pytest.raises(ValueError, match="port"):
            parse_port_range(bad)


def _free_range(n: int) -> tuple[int, int]:
    """n consecutive ports that are free right now (best effort)."""
    for base in range(47000, 60000, 97):
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + n - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


async def test_pool_is_bounded_and_recovers() -> None:
    pool = PassivePorts(_free_range(2))
    a = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    b = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    assert {a.port, b.port} == {pool.low, pool.high}
    with pytest.raises(PassiveExhausted):
        pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    a.close()
    a.close()  # idempotent
    c = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    assert c.port == a.port
    pool.close_all()
    assert len(pool) == 0 and pool.stats()["exhausted"] == 1


def test_default_caps_are_a_quarter_of_the_pool_at_least_2() -> None:
    assert [fair_share(n) for n in (1, 2, 8, 20, 100, 1024)] == [1, 2, 2, 5, 25, 256]
    pool = PassivePorts((30000, 30019))  # nothing bound: the caps are arithmetic
    assert (pool.per_ip, pool.per_user) == (5, 5)
    pool = PassivePorts((30000, 30002), per_ip=10, per_user=1)  # never more than the pool
    assert (pool.per_ip, pool.per_user) == (3, 1)
    assert PassivePorts(limit=1024).per_ip == 256


async def test_pool_caps_each_address_and_user_and_counts_them_back() -> None:
    pool = PassivePorts(per_ip=2, per_user=3)
    a = pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="alice")
    b = pool.open("127.0.0.1", "::ffff:127.0.0.1", timeout=5, user="alice")  # the same host
    with pytest.raises(PassiveCapped):
        pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="bob")  # address at its cap
    c = pool.open("127.0.0.1", "127.0.0.2", timeout=5, user="alice")
    with pytest.raises(PassiveCapped):
        pool.open("127.0.0.1", "127.0.0.3", timeout=5, user="alice")  # user at its cap
    anonymous = [pool.open("127.0.0.1", "127.0.0.4", timeout=5) for _ in range(2)]
    d = pool.open("127.0.0.1", "127.0.0.3", timeout=5, user="bob")  # others are served
    assert pool.stats()["capped"] == 2 and pool.stats()["exhausted"] == 0 and len(pool) == 6
    waiting = asyncio.create_task(a.accept())
    await asyncio.sleep(0)  # one turn of the loop: the accept() task runs up to its wait
    a.close()  # counted back at once, while the cancelled accept() still holds the socket
    e = pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="alice")
    with pytest.raises(asyncio.CancelledError):
        await waiting
    b.close()
    b.close()  # idempotent: counted back once
    f = pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="bob")
    with pytest.raises(PassiveCapped):
        pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="bob")
    pool.close_all()
    assert len(pool) == 0 and not pool._by_ip and not pool._by_user
    del c, d, e, f, anonymous


async def test_accept_only_the_control_peer_and_time_out() -> None:
    pool = PassivePorts()
    passive = pool.open("127.0.0.1", "127.0.0.2", timeout=0.5)  # expects another address
    loop = asyncio.get_running_loop()
    intruder = socket.socket()
    intruder.setblocking(False)
    accept = asyncio.create_task(passive.accept())
    await loop.sock_connect(intruder, ("127.0.0.1", passive.port))
    with pytest.raises(TimeoutError):
        await accept
    intruder.close()
    assert pool.stats()["rejected_peers"] == 1 and pool.stats()["timeouts"] == 1
    assert passive.closed and len(pool) == 0


async def test_accept_takes_the_peer_and_closing_cancels_a_wait() -> None:
    pool = PassivePorts()
    passive = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setblocking(False)
    accept = asyncio.create_task(passive.accept())
    await loop.sock_connect(client, ("127.0.0.1", passive.port))
    conn = await accept
    assert conn.getpeername() == client.getsockname()
    conn.close()
    client.close()
    waiting = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    task = asyncio.create_task(waiting.accept())
    await asyncio.sleep(0)  # one turn of the loop: the accept() task runs up to its wait
    waiting.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert waiting.closed and len(pool) == 0


def test_workers_split_the_passive_range_without_overlap() -> None:
    from aionet.core.passive import worker_share

    for low, high, count in ((30000, 30100, 2), (50000, 50099, 3), (40000, 40006, 7)):
        shares = [worker_share((low, high), i, count) for i in range(count)]
        ports = [p for a, b in shares for p in range(a, b + 1)]
        assert sorted(ports) == list(range(low, high + 1))  # covered, no port twice
        assert all(a <= b for a, b in shares)
    assert worker_share((30000, 30100), 0, 1) == (30000, 30100)
    assert worker_share((0, 0), 1, 4) == (0, 0)  # ephemeral: the kernel keeps them apart
    with pytest.raises(ValueError, match="fewer ports than the 3 workers"):
        worker_share((30000, 30001), 0, 3)
