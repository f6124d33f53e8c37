"""Access control: allow/deny CIDRs over IPv4 and IPv6, mapped addresses, the token bucket."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aionet.core.acl import (
    MAX_BUCKETS,
    AccessConfig,
    AccessControl,
    ClientGuard,
    is_loopback,
    parse_networks,
    trusted,
)


def test_deny_wins_over_allow() -> None:
    acl = AccessControl(AccessConfig(allow=["10.0.0.0/8", "::1"], deny=["10.9.0.0/16"]))
    assert acl.check("10.1.2.3") is None
    assert acl.check("10.9.1.1") == "denied"
    assert acl.check("192.168.1.1") == "not_allowed"
    assert acl.check("::1") is None
    assert acl.check("::2") == "not_allowed"


def test_mapped_ipv4_matches_as_ipv4() -> None:
    acl = AccessControl(AccessConfig(deny=["192.0.2.0/24"]))
    assert acl.check("::ffff:192.0.2.7") == "denied"
    assert acl.check("::ffff:198.51.100.1") is None


def test_empty_config_admits_everyone() -> None:
    acl = AccessControl(AccessConfig())
    assert not AccessConfig().active
    assert acl.check("203.0.113.9") is None


def test_bad_network_is_a_validation_error_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"'10\.0\.0\.300/8' is not an IP address or CIDR"):
        AccessConfig(allow=["10.0.0.300/8"])


def test_token_bucket_per_ip() -> None:
    now = [100.0]
    acl = AccessControl(AccessConfig(rate=2, burst=3), clock=lambda: now[0])
    assert [acl.check("1.1.1.1") for _ in range(4)] == [None, None, None, "rate_limited"]
    assert acl.check("2.2.2.2") is None  # another IP has its own bucket
    now[0] += 0.5  # one token back at 2/s
    assert acl.check("1.1.1.1") is None
    assert acl.check("1.1.1.1") == "rate_limited"


def test_bucket_table_is_bounded() -> None:
    now = [0.0]
    acl = AccessControl(AccessConfig(rate=1, burst=1), clock=lambda: now[0])
    for i in range(MAX_BUCKETS + 500):
        acl.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(acl.buckets) <= MAX_BUCKETS
    now[0] += 10  # every bucket refilled: the next check drops them all
    acl.check("10.0.0.1")
    assert len(acl.buckets) == 1


def test_trusted() -> None:
    nets = parse_networks(["127.0.0.0/8", "fd00::/8"])
    assert trusted("127.0.0.1", nets)
    assert trusted("::ffff:127.0.0.1", nets)
    assert trusted("fd12::1", nets)
    assert not trusted("8.8.8.8", nets)
    assert not trusted("garbage", nets)


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1, 0, 0), True),
        (("::ffff:127.0.0.2", 1, 0, 0), True),
        (("10.0.0.1", 1), False),
        (("::ffff:10.0.0.1", 1, 0, 0), False),
        (("fe80::1%eth0", 1, 0, 2), False),
        (("not-an-ip", 1), False),
        ("/run/aionet.sock", True),  # a unix socket peer is this host
    ],
)
def test_is_loopback(peer: object, local: bool) -> None:
    assert is_loopback(peer) is local


def test_client_guard_checks_lists_then_rate_then_requests_in_flight() -> None:
    now = [0.0]
    access = AccessConfig(deny=["203.0.113.66"], rate=1, burst=2)
    guard = ClientGuard(access, max_per_ip=1, clock=lambda: now[0])
    assert guard.enter("203.0.113.66") == "denied"
    assert guard.enter("203.0.113.5") is None
    assert guard.enter("::ffff:203.0.113.5") == "max_connections_per_ip"  # the same client
    guard.leave("203.0.113.5")
    assert guard.enter("203.0.113.5") == "rate_limited"  # burst of 2 spent (cap took one)
    now[0] += 1.0
    assert guard.enter("203.0.113.5") is None
    guard.leave("203.0.113.5")
    assert guard.in_flight == {}


def test_client_guard_without_access_rules_only_caps() -> None:
    guard = ClientGuard(AccessConfig(), max_per_ip=2)
    assert [guard.enter("198.51.100.1") for _ in range(3)] == [None, None, "max_connections_per_ip"]
    assert guard.enter("198.51.100.2") is None
    assert guard.in_flight == {"198.51.100.1": 2, "198.51.100.2": 1}
