"""DNS lookup in one zone (RFC 1034 4.3.2, RFC 2181, RFC 4592 wildcards, RFC 8482 ANY)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

import dns.name
import dns.rdata
import dns.rrset

from ._common import ANY_PREFERENCE, IN, MAX_CHAIN, Rcode, T
from ._zones import Zone, _rrset

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# -- lookup ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The sections of a reply, before rendering."""

    rcode: Rcode
    aa: bool = False
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()


class _Kind(IntEnum):
    DATA = 0
    CNAME = 1
    NODATA = 2
    NXDOMAIN = 3
    REFERRAL = 4


#: The rcode of each negative outcome (RFC 2308: NODATA is NOERROR with the SOA).
_NEGATIVE = {_Kind.NODATA: Rcode.NOERROR, _Kind.NXDOMAIN: Rcode.NXDOMAIN}


@dataclass(frozen=True, slots=True)
class _Found:
    kind: _Kind
    rrsets: tuple[dns.rrset.RRset, ...] = ()


def _owned(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    """``rrset`` with ``owner`` as its name (a wildcard's synthesised answer, RFC 4592 3.3)."""
    return rrset if rrset.name == owner else _rrset(owner, rrset.ttl, rrset)


def _find(zone: Zone, name: dns.name.Name, qtype: int, hinfo_any: bool) -> _Found:
    """One step of RFC 1034 4.3.2 inside ``zone`` (no chasing)."""
    for cut in zone.cuts:
        if name.is_subdomain(cut) and not (qtype == T.DS and name == cut):
            return _Found(_Kind.REFERRAL, (zone.nodes[cut][T.NS],))
    node = zone.nodes.get(name)
    if node is None:
        if name in zone.names:
            return _Found(_Kind.NODATA)  # an empty non-terminal
        node = _wildcard(zone, name)
        if node is None:
            return _Found(_Kind.NXDOMAIN)
    if qtype == T.ANY:
        return _Found(_Kind.DATA, (_any_rrset(zone, node, name, hinfo_any),))
    rrset = node.get(qtype)
    if rrset is not None:
        return _Found(_Kind.DATA, (_owned(rrset, name),))
    cname = node.get(T.CNAME)
    if cname is not None:
        return _Found(_Kind.CNAME, (_owned(cname, name),))
    return _Found(_Kind.NODATA)


def _wildcard(zone: Zone, name: dns.name.Name) -> Mapping[int, dns.rrset.RRset] | None:
    """The node of ``*.<closest encloser>``, if the zone has one (RFC 4592 3.3.1)."""
    encloser = name.parent()
    while encloser not in zone.names:
        encloser = encloser.parent()
    return zone.nodes.get(dns.name.Name((b"*", *encloser.labels)))


def _any_rrset(
    zone: Zone, node: Mapping[int, dns.rrset.RRset], owner: dns.name.Name, hinfo: bool
) -> dns.rrset.RRset:
    """RFC 8482 4: one RRset for an ANY query, or the synthesised HINFO ``"RFC8482" ""``."""
    if hinfo:
        out = dns.rrset.RRset(owner, IN, T.HINFO)
        out.add(dns.rdata.from_text(IN, T.HINFO, '"RFC8482" ""'), zone.ttl)
        return out
    for rdtype in ANY_PREFERENCE:
        if rdtype in node:
            return _owned(node[rdtype], owner)
    return _owned(next(iter(node.values())), owner)


class Zones(Protocol):
    """What a lookup needs of the zones it serves (``Authority`` is one)."""

    def zone_for(self, name: dns.name.Name) -> Zone | None:
        """The zone with the longest origin that encloses ``name``."""

    def additional(self, rrsets: Iterable[dns.rrset.RRset]) -> tuple[dns.rrset.RRset, ...]:
        """A and AAAA RRsets of the MX/SRV/NS targets in ``rrsets`` that we hold."""


class _Chase:
    """Follows CNAMEs from ``qname`` inside one zone, collecting the chain (RFC 1034 4.3.2)."""

    def __init__(self, authority: Zones, zone: Zone, hinfo_any: bool) -> None:
        self.authority = authority
        self.zone = zone
        self.hinfo_any = hinfo_any
        self.chain: list[dns.rrset.RRset] = []

    def run(self, qname: dns.name.Name, qtype: int) -> Answer:
        seen = {qname}
        name = qname
        while True:
            found = _find(self.zone, name, qtype, self.hinfo_any)
            if found.kind != _Kind.CNAME:
                return self._finish(found)
            self.chain.append(found.rrsets[0])
            target: dns.name.Name = found.rrsets[0][0].target
            inside = self.authority.zone_for(target) is self.zone
            if target in seen or not inside or len(self.chain) >= MAX_CHAIN:
                return Answer(Rcode.NOERROR, aa=True, answer=tuple(self.chain))  # loop / out
            seen.add(target)
            name = target

    def _finish(self, found: _Found) -> Answer:
        chain = tuple(self.chain)
        extra = self.authority.additional(found.rrsets)
        if found.kind == _Kind.DATA:
            return Answer(Rcode.NOERROR, True, chain + found.rrsets, (), extra)
        if found.kind == _Kind.REFERRAL:  # not authoritative, unless a CNAME led here
            return Answer(Rcode.NOERROR, bool(chain), chain, found.rrsets, extra)
        return Answer(_NEGATIVE[found.kind], True, chain, (self.zone.negative_soa,))
