"""The auth portal: back-off, lock-out and recovery on a fake clock; per-IP and per-name
independently; pair forgiveness on success; serialized attempts; bounded tables; safe logs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from argon2 import PasswordHasher
from pydantic import ValidationError

from aionet.auth import Credentials, Portal, ThrottleConfig, User, UserStore
from aionet.auth.portal import network_key

ALICE = User("alice", ("mail",))
BOB = User("bob", ())
PASSWORDS = {"alice": ("right", ALICE), "bob": ("bobpw", BOB)}


class FakeClock:
    """Monotonic time that only moves when told to; ``sleep`` records the delay and returns."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)  # no time passes; the caller still yields, as it would

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeVerifier:
    """Checks passwords from a dict; counts checks; yields to the loop like a thread would."""

    def __init__(self) -> None:
        self.checks = 0

    async def verify_async(self, name: str, password: str) -> User | None:
        self.checks += 1
        for _ in range(3):
            await asyncio.sleep(0)  # a few turns of the loop, like a thread's round trip
        expected = PASSWORDS.get(name)
        return expected[1] if expected is not None and expected[0] == password else None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier() -> FakeVerifier:
    return FakeVerifier()


@pytest.fixture
def portal(clock: FakeClock, verifier: FakeVerifier) -> Portal:
    return Portal(verifier, ThrottleConfig(), clock=clock, sleep=clock.sleep)


async def login(
    portal: Portal, user: str, password: str, ip: str | None = "192.0.2.1", protocol: str = "pop3"
) -> User | None:
    return await portal.authenticate(Credentials(user, password), protocol, ip)


async def fail(
    portal: Portal, times: int, user: str = "alice", ip: str | None = "192.0.2.1"
) -> None:
    for _ in range(times):
        assert await login(portal, user, "wrong", ip) is None


# -- back-off and lock-out ----------------------------------------------------------------------


async def test_right_and_wrong_passwords(portal: Portal, clock: FakeClock) -> None:
    assert await login(portal, "alice", "right") == ALICE
    assert await login(portal, "alice", "wrong") is None
    assert await login(portal, "nobody", "right") is None
    assert clock.sleeps == []  # the first failures are answered at once


async def test_backoff_grows_then_locks_out_without_checking(
    portal: Portal, clock: FakeClock, verifier: FakeVerifier
) -> None:
    await fail(portal, 5)
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert verifier.checks == 5
    assert await login(portal, "alice", "right") is None  # locked out: right password refused
    assert verifier.checks == 5  # ...without being checked
    assert clock.sleeps[-1] == 8.0  # after max_delay
    assert (portal.counters.failed, portal.counters.locked_out) == (5, 1)


async def test_lockout_ends_after_its_duration(portal: Portal, clock: FakeClock) -> None:
    await fail(portal, 5)
    clock.advance(899)
    assert await login(portal, "alice", "right") is None
    clock.advance(1)
    assert await login(portal, "alice", "right") == ALICE


async def test_refused_attempts_do_not_extend_the_lockout(portal: Portal, clock: FakeClock) -> None:
    await fail(portal, 5)
    for _ in range(15):
        clock.advance(59)
        assert await login(portal, "alice", "wrong") is None
    clock.advance(900 - 15 * 59)
    assert await login(portal, "alice", "right") == ALICE


async def test_failures_expire_after_the_window(portal: Portal, clock: FakeClock) -> None:
    await fail(portal, 4)
    clock.advance(301)
    clock.sleeps.clear()
    await fail(portal, 4)  # counted afresh: 4 < 5, and the first two are free again
    assert clock.sleeps == [0.5, 1.0]
    assert await login(portal, "alice", "right") == ALICE


async def test_failures_in_a_sliding_window(portal: Portal, clock: FakeClock) -> None:
    await fail(portal, 3)
    clock.advance(200)
    await fail(portal, 1)
    clock.advance(101)  # the first three are now older than 300 s, the fourth is not
    await fail(portal, 3)  # 1 + 3 = 4 in the window: not locked yet
    assert await login(portal, "alice", "right") == ALICE


async def test_a_lockout_restarts_the_count(clock: FakeClock) -> None:
    config = ThrottleConfig(window="1h", lockout="1m")  # failures outlive the lock-out
    portal = Portal(FakeVerifier(), config, clock=clock, sleep=clock.sleep)
    await fail(portal, 5)
    clock.advance(60)
    clock.sleeps.clear()
    await fail(portal, 1)
    assert clock.sleeps == []
    assert await login(portal, "alice", "right") == ALICE


# -- per network and per name, independently ----------------------------------------------------


async def test_spraying_names_from_one_address_locks_the_address(portal: Portal) -> None:
    for i in range(5):
        assert await login(portal, f"guess{i}", "wrong", "198.51.100.7") is None
    assert await login(portal, "alice", "right", "198.51.100.7") is None
    assert await login(portal, "alice", "right", "198.51.100.8") == ALICE


async def test_guessing_one_name_from_many_addresses_delays_but_never_locks_the_name(
    portal: Portal, clock: FakeClock, verifier: FakeVerifier
) -> None:
    """Anyone who knows the name must not be able to keep its owner out (issue 13.7): the
    name-wide count only delays failed replies, up to max_delay."""
    for i in range(12):
        assert await login(portal, "alice", "wrong", f"203.0.113.{i}") is None
    assert clock.sleeps == [0.5, 1.0] + [2.0] * 8  # bounded (the name counts max_failures)
    clock.sleeps.clear()
    assert await login(portal, "alice", "right", "192.0.2.1") == ALICE  # checked, not refused
    assert clock.sleeps == []  # and not delayed
    assert verifier.checks == 13
    assert portal.counters.locked_out == 0


async def test_without_an_ip_the_local_pair_is_locked(portal: Portal) -> None:
    await fail(portal, 5, ip=None)
    assert await login(portal, "alice", "right", None) is None
    assert await login(portal, "bob", "bobpw", None) == BOB
    assert await login(portal, "alice", "right", "192.0.2.1") == ALICE


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-ip", "not-an-ip"),
        (None, None),
    ],
)
def test_network_keys(peer: str | None, key: str | None) -> None:
    assert network_key(peer) == key


async def test_an_ipv6_slash_64_counts_as_one_peer(portal: Portal) -> None:
    for i in range(5):
        assert await login(portal, f"guess{i}", "wrong", f"2001:db8::{i + 1}") is None
    assert await login(portal, "alice", "right", "2001:db8::abcd") is None
    assert await login(portal, "alice", "right", "2001:db8:0:1::1") == ALICE


# -- success forgives the pair only -------------------------------------------------------------


async def test_success_forgives_a_users_own_typos(portal: Portal) -> None:
    await fail(portal, 4)
    assert await login(portal, "alice", "right") == ALICE
    assert (len(portal.throttle.by_user), len(portal.throttle.by_ip)) == (0, 0)
    await fail(portal, 4)  # would be 8 without forgiveness
    assert await login(portal, "alice", "right") == ALICE


async def test_success_does_not_forgive_other_names_from_the_same_address(
    portal: Portal,
) -> None:
    await fail(portal, 4, user="bob")
    assert await login(portal, "alice", "right") == ALICE
    await fail(portal, 1, user="mallory")  # the address's fifth failure
    assert await login(portal, "alice", "right") is None


async def test_success_does_not_forgive_the_name_from_other_addresses(
    portal: Portal, clock: FakeClock
) -> None:
    for i in range(3):
        assert await login(portal, "alice", "wrong", f"203.0.113.{i}") is None
    assert await login(portal, "alice", "right", "192.0.2.1") == ALICE
    clock.sleeps.clear()
    for i in range(3, 5):
        assert await login(portal, "alice", "wrong", f"203.0.113.{i}") is None
    assert clock.sleeps == [1.0, 2.0]  # the name's 4th and 5th failures: still counted


# -- concurrency --------------------------------------------------------------------------------


async def test_parallel_guesses_cannot_outrun_the_lockout(
    portal: Portal, verifier: FakeVerifier
) -> None:
    results = await asyncio.gather(*(login(portal, "alice", f"guess{i}") for i in range(20)))
    assert results == [None] * 20
    assert verifier.checks == 5
    assert (portal.counters.failed, portal.counters.locked_out) == (5, 15)
    assert len(portal._locks) == 0  # no lock outlives its waiters


async def test_parallel_logins_of_different_users_all_succeed(portal: Portal) -> None:
    results = await asyncio.gather(
        login(portal, "alice", "right", "192.0.2.1"),
        login(portal, "bob", "bobpw", "192.0.2.1"),
        login(portal, "alice", "right", "192.0.2.2"),
    )
    assert results == [ALICE, BOB, ALICE]
    assert len(portal._locks) == 0


async def test_a_cancelled_attempt_releases_its_locks(portal: Portal, clock: FakeClock) -> None:
    task = asyncio.create_task(login(portal, "alice", "wrong"))
    await asyncio.sleep(0)  # one turn of the loop: the attempt takes its locks
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(portal._locks) == 0
    assert await login(portal, "alice", "right") == ALICE


# -- bounded memory -----------------------------------------------------------------------------


async def test_spraying_random_names_and_addresses_is_bounded(clock: FakeClock) -> None:
    portal = Portal(FakeVerifier(), ThrottleConfig(max_entries=100), clock=clock, sleep=clock.sleep)
    for i in range(1000):
        assert await login(portal, f"user{i}", "x", f"10.{i // 256}.{i % 256}.1") is None
    assert len(portal.throttle.by_user) == 100
    assert len(portal.throttle.by_ip) == 100


async def test_eviction_drops_the_least_recently_failed(clock: FakeClock) -> None:
    portal = Portal(FakeVerifier(), ThrottleConfig(max_entries=3), clock=clock, sleep=clock.sleep)
    await fail(portal, 4, user="alice", ip=None)  # the (local, alice) pair
    for name in ("x", "y"):
        await fail(portal, 1, user=name, ip=None)
    await fail(portal, 1, user="z", ip=None)  # evicts alice, the least recently failed
    await fail(portal, 1, user="alice", ip=None)
    assert await login(portal, "alice", "right", None) == ALICE  # 1 failure, not 5


async def test_expired_entries_are_dropped(portal: Portal, clock: FakeClock) -> None:
    for i in range(50):
        assert await login(portal, f"user{i}", "x", f"10.0.0.{i}") is None
    assert len(portal.throttle.by_user) == 50
    clock.advance(301)
    assert await login(portal, "late", "x", "10.0.1.1") is None
    assert len(portal.throttle.by_user) == 1
    assert len(portal.throttle.by_ip) == 1


async def test_locked_entries_outlive_the_window_until_the_lockout_ends(
    portal: Portal, clock: FakeClock
) -> None:
    await fail(portal, 5)
    clock.advance(301)
    await fail(portal, 1, user="other", ip="10.9.9.9")  # expiry pass: 192.0.2.1 is still locked
    assert "192.0.2.1" in portal.throttle.by_ip._entries
    clock.advance(900)
    await fail(portal, 1, user="other2", ip="10.9.9.8")
    assert "192.0.2.1" not in portal.throttle.by_ip._entries


async def test_huge_user_names_are_truncated_in_the_tables(portal: Portal) -> None:
    await fail(portal, 1, user="a" * 100_000)
    [key] = portal.throttle.by_user._entries
    assert len(key) == 256


# -- logs and counters --------------------------------------------------------------------------


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


async def test_security_events_are_logged_without_passwords(
    portal: Portal, logs: list[dict[str, Any]]
) -> None:
    await login(portal, "alice", "right", protocol="smtp")
    for i in range(5):
        await login(portal, "alice", f"Pa55-{i}", protocol="smtp")
    await login(portal, "alice", "right", protocol="smtp")
    assert [e["event"] for e in logs] == [
        "auth_succeeded",
        *["auth_failed"] * 5,
        "auth_lockout_started",
        "auth_locked_out",
    ]
    assert logs[0] == {
        "event": "auth_succeeded",
        "log_level": "info",
        "protocol": "smtp",
        "peer": "192.0.2.1",
        "user": "alice",
    }
    assert logs[3]["failures"] == 3 and logs[3]["delay"] == 0.5
    assert logs[6]["scope"] == "ip"  # the network, never the name (issue 13.7)
    assert logs[7]["retry_after"] == 900
    rendered = repr(logs)
    assert "right" not in rendered and "Pa55" not in rendered


async def test_logged_user_names_are_sanitized(portal: Portal, logs: list[dict[str, Any]]) -> None:
    await login(portal, "evil\nauth_succeeded user=root\x1b[0m" + "x" * 100, "pw")
    user = logs[0]["user"]
    assert "\n" not in user and "\x1b" not in user and len(user) == 64


def test_credentials_repr_hides_the_password() -> None:
    creds = Credentials("alice", "s3cret")
    assert "s3cret" not in repr(creds) and "alice" in repr(creds)


async def test_counters_by_protocol(portal: Portal) -> None:
    await login(portal, "alice", "right", protocol="smtp")
    await login(portal, "alice", "wrong", protocol="pop3")
    await fail(portal, 5, user="bob", ip="192.0.2.9")
    await login(portal, "bob", "bobpw", "192.0.2.9", protocol="ftp")
    c = portal.counters
    assert (c.succeeded, c.failed, c.locked_out) == (1, 6, 1)
    assert c.by_protocol == {
        "smtp": {"succeeded": 1, "failed": 0, "locked_out": 0},
        "pop3": {"succeeded": 0, "failed": 6, "locked_out": 0},
        "ftp": {"succeeded": 0, "failed": 0, "locked_out": 1},
    }


# -- configuration ------------------------------------------------------------------------------


def test_throttle_config_defaults_and_durations() -> None:
    assert ThrottleConfig() == ThrottleConfig(
        max_failures=5, window=300, lockout=900, base_delay=0.5, max_delay=8, free_failures=2
    )
    config = ThrottleConfig.model_validate({"window": "1m", "lockout": "1h", "base_delay": "250ms"})
    assert (config.window, config.lockout, config.base_delay) == (60.0, 3600.0, 0.25)


def test_delay_sequence_is_capped() -> None:
    config = ThrottleConfig(base_delay=0.5, max_delay=4)
    assert [config.delay(n) for n in range(1, 9)] == [0, 0, 0.5, 1, 2, 4, 4, 4]
    assert config.delay(10**6) == 4.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_failure": 3}, "Extra inputs are not permitted"),
        ({"max_failures": 0}, "greater than or equal to 1"),
        ({"window": "soon"}, "expected a duration"),
        ({"base_delay": 5, "max_delay": 1}, "max_delay must not be less than base_delay"),
    ],
)
def test_throttle_config_rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ThrottleConfig.model_validate(data)


def test_throttle_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        ThrottleConfig().max_failures = 1  # type: ignore[misc]


# -- with the real store ------------------------------------------------------------------------


async def test_portal_over_a_real_user_store(tmp_path: Path, clock: FakeClock) -> None:
    store = UserStore.load(
        tmp_path / "users.yaml",
        missing_ok=True,
        hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1),
    )
    store.add("alice", "right", ("admin",))
    portal = Portal(store, clock=clock, sleep=clock.sleep)
    try:
        user = await login(portal, "alice", "right", protocol="admin")
        assert user is not None and user.has_role("admin")
        assert await login(portal, "alice", "wrong") is None
        assert await login(portal, "ghost", "right") is None
    finally:
        store.close()


# -- seeing and clearing lock-outs ---------------------------------------------------------------


async def test_lockouts_are_listed_and_cleared_by_network(portal: Portal, clock: FakeClock) -> None:
    await fail(portal, 5, ip="198.51.100.7")
    await fail(portal, 5, ip=None, user="bob")
    await fail(portal, 2, ip="203.0.113.9")
    seen = portal.lockouts()
    assert seen["lockouts"] == [
        {"scope": "network", "key": "198.51.100.7", "seconds_left": 900.0},
        {"scope": "local_user", "key": "bob", "seconds_left": 900.0},
    ]
    # A lock-out pays for its failures: the name-wide counts it covered start afresh.
    assert seen["failing"] == {"networks": {"203.0.113.9": 2}, "names": {"alice": 2}}
    assert portal.clear(network="198.51.100.7") == 1
    assert await login(portal, "alice", "right", "198.51.100.7") == ALICE
    assert await login(portal, "bob", "bobpw", None) is None  # still locked
    assert portal.clear(user="bob") == 1  # its local pair (its name-wide count went at the lock)
    assert await login(portal, "bob", "bobpw", None) == BOB
    assert portal.clear() >= 1
    assert portal.lockouts() == {"lockouts": [], "failing": {"networks": {}, "names": {}}}


async def test_clearing_an_ipv6_address_clears_its_slash_64(portal: Portal) -> None:
    await fail(portal, 5, ip="2001:db8::1")
    assert portal.clear(network="2001:db8::99") == 1
    assert await login(portal, "alice", "right", "2001:db8::1") == ALICE


async def test_a_clear_in_one_worker_reaches_the_others(tmp_path: Path, clock: FakeClock) -> None:
    """With --workers each process keeps its own tables; POST /lockouts/clear in one leaves a
    request the others apply at their next publish tick."""
    from types import SimpleNamespace

    from aionet.core.supervisor import PeerLockouts, WorkerInfo

    def worker(index: int) -> tuple[Portal, PeerLockouts]:
        portal = Portal(FakeVerifier(), ThrottleConfig(), clock=clock, sleep=clock.sleep)
        config = SimpleNamespace(server=SimpleNamespace(data_dir=tmp_path))
        server: Any = SimpleNamespace(portal=portal, config=config)
        peers = PeerLockouts(server, WorkerInfo(index, 2, {}, None))
        peers.started -= 1  # requests made from now on are newer than this worker
        peers.dir.mkdir(parents=True, exist_ok=True)
        return portal, peers

    (p0, w0), (p1, w1) = worker(0), worker(1)
    for portal in (p0, p1):
        await fail(portal, 5, ip="198.51.100.7")
    p0.clear(network="198.51.100.7")
    w0.request_clear("198.51.100.7", None)
    w0.apply_requests()  # its own request is not applied twice
    assert p1.lockouts()["lockouts"] != []
    w1.apply_requests()
    assert p1.lockouts()["lockouts"] == []
    await fail(p1, 5, ip="198.51.100.7")
    w1.apply_requests()  # an applied request is not applied again
    assert p1.lockouts()["lockouts"] != []
