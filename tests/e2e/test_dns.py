"""The dns handler over real loopback UDP and TCP, with dnspython (and dig) as clients."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from aionet.core.server import Server
from aionet.handlers.dns import DnsHandler
from aionet.testing import serve
from tests.conftest import run_aionet
from tests.waiting import wait_until

ZONE = "aionet.test"
RECORDS: list[dict[str, Any]] = [
    {"name": "www", "type": "A", "value": "127.0.0.1", "ttl": 60},
    {"name": "www", "type": "AAAA", "value": "::1"},
    {"name": "alias", "type": "CNAME", "value": "www"},
    {"name": "@", "type": "MX", "value": "10 mail"},
    {"name": "mail", "type": "A", "value": "127.0.0.2"},
    {"name": "@", "type": "TXT", "value": "hello from aionet"},
    {"name": "_http._tcp", "type": "SRV", "value": "0 1 8080 www"},
    {"name": "1", "type": "PTR", "value": "www"},
    {"name": "@", "type": "CAA", "value": '0 issue "letsencrypt.org"'},
    {"name": "*.lab", "type": "A", "value": "127.0.0.9"},
    *({"name": "big", "type": "TXT", "value": f"{i:02d}" + "t" * 120} for i in range(20)),
]


def dns_config(port: int = 0, **options: Any) -> dict[str, Any]:
    return {
        "listeners": [
            {
                "name": "dns",
                "protocol": "dns",
                "bind": f"127.0.0.1:{port}",
                "options": {"zones": {ZONE: {"ttl": 300, "records": RECORDS}}, **options},
            }
        ],
    }


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with serve(dns_config(), data_dir=tmp_path) as running:
        yield running


def udp_addr(server: Server) -> tuple[str, int]:
    host, port = server.address("dns", "udp")[:2]
    return host, port


def tcp_addr(server: Server) -> tuple[str, int]:
    host, port = server.address("dns", "tcp")[:2]
    return host, port


async def udp(server: Server, q: dns.message.Message, **kw: Any) -> dns.message.Message:
    host, port = udp_addr(server)
    kw.setdefault("timeout", 5)
    return await asyncio.to_thread(dns.query.udp, q, host, port=port, **kw)


async def tcp(server: Server, q: dns.message.Message) -> dns.message.Message:
    host, port = tcp_addr(server)
    return await asyncio.to_thread(dns.query.tcp, q, host, port=port, timeout=5)


def texts(r: dns.message.Message) -> list[str]:
    return [line for rrset in r.answer for line in rrset.to_text().splitlines()]


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("www", "A", "www.aionet.test. 60 IN A 127.0.0.1"),
        ("www", "AAAA", "www.aionet.test. 300 IN AAAA ::1"),
        ("alias", "CNAME", "alias.aionet.test. 300 IN CNAME www.aionet.test."),
        ("", "MX", "aionet.test. 300 IN MX 10 mail.aionet.test."),
        ("", "TXT", 'aionet.test. 300 IN TXT "hello from aionet"'),
        ("", "NS", "aionet.test. 300 IN NS ns1.aionet.test."),
        ("_http._tcp", "SRV", "_http._tcp.aionet.test. 300 IN SRV 0 1 8080 www.aionet.test."),
        ("1", "PTR", "1.aionet.test. 300 IN PTR www.aionet.test."),
        ("", "CAA", 'aionet.test. 300 IN CAA 0 issue "letsencrypt.org"'),
    ],
)
async def test_record_types_over_udp_and_tcp(
    server: Server, name: str, rdtype: str, expected: str
) -> None:
    q = dns.message.make_query(f"{name}.{ZONE}".lstrip("."), rdtype)
    for ask in (udp, tcp):
        r = await ask(server, q)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        assert texts(r) == [expected]


async def test_soa_nxdomain_nodata_refused(server: Server) -> None:
    r = await udp(server, dns.message.make_query(ZONE, "SOA"))
    assert r.answer[0].rdtype == dns.rdatatype.SOA
    r = await udp(server, dns.message.make_query(f"nope.{ZONE}", "A"))
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA
    r = await udp(server, dns.message.make_query(f"www.{ZONE}", "MX"))
    assert r.rcode() == dns.rcode.NOERROR and r.answer == [] and r.authority
    r = await tcp(server, dns.message.make_query("example.com", "A"))
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & (dns.flags.AA | dns.flags.RA)


async def test_cname_wildcard_and_case(server: Server) -> None:
    r = await udp(server, dns.message.make_query("ALIAS.AiOnEt.TeSt", "A"))
    assert texts(r) == [
        "ALIAS.AiOnEt.TeSt. 300 IN CNAME www.aionet.test.",
        "www.aionet.test. 60 IN A 127.0.0.1",
    ]
    r = await tcp(server, dns.message.make_query(f"Any.Thing.LAB.{ZONE}", "A"))
    assert texts(r) == ["Any.Thing.LAB.aionet.test. 300 IN A 127.0.0.9"]


async def test_edns_payload_sizes(server: Server) -> None:
    q = dns.message.make_query(f"big.{ZONE}", "TXT", use_edns=0, payload=4096)
    full = await tcp(server, q)
    assert len(full.answer[0]) == 20 and len(full.to_wire()) > 2500
    r = await udp(server, dns.message.make_query(f"www.{ZONE}", "A", use_edns=0, payload=4096))
    assert r.edns == 0 and r.payload == 1232  # our size, echoed in the OPT
    r = await udp(server, dns.message.make_query(f"www.{ZONE}", "A"))
    assert r.edns == -1  # no OPT in the query, none in the answer


async def test_truncated_over_udp_then_full_over_tcp(server: Server) -> None:
    q = dns.message.make_query(f"big.{ZONE}", "TXT", use_edns=0, payload=1232)
    r = await udp(server, q)
    assert r.flags & dns.flags.TC and r.answer == [] and r.question == q.question
    r = await tcp(server, q)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 20


def port_free_for_both() -> int:
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both TCP and UDP")


async def test_one_port_serves_udp_and_tcp_so_resolvers_fall_back(tmp_path: Path) -> None:
    port = port_free_for_both()
    async with serve(dns_config(port), data_dir=tmp_path) as server:
        assert udp_addr(server) == tcp_addr(server) == ("127.0.0.1", port)
        q = dns.message.make_query(f"big.{ZONE}", "TXT")
        r, used_tcp = await asyncio.to_thread(
            dns.query.udp_with_fallback, q, "127.0.0.1", port=port, timeout=5
        )
        assert used_tcp and len(r.answer[0]) == 20


async def read_reply(reader: asyncio.StreamReader) -> dns.message.Message:
    size = int.from_bytes(await reader.readexactly(2), "big")
    return dns.message.from_wire(await reader.readexactly(size))


def framed(q: dns.message.Message) -> bytes:
    wire = q.to_wire()
    return len(wire).to_bytes(2, "big") + wire


async def test_several_queries_on_one_tcp_connection_in_order(server: Server) -> None:
    reader, writer = await asyncio.open_connection(*tcp_addr(server))
    names = ["www", "mail", "nope", "alias", "big"]
    queries = [dns.message.make_query(f"{n}.{ZONE}", "A") for n in names]
    writer.write(b"".join(framed(q) for q in queries))  # pipelined in one write
    replies = [await read_reply(reader) for _ in queries]
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies][2] == dns.rcode.NXDOMAIN
    wire = framed(dns.message.make_query(f"www.{ZONE}", "AAAA"))
    for i in range(len(wire)):  # then one query a byte at a time
        writer.write(wire[i : i + 1])
        await writer.drain()
    assert texts(await read_reply(reader)) == ["www.aionet.test. 300 IN AAAA ::1"]
    writer.close()
    await writer.wait_closed()


async def test_a_stalled_tcp_query_is_cut_off(tmp_path: Path) -> None:
    async with serve(dns_config(tcp_timeout="300ms"), data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*tcp_addr(server))
        writer.write(b"\x00\x40\x12\x34")  # announces 64 bytes, sends 2
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()


async def test_drain_closes_idle_tcp_connections_at_once(tmp_path: Path) -> None:
    async with serve(dns_config(tcp_timeout="1m"), data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*tcp_addr(server))
        writer.write(framed(dns.message.make_query(f"www.{ZONE}", "A")))
        assert (await read_reply(reader)).answer  # served, now waiting for the next query
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.shutdown(timeout=10)
        assert loop.time() - started < 3  # not the 10 s drain timeout
        assert await reader.read() == b""
        writer.close()


async def test_garbage_datagrams_never_kill_the_listener(server: Server) -> None:
    host, port = udp_addr(server)
    rng = random.Random(9)
    valid = dns.message.make_query(f"www.{ZONE}", "A", use_edns=0).to_wire()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(host, port)
    )
    try:
        for i in range(3000):
            if i % 2:
                transport.sendto(os.urandom(rng.randrange(0, 700)))
            else:
                wire = bytearray(valid)
                for _ in range(rng.randrange(1, 5)):
                    wire[rng.randrange(len(wire))] = rng.randrange(256)
                transport.sendto(bytes(wire[: rng.randrange(1, len(wire) + 1)]))
            if i % 50 == 0:  # the server shares this loop: let it read before the
                await asyncio.sleep(0.005)  # socket buffer overflows (kernel drops)
    finally:
        transport.close()
    stats = server.manager.slots["dns"].stats
    assert stats.datagrams_in > 2000  # (the kernel may drop some when its buffer is full)
    for attempt in range(5):  # like a resolver, retry: the backlog may still fill the buffer
        try:
            r = await udp(server, dns.message.make_query(f"www.{ZONE}", "A"), timeout=1)
            break
        except dns.exception.Timeout:
            assert attempt < 4, "the listener no longer answers"
    assert texts(r) == ["www.aionet.test. 60 IN A 127.0.0.1"]
    assert stats.handler_errors == 0


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.append(data)


async def test_rrl_drops_and_slips_over_udp_but_not_tcp(tmp_path: Path) -> None:
    config = dns_config(rrl={"responses_per_second": 5, "window": 5, "slip": 2})
    async with serve(config, data_dir=tmp_path) as server:
        loop = asyncio.get_running_loop()
        collector = Collector()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: collector, remote_addr=udp_addr(server)
        )
        queries = 40
        for _ in range(queries):
            transport.sendto(dns.message.make_query(f"www.{ZONE}", "A").to_wire())
        stats = server.manager.slots["dns"].stats
        await wait_until(
            lambda: stats.datagrams_in == queries and len(collector.replies) == stats.datagrams_out,
            5,
            what="every query read and every reply sent received",
        )
        transport.close()
        full = [r for r in collector.replies if not r[2] & 0x02]
        slipped = [r for r in collector.replies if r[2] & 0x02]
        assert 5 <= len(full) <= 9  # the rate, plus what the clock earned meanwhile
        limited = queries - len(full)
        assert abs(len(slipped) - limited / 2) <= 1  # every second limited reply slips
        assert all(struct.unpack("!H", r[6:8]) == (0,) for r in slipped)  # empty answers
        handler = server.handlers["dns"]
        assert isinstance(handler, DnsHandler)
        assert (handler.rrl_slipped, handler.rrl_dropped) == (len(slipped), limited - len(slipped))
        r = await tcp(server, dns.message.make_query(f"www.{ZONE}", "A"))  # TCP: unlimited
        assert texts(r) == ["www.aionet.test. 60 IN A 127.0.0.1"]


def test_config_errors_point_at_the_record(tmp_path: Path) -> None:
    (tmp_path / "bad.zone").write_text(
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 2 3 4 5\n@ IN NS ns1\nwww IN A 10.0.0.300\n"
    )
    config = tmp_path / "aionet.yaml"
    config.write_text(
        "listeners:\n"
        "  - name: dns\n"
        "    protocol: dns\n"
        "    bind: 127.0.0.1:0\n"
        "    options:\n"
        "      zones:\n"
        "        aionet.test:\n"
        "          records:\n"
        "            - {name: www, type: A, value: 127.0.0.1}\n"
        "            - {name: mx, type: MX, value: not-a-preference}\n"
        "        other.test:\n"
        "          zone_file: bad.zone\n"
    )
    result = run_aionet("check", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    text = config.read_text().splitlines()
    col = text[9].index("not-a-preference") + 1
    assert lines[0].startswith(
        f"{config}:10:{col}: listeners[0].options.zones.aionet.test.records[1].value: "
        "mx MX: 'not-a-preference': "
    )
    col = text[11].index("bad.zone") + 1
    assert lines[1].startswith(
        f"{config}:12:{col}: listeners[0].options.zones.other.test.zone_file: "
        f"zone file {tmp_path / 'bad.zone'}:4: "  # relative to the config file's directory
    )


async def dig(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.tool("dig")
async def test_dig(server: Server) -> None:
    host, uport = udp_addr(server)
    _, tport = tcp_addr(server)
    common = ["+time=3", "+tries=1", f"@{host}"]
    assert await dig(*common, "-p", str(uport), "+short", f"www.{ZONE}") == "127.0.0.1\n"
    out = await dig(*common, "-p", str(tport), "+tcp", "+short", f"alias.{ZONE}")
    assert out == "www.aionet.test.\n127.0.0.1\n"
    out = await dig(*common, "-p", str(uport), "+norec", "WwW.AiOnEt.TeSt")
    assert "status: NOERROR" in out and "flags: qr aa;" in out
    assert "WwW.AiOnEt.TeSt.\t60\tIN\tA\t127.0.0.1" in out
    out = await dig(*common, "-p", str(uport), f"nope.{ZONE}")
    assert "status: NXDOMAIN" in out and "\tSOA\t" in out
    out = await dig(*common, "-p", str(uport), "+ignore", "+bufsize=1232", f"big.{ZONE}", "TXT")
    assert "flags: qr aa tc rd;" in out
    out = await dig(*common, "-p", str(tport), "+tcp", "+short", f"big.{ZONE}", "TXT")
    assert len(out.splitlines()) == 20
