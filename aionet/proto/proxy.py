"""PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt), sans-IO.

``parse_proxy_header(data)`` looks at the bytes a connection started with and returns:
``None`` (need more bytes), or a ``ProxyHeader`` with the real source and destination (or
``local=True`` when the proxy says "keep the socket's addresses": v1 ``UNKNOWN``, v2 ``LOCAL``
or an unsupported family) and ``length``, how many bytes the header took. Anything malformed
raises ``ProxyProtocolError``. The header size is bounded: 107 bytes for v1 (the spec's
maximum), ``max_v2`` bytes for v2 (TLVs included; they are skipped).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..errors import ProtocolError

__all__ = [
    "V1_MAX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "build_v1",
    "build_v2",
    "parse_proxy_header",
]

V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FAMILIES = {0x11: (4, 12), 0x12: (4, 12), 0x21: (16, 36), 0x22: (16, 36)}
#: Every family/transport byte the v2 spec defines (UNSPEC, INET, INET6, UNIX with UNSPEC, STREAM,
#: DGRAM as it lists them); anything else is undefined and refused (spec §2.2).
_V2_DEFINED = frozenset({0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32})


class ProxyProtocolError(ProtocolError):
    """The connection did not start with a valid PROXY header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    length: int
    local: bool = False
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def parse_proxy_header(data: bytes, *, max_v2: int = 4096) -> ProxyHeader | None:
    """Parse the PROXY header at the start of ``data`` (see the module docstring).

    Raises:
        ProxyProtocolError: not a PROXY header, malformed, or over the size bound.
    """
    if V2_SIGNATURE.startswith(data[:12]):  # a v2 header, or the start of one
        return _v2(data, max_v2) if len(data) >= 12 else None
    if b"PROXY ".startswith(data[:6]):
        return _v1(data) if len(data) >= 6 else None
    raise ProxyProtocolError("connection did not start with a PROXY protocol header")


def _v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise ProxyProtocolError("PROXY v1 header without CRLF within 107 bytes")
        return None
    parts = data[:end].split(b" ")
    length = end + 2
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(length, local=True)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("malformed PROXY v1 header")
    version = 4 if parts[1] == b"TCP4" else 6
    src = _v1_address(parts[2], parts[4], version)
    dst = _v1_address(parts[3], parts[5], version)
    return ProxyHeader(length, source=src, destination=dst)


def _v1_address(host: bytes, port: bytes, version: int) -> tuple[str, int]:
    try:
        addr = ipaddress.ip_address(host.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyProtocolError("bad address in PROXY v1 header") from None
    if addr.version != version:
        raise ProxyProtocolError("address family does not match the PROXY v1 protocol")
    if not port.isdigit() or (len(port) > 1 and port.startswith(b"0")) or int(port) > 65535:
        raise ProxyProtocolError("bad port in PROXY v1 header")
    return str(addr), int(port)


def _v2(data: bytes, max_v2: int) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    ver_cmd, family, size = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError("unsupported PROXY v2 version")
    command = ver_cmd & 0x0F
    if command > 1:
        raise ProxyProtocolError("unsupported PROXY v2 command")
    length = 16 + size
    if length > max_v2:
        raise ProxyProtocolError(f"PROXY v2 header over {max_v2} bytes")
    if len(data) < length:
        return None
    if command == 1 and family not in _V2_DEFINED:  # LOCAL ignores the family (spec §2.2)
        raise ProxyProtocolError(f"undefined PROXY v2 address family 0x{family:02x}")
    if command == 0 or family not in _V2_FAMILIES:  # LOCAL, or UNSPEC/UNIX: keep the socket's
        return ProxyHeader(length, local=True)
    width, needed = _V2_FAMILIES[family]
    if size < needed:
        raise ProxyProtocolError("PROXY v2 address block too short")
    body = data[16 : 16 + needed]
    src = ipaddress.ip_address(body[:width])
    dst = ipaddress.ip_address(body[width : 2 * width])
    sport, dport = struct.unpack("!HH", body[2 * width : 2 * width + 4])
    return ProxyHeader(length, source=(str(src), sport), destination=(str(dst), dport))


def build_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 header (``UNKNOWN`` when ``source`` is None)."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    proto = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {proto} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode(
        "ascii"
    )


def build_v2(
    source: tuple[str, int] | None, destination: tuple[str, int] | None, *, tlv: bytes = b""
) -> bytes:
    """A v2 header: PROXY over TCP for the addresses, LOCAL when ``source`` is None."""
    if source is None or destination is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlv)) + tlv
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1]) + tlv
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body
