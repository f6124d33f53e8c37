"""``proto.forwarded``: who the client is behind trusted proxies (RFC 7239, X-Forwarded-*)."""

from __future__ import annotations

import pytest

from aionet.proto.forwarded import ForwardedPolicy

LOCAL = ForwardedPolicy(["127.0.0.1", "10.0.0.0/8"])


def resolve(peer: str, *headers: tuple[str, str]) -> tuple[str | None, str | None] | None:
    found = LOCAL.resolve(peer, [(n.encode(), v.encode()) for n, v in headers])
    return None if found is None else (found.host, found.scheme)


def test_an_untrusted_peer_is_taken_as_it_is_whatever_it_claims() -> None:
    assert resolve("203.0.113.7", ("x-forwarded-for", "1.2.3.4")) is None
    assert resolve("203.0.113.7", ("forwarded", "for=1.2.3.4;proto=https")) is None


def test_x_forwarded_for_walks_from_the_right_past_trusted_proxies() -> None:
    # client 198.51.100.9 -> proxy 10.0.0.5 -> proxy 127.0.0.1 (the peer)
    assert resolve(
        "127.0.0.1",
        ("x-forwarded-for", "198.51.100.9, 10.0.0.5"),
        ("x-forwarded-proto", "https"),
    ) == ("198.51.100.9", "https")
    # A client that forges hops to its left cannot get past the first untrusted one.
    assert resolve("127.0.0.1", ("x-forwarded-for", "10.0.0.1, 1.1.1.1, 198.51.100.9")) == (
        "198.51.100.9",
        None,
    )
    assert resolve("127.0.0.1", ("x-forwarded-for", "10.0.0.9, 10.0.0.5")) == ("10.0.0.9", None)


def test_forwarded_wins_and_its_chosen_hop_gives_the_scheme() -> None:
    assert resolve(
        "10.1.2.3",
        ("x-forwarded-for", "192.0.2.1"),
        ("forwarded", 'for="[2001:db8::7]:4711";proto=https, for=10.0.0.5;proto=http'),
    ) == ("2001:db8::7", "https")
    assert resolve("127.0.0.1", ("forwarded", "for=192.0.2.60:8080;proto=http")) == (
        "192.0.2.60",
        "http",
    )


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("forwarded", "for=unknown", (None, None)),  # RFC 7239 6.3: not an address
        ("forwarded", "for=_hidden;proto=https", (None, "https")),  # obfuscated node
        ("x-forwarded-for", "not-an-ip", (None, None)),
        ("x-forwarded-proto", "gopher", None),  # no hop, no scheme worth taking
        ("x-forwarded-proto", "http, https", (None, "https")),  # the nearest hop's word
    ],
)
def test_what_is_not_an_address_or_a_scheme_is_not_taken(
    header: str, value: str, expected: tuple[str | None, str | None] | None
) -> None:
    assert resolve("127.0.0.1", (header, value)) == expected


def test_star_trusts_any_peer_and_bad_networks_are_refused() -> None:
    anyone = ForwardedPolicy(["*"])
    found = anyone.resolve("203.0.113.7", [(b"x-forwarded-for", b"192.0.2.1")])
    assert found is not None and found.host == "192.0.2.1"
    with pytest.raises(ValueError, match="not-a-net"):
        ForwardedPolicy(["not-a-net"])
