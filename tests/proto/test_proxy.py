"""PROXY protocol v1/v2 codec (HAProxy proxy-protocol.txt), fed whole and byte by byte."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aionet.proto.proxy import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    build_v1,
    build_v2,
    parse_proxy_header,
)


def incremental(data: bytes) -> ProxyHeader:
    """Every strict prefix needs more data; the whole thing parses."""
    for i in range(len(data)):
        assert parse_proxy_header(data[:i]) is None, f"prefix of {i} bytes"
    header = parse_proxy_header(data)
    assert header is not None
    return header


def test_v1_tcp4_from_the_spec() -> None:
    data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"
    header = parse_proxy_header(data)
    assert header == ProxyHeader(
        length=47, source=("192.168.0.1", 56324), destination=("192.168.0.11", 443)
    )
    assert data[header.length :] == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_and_unknown() -> None:
    header = incremental(b"PROXY TCP6 2001:db8::1 ::1 4000 25\r\n")
    assert (header.source, header.destination) == (("2001:db8::1", 4000), ("::1", 25))
    assert incremental(b"PROXY UNKNOWN\r\n") == ProxyHeader(15, local=True)
    assert parse_proxy_header(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n") == ProxyHeader(31, local=True)


@pytest.mark.parametrize(
    "bad",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # bare LF
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",  # family mismatch
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",  # leading zero
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY " + b"A" * 110,  # no CRLF within 107 bytes
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello where a header should be
    ],
)
def test_v1_garbage_is_rejected(bad: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(bad)


def test_v2_ipv4_and_ipv6_round_trip() -> None:
    for src, dst in [(("10.1.2.3", 1234), ("10.0.0.1", 80)), (("2001:db8::5", 9), ("::1", 443))]:
        data = build_v2(src, dst)
        header = incremental(data)
        assert (header.source, header.destination, header.length) == (src, dst, len(data))


def test_v2_tlvs_are_skipped_and_local_keeps_the_socket_peer() -> None:
    tlv = b"\x04\x00\x05hello"  # PP2_TYPE_NOOP
    data = build_v2(("10.1.2.3", 1), ("10.0.0.1", 2), tlv=tlv) + b"payload"
    header = parse_proxy_header(data)
    assert header is not None
    assert data[header.length :] == b"payload"
    assert header.source == ("10.1.2.3", 1)
    local = build_v2(None, None)
    assert incremental(local) == ProxyHeader(len(local), local=True)


def test_v2_unix_family_keeps_the_socket_peer() -> None:
    body = b"\x00" * 216
    data = V2_SIGNATURE + bytes([0x21, 0x31]) + struct.pack("!H", len(body)) + body
    assert parse_proxy_header(data) == ProxyHeader(len(data), local=True)


@pytest.mark.parametrize(
    ("ver_cmd", "family", "size", "message"),
    [
        (0x11, 0x11, 12, "version"),
        (0x22, 0x11, 12, "command"),
        (0x21, 0x11, 4, "too short"),
        (0x21, 0x11, 5000, "over 4096 bytes"),
        (0x21, 0x41, 12, "undefined PROXY v2 address family 0x41"),  # family 4: undefined
        (0x21, 0x13, 12, "undefined PROXY v2 address family 0x13"),  # transport 3: undefined
        (0x21, 0xF1, 12, "undefined"),
        (0x21, 0x01, 12, "undefined"),  # UNSPEC family with a transport
    ],
)
def test_v2_errors(ver_cmd: int, family: int, size: int, message: str) -> None:
    data = V2_SIGNATURE + bytes([ver_cmd, family]) + struct.pack("!H", size) + b"\x00" * size
    with pytest.raises(ProxyProtocolError, match=message):
        parse_proxy_header(data)


def test_v2_local_ignores_the_family() -> None:
    data = V2_SIGNATURE + bytes([0x20, 0x41]) + struct.pack("!H", 0)
    assert parse_proxy_header(data) == ProxyHeader(len(data), local=True)


def test_v1_builder_round_trip() -> None:
    data = build_v1(("1.2.3.4", 5), ("6.7.8.9", 10))
    assert data == b"PROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n"
    assert incremental(data).source == ("1.2.3.4", 5)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(ProxyProtocolError):
        parse_proxy_header(data)
