"""Access control and the PROXY protocol on real loopback listeners (IPv4 and IPv6)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from aionet.proto.proxy import build_v1, build_v2
from aionet.testing import serve
from tests.waiting import wait_until

WHO = "tests.e2e.tls_handlers:WhoAmI"


def listener(bind: str = "127.0.0.1:0", **extra: Any) -> dict[str, Any]:
    return {"listeners": [{"name": "who", "protocol": WHO, "bind": bind, **extra}]}


async def who(addr: Any, prefix: bytes = b"") -> Any:
    reader, writer = await asyncio.open_connection(*addr[:2])
    try:
        writer.write(prefix + b"?\n")
        line = await asyncio.wait_for(reader.readline(), 5)
    except ConnectionResetError:  # closed with our bytes unread: the kernel sends a reset
        return None
    finally:
        writer.close()
    return json.loads(line) if line else None  # None: closed without an answer


async def test_deny_list_closes_before_any_byte(tmp_path: Path) -> None:
    async with serve(listener(access={"deny": ["127.0.0.0/8"]}), data_dir=tmp_path) as server:
        assert await who(server.address("who")) is None
        stats = server.manager.slots["who"].stats
        assert stats.refused == {"denied": 1}
        assert stats.accepted == 0  # never reached the connection manager or the handler


async def test_allow_list_over_ipv6(tmp_path: Path) -> None:
    async with serve(listener("[::1]:0", access={"allow": ["::1/128"]}), data_dir=tmp_path) as s:
        answer = await who(s.address("who"))
        assert answer["peer"][0] == "::1"
    async with serve(
        listener("[::1]:0", access={"allow": ["10.0.0.0/8", "fd00::/8"]}), data_dir=tmp_path
    ) as s:
        assert await who(s.address("who")) is None
        assert s.manager.slots["who"].stats.refused == {"not_allowed": 1}


async def test_connection_rate_limit_per_ip(tmp_path: Path) -> None:
    async with serve(listener(access={"rate": 0.5, "burst": 2}), data_dir=tmp_path) as server:
        addr = server.address("who")
        answers = [await who(addr) for _ in range(3)]
        assert [a is not None for a in answers] == [True, True, False]
        assert server.manager.slots["who"].stats.refused == {"rate_limited": 1}


@pytest.mark.parametrize("build", [build_v1, build_v2], ids=["v1", "v2"])
async def test_proxy_header_from_a_trusted_proxy_sets_the_client(
    build: Any, tmp_path: Path
) -> None:
    cfg = listener(
        proxy_protocol=True, trusted_proxies=["127.0.0.1"], limits={"max_connections_per_ip": 1}
    )
    async with serve(cfg, data_dir=tmp_path) as server:
        addr = server.address("who")
        header = build(("203.0.113.7", 40000), ("127.0.0.1", addr[1]))
        answer = await who(addr, header)
        assert answer["peer"] == ["203.0.113.7", 40000]
        # The real client's address is what the per-IP cap counts.
        r1, w1 = await asyncio.open_connection(*addr)
        w1.write(build(("198.51.100.1", 1), ("127.0.0.1", 2)) + b"?\n")
        await r1.readline()
        assert await who(addr, build(("198.51.100.1", 3), ("127.0.0.1", 4))) is None
        assert (await who(addr, build(("198.51.100.2", 5), ("127.0.0.1", 6))))["peer"][0] == (
            "198.51.100.2"
        )
        w1.close()
        stats = server.manager.slots["who"].stats
        assert stats.refused == {"listener_max_connections_per_ip": 1}


async def test_access_control_applies_to_the_proxied_client(tmp_path: Path) -> None:
    cfg = listener(
        proxy_protocol=True, trusted_proxies=["127.0.0.0/8"], access={"deny": ["192.0.2.0/24"]}
    )
    async with serve(cfg, data_dir=tmp_path) as server:
        addr = server.address("who")
        assert await who(addr, build_v1(("192.0.2.9", 1), ("127.0.0.1", 2))) is None
        assert (await who(addr, build_v2(None, None)))["peer"][0] == "127.0.0.1"  # LOCAL
        assert server.manager.slots["who"].stats.refused == {"denied": 1}


async def test_untrusted_source_and_garbage_headers_are_closed(tmp_path: Path) -> None:
    async with serve(
        listener(proxy_protocol=True, trusted_proxies=["10.0.0.0/8"]), data_dir=tmp_path
    ) as server:
        header = build_v1(("203.0.113.7", 1), ("127.0.0.1", 2))
        assert await who(server.address("who"), header) is None
        assert server.manager.slots["who"].stats.refused == {"untrusted_proxy": 1}
    cfg = listener(proxy_protocol=True, trusted_proxies=["127.0.0.1"], proxy_timeout="300ms")
    async with serve(cfg, data_dir=tmp_path) as server:
        addr = server.address("who")
        assert await who(addr, b"GET / HTTP/1.1\r\n") is None
        reader, writer = await asyncio.open_connection(*addr)  # says nothing: times out
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        stats = server.manager.slots["who"].stats
        await wait_until(lambda: stats.refused == {"proxy_header": 2}, 5, what="both counted")
        assert (await who(addr, build_v1(("203.0.113.8", 9), ("127.0.0.1", 2))))["peer"] == [
            "203.0.113.8",
            9,
        ]


def test_proxy_protocol_needs_trusted_proxies() -> None:
    from aionet.core.preflight import load_config_text
    from aionet.errors import ConfigError

    text = (
        f"listeners:\n  - {{name: w, protocol: '{WHO}', bind: '127.0.0.1:0', "
        "proxy_protocol: true}\n"
    )
    with pytest.raises(ConfigError, match="proxy_protocol needs trusted_proxies"):
        load_config_text(text, "p.yaml")


async def test_access_control_applies_to_datagrams(tmp_path: Path) -> None:
    import socket

    cfg = {
        "listeners": [
            {
                "name": "u",
                "protocol": "udp-echo",
                "bind": "127.0.0.1:0",
                "access": {"deny": ["127.0.0.0/8"]},
            }
        ]
    }
    async with serve(cfg, data_dir=tmp_path) as server:
        host, port = server.address("u", "udp")

        def client() -> bytes | None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(b"ping", (host, port))
                try:
                    return s.recv(100)
                except TimeoutError:
                    return None

        assert await asyncio.to_thread(client) is None
        stats = server.manager.slots["u"].stats
        assert (stats.refused, stats.datagrams_out) == ({"denied": 1}, 0)
