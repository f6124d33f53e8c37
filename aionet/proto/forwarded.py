"""Who the client is behind trusted reverse proxies: ``Forwarded`` (RFC 7239) and
``X-Forwarded-For``/``X-Forwarded-Proto`` (uvicorn's ``proxy_headers``/``forwarded_allow_ips``).

Sans-IO: headers and the peer's address in, the client's address and scheme out. The rules:

* The headers count only when the peer (the connection's own address) is a trusted proxy;
  otherwise the request is taken as sent, whatever it claims.
* The client is found by walking the hop list from the right (the hop nearest to us) and
  skipping hops that are themselves trusted proxies: the first untrusted hop is the client, as
  nginx's ``real_ip_recursive on`` and uvicorn do. A client cannot forge its way past this: the
  hops it prepends stand left of the first untrusted one. When every hop is trusted, the
  leftmost is taken.
* ``Forwarded`` wins over the ``X-Forwarded-*`` pair when both are present (it is the standard).
  The scheme is the ``proto`` of the hop chosen (``Forwarded``), or the last value of
  ``X-Forwarded-Proto``; only ``http``/``https`` (and ``ws``/``wss``) are taken.
* A hop that is not an address (``unknown``, an obfuscated ``_id``, garbage) is untrusted: it is
  the client if it is the first untrusted hop, and the client address is then not known
  (None: the caller keeps the peer's).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["ForwardedPolicy", "Resolved"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = frozenset({"http", "https", "ws", "wss"})


class Resolved:
    """The client as the trusted proxies say: ``host`` (None: not an address) and ``scheme``."""

    __slots__ = ("host", "scheme")

    def __init__(self, host: str | None, scheme: str | None) -> None:
        self.host = host
        self.scheme = scheme


class ForwardedPolicy:
    """``trusted``: the proxies' networks (``"*"``: any peer, for a socket only a proxy reaches)."""

    __slots__ = ("_any", "_networks")

    def __init__(self, trusted: Iterable[str]) -> None:
        entries = list(trusted)
        self._any = "*" in entries
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(e, strict=False) for e in entries if e != "*"
        )

    def trusts(self, host: str | None) -> bool:
        if host is None:
            return False
        if self._any:
            return True
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._networks)

    def resolve(self, peer: str | None, headers: Sequence[tuple[bytes, bytes]]) -> Resolved | None:
        """The client behind ``peer`` per ``headers`` (lower-case names, as ASGI has them), or
        None when ``peer`` is not trusted or no forwarding header is present."""
        if not self.trusts(peer):
            return None
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        proto: list[bytes] = []
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value)
            elif name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"x-forwarded-proto":
                proto.append(value)
        if forwarded:
            return self._pick(_forwarded_hops(b",".join(forwarded)), None)
        if xff or proto:
            hops = [(_text(h), None) for h in b",".join(xff).split(b",") if h.strip()]
            last = _text(b",".join(proto).split(b",")[-1]).lower() if proto else None
            return self._pick(hops, last if last in _SCHEMES else None)
        return None

    def _pick(self, hops: Sequence[tuple[str, str | None]], scheme: str | None) -> Resolved | None:
        if not hops:
            return Resolved(None, scheme) if scheme is not None else None
        chosen = hops[0]
        for hop in reversed(hops):
            if not self.trusts(_address(hop[0])):
                chosen = hop
                break
        host, hop_proto = chosen
        if hop_proto is not None:
            scheme = hop_proto
        return Resolved(_address(host), scheme)


def _text(value: bytes) -> str:
    return value.decode("latin-1").strip()


def _address(node: str) -> str | None:
    """The IP address of a hop (``for=`` node or X-Forwarded-For entry), or None."""
    node = node.strip().strip('"')
    if node.startswith("["):  # [v6] or [v6]:port
        node = node[1 : node.find("]")] if "]" in node else ""
    elif node.count(":") == 1:  # v4:port
        node = node.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(node))
    except ValueError:
        return None


def _forwarded_hops(value: bytes) -> list[tuple[str, str | None]]:
    """``(for, proto)`` of each element of a ``Forwarded`` header, left to right."""
    hops: list[tuple[str, str | None]] = []
    for element in _text(value).split(","):
        node, proto = "", None
        for pair in element.split(";"):
            key, _, val = pair.strip().partition("=")
            key, val = key.strip().lower(), val.strip().strip('"')
            if key == "for":
                node = val
            elif key == "proto" and val.lower() in _SCHEMES:
                proto = val.lower()
        if node or proto:
            hops.append((node, proto))
    return hops
