"""Authoritative DNS, sans-IO: zones, lookup (RFC 1034/2181/4592) and the wire (RFC 1035/6891).

Three parts, no sockets:

* **Zones.** ``ZoneBuilder`` turns record texts (parsed with ``dns.rdata.from_text``, so every
  type's validation is dnspython's) into an immutable ``Zone``; ``zone_from_text`` does the same
  for a master file. Errors come back as ``ZoneIssue(loc, message)`` so a config layer can
  position them.
* **Lookup.** ``Authority.lookup(qname, qtype, qclass)`` → an ``Answer`` (rcode, AA, sections):
  closest zone, referrals at zone cuts, wildcards that never cover existing names (empty
  non-terminals included), CNAME chains inside the zone with loop protection, RFC 8482 ANY.
* **Wire.** ``Authority.respond(query_bytes, tcp=...)`` → the reply bytes, or None to drop.
  Answers are rendered once per (lowercased qname, qtype, qclass) into a ``Prepared`` whose
  names compress against the question at offset 12; a query then costs a hand parse of its
  header and question, a dict hit, and a join of: its own ID, the header (RD/CD copied), its own
  question bytes (so its case comes back in the question and in every owner name equal to it),
  the pre-rendered sections and an OPT record. Anything unusual falls back to dnspython's
  parser; a query that does not parse gets FORMERR when its header is readable, else nothing.

``RateLimiter`` is BIND-style response rate limiting per client prefix (``client_prefix``).
"""

from __future__ import annotations

import io
import ipaddress
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.tokenizer
import dns.zone
import dns.zonefile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from dns.rdtypes.ANY.SOA import SOA

__all__ = [
    "Answer",
    "Authority",
    "Prepared",
    "RateLimiter",
    "RecordText",
    "Verdict",
    "Zone",
    "ZoneBuilder",
    "ZoneError",
    "ZoneIssue",
    "client_prefix",
    "zone_from_text",
]

Loc = tuple[str | int, ...]

IN = dns.rdataclass.IN
T = dns.rdatatype
MAX_TTL = 2**31 - 1
#: Longest CNAME chain followed inside a zone (loops stop earlier, at the first repeat).
MAX_CHAIN = 16
TCP_LIMIT = 65535

# Header flags (RFC 1035 4.1.1, RFC 4035 for CD).
QR, AA, TC, RD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0010
#: Flags a reply copies from its query.
COPIED = RD | CD


class Rcode(IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16


#: Question types that name no data: what each is answered with.
META_QTYPES: Mapping[int, Rcode] = MappingProxyType(
    {
        T.OPT: Rcode.FORMERR,
        T.IXFR: Rcode.REFUSED,  # no zone transfers
        T.AXFR: Rcode.REFUSED,
        T.MAILB: Rcode.NOTIMP,
        T.MAILA: Rcode.NOTIMP,
    }
)
#: Which RRset an ANY query gets (RFC 8482 4.1: one RRset); else the node's first one.
ANY_PREFERENCE = (T.CNAME, T.A, T.AAAA, T.MX, T.TXT, T.SRV, T.PTR, T.CAA, T.NS, T.SOA)
#: Types whose targets bring address records into the additional section (RFC 1035 3.3).
TARGET_TYPES = frozenset({T.MX, T.SRV, T.NS})

_HEADER = struct.Struct("!2sHHHHH")  # id, flags, qd, an, ns, ar
_OPT = struct.Struct("!BHHBBHH")  # root, type 41, payload, ext-rcode, version, flags, rdlen
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_DO = 0x8000
_OPCODE = 0x7800


# -- zones -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZoneIssue:
    """One problem in zone data: where (a config path below the zone) and what."""

    loc: Loc
    message: str


class ZoneError(ValueError):
    """Zone data that cannot be served; ``issues`` has every problem found."""

    def __init__(self, issues: Sequence[ZoneIssue]) -> None:
        super().__init__("; ".join(issue.message for issue in issues))
        self.issues = tuple(issues)


@dataclass(frozen=True, slots=True)
class RecordText:
    """A record as a config spells it: owner (relative to the zone, ``@``), type, rdata text."""

    name: str
    type: str
    value: str
    ttl: int | None = None

    def label(self) -> str:
        return f"{self.name} {self.type.upper()}"


@dataclass(frozen=True, slots=True, eq=False)
class Zone:
    """One immutable zone: its nodes, every existing name, cuts, and negative-answer SOA.

    Attributes:
        origin: the apex.
        nodes: owner → {rdtype → RRset}, for names that own data.
        names: every name that exists: owners and their ancestors down to the apex (empty
            non-terminals), which a wildcard never covers (RFC 4592 2.2.2).
        cuts: names below the apex with NS records (delegations).
        negative_soa: the apex SOA with TTL min(SOA TTL, MINIMUM) (RFC 2308 3).
        ttl: the zone's default TTL (synthesised RFC 8482 HINFO answers use it).
    """

    origin: dns.name.Name
    nodes: Mapping[dns.name.Name, Mapping[int, dns.rrset.RRset]]
    names: frozenset[dns.name.Name]
    cuts: tuple[dns.name.Name, ...]
    negative_soa: dns.rrset.RRset
    ttl: int

    @property
    def records(self) -> int:
        """How many resource records the zone holds."""
        return sum(len(rrset) for node in self.nodes.values() for rrset in node.values())


def _parse_origin(origin: str | dns.name.Name) -> dns.name.Name:
    if isinstance(origin, dns.name.Name):
        return origin
    try:
        return dns.name.from_text(origin)
    except dns.exception.DNSException as exc:
        raise ZoneError([ZoneIssue((), f"{origin!r} is not a domain name: {exc}")]) from None


class ZoneBuilder:
    """Collects RRsets for one zone, then checks and freezes them into a ``Zone``.

    Every record carries a ``loc`` (opaque to this module) that comes back in its issues.
    """

    def __init__(self, origin: str | dns.name.Name, *, ttl: int = 3600) -> None:
        self.origin = _parse_origin(origin)
        self.ttl = ttl
        self.issues: list[ZoneIssue] = []
        self._sets: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rdataset.Rdataset] = {}
        self._locs: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], Loc] = {}

    def add_text(self, loc: Loc, record: RecordText) -> None:
        """Parse and add one record; problems become issues at ``loc`` + the field's name."""
        name = self._owner(loc, record)
        rdtype = self._rdtype(loc, record)
        if name is None or rdtype is None:
            return
        value = _txt_convenience(record.value) if rdtype == T.TXT else record.value
        try:
            rdata = dns.rdata.from_text(IN, rdtype, value, self.origin, relativize=False)
        except (dns.exception.DNSException, ValueError) as exc:
            detail = str(exc) or type(exc).__name__
            self._issue((*loc, "value"), f"{record.label()}: {record.value!r}: {detail}")
            return
        self.add(loc, name, rdata, self.ttl if record.ttl is None else record.ttl)

    def add(self, loc: Loc, name: dns.name.Name, rdata: dns.rdata.Rdata, ttl: int) -> None:
        """Add one parsed record (absolute owner name)."""
        key = (name, rdata.rdtype)
        rdataset = self._sets.get(key)
        if rdataset is None:
            rdataset = self._sets[key] = dns.rdataset.Rdataset(IN, rdata.rdtype)
            self._locs[key] = loc
        elif dns.rdatatype.is_singleton(rdata.rdtype) and rdata not in rdataset:
            kind = dns.rdatatype.to_text(rdata.rdtype)
            self._issue(loc, f"{name} {kind}: a name has at most one {kind} record")
            return
        rdataset.add(rdata, ttl)  # unequal TTLs in one RRset: the lowest wins (RFC 2181 5.2)

    def build(self) -> Zone:
        """Check the whole zone and freeze it.

        Raises:
            ZoneError: with every issue found, including those of ``add_text``.
        """
        self._check_apex()
        self._check_cnames()
        if self.issues:
            raise ZoneError(self.issues)
        nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
        for (name, rdtype), rdataset in self._sets.items():
            nodes.setdefault(name, {})[rdtype] = _rrset(name, rdataset.ttl, rdataset)
        soa_rrset = nodes[self.origin][T.SOA]
        soa: SOA = soa_rrset[0]
        negative = _rrset(self.origin, min(soa_rrset.ttl, soa.minimum), soa_rrset)
        return Zone(
            origin=self.origin,
            nodes=MappingProxyType({k: MappingProxyType(v) for k, v in nodes.items()}),
            names=frozenset(_with_ancestors(nodes, self.origin)),
            cuts=tuple(n for n, node in nodes.items() if T.NS in node and n != self.origin),
            negative_soa=negative,
            ttl=self.ttl,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _issue(self, loc: Loc, message: str) -> None:
        self.issues.append(ZoneIssue(loc, message))

    def _owner(self, loc: Loc, record: RecordText) -> dns.name.Name | None:
        try:
            name = dns.name.from_text(record.name, self.origin)
        except dns.exception.DNSException as exc:
            self._issue((*loc, "name"), f"{record.label()}: bad owner name: {exc}")
            return None
        if not name.is_subdomain(self.origin):
            self._issue((*loc, "name"), f"{record.label()}: {name} is outside the zone")
            return None
        return name

    def _rdtype(self, loc: Loc, record: RecordText) -> dns.rdatatype.RdataType | None:
        try:
            rdtype = dns.rdatatype.from_text(record.type)
        except dns.exception.DNSException:
            self._issue((*loc, "type"), f"{record.label()}: unknown record type {record.type!r}")
            return None
        if dns.rdatatype.is_metatype(rdtype) or rdtype == T.OPT:
            self._issue((*loc, "type"), f"{record.label()}: {record.type} cannot be zone data")
            return None
        return rdtype

    def _check_apex(self) -> None:
        origin = self.origin
        for name, rdtype in self._sets:
            if rdtype == T.SOA and name != origin:
                self._issue(self._locs[(name, rdtype)], f"a SOA at {name}: one SOA, at the apex")
        if (origin, T.SOA) not in self._sets:
            self._issue((), f"zone {origin} has no SOA record at its apex")
        if (origin, T.NS) not in self._sets:
            self._issue((), f"zone {origin} has no NS records at its apex")

    def _check_cnames(self) -> None:
        """RFC 1034 3.6.2 / RFC 2181 10.1: a CNAME is alone at its name, and single."""
        types: dict[dns.name.Name, set[dns.rdatatype.RdataType]] = {}
        for name, rdtype in self._sets:
            types.setdefault(name, set()).add(rdtype)
        for name, rdtype in self._sets:
            if rdtype != T.CNAME:
                continue
            loc = self._locs[(name, rdtype)]
            if name == self.origin:
                self._issue(loc, f"{name} CNAME: the zone apex cannot be a CNAME")
                continue
            others = types[name] - {T.CNAME}
            if others:
                kinds = ", ".join(sorted(dns.rdatatype.to_text(t) for t in others))
                self._issue(loc, f"{name} CNAME: a CNAME cannot share its name with {kinds}")


def _rrset(name: dns.name.Name, ttl: int, rdatas: Iterable[dns.rdata.Rdata]) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, ttl, list(rdatas))


def _wire(name: dns.name.Name) -> bytes:
    """``name`` in uncompressed wire form."""
    return name.to_wire() or b""


def _txt_convenience(value: str) -> str:
    """An unquoted TXT value is one string (split into 255-octet pieces), not words."""
    if value.lstrip().startswith('"'):
        return value
    raw = value.encode()
    pieces = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + _escape_txt(p) + '"' for p in pieces)


def _escape_txt(piece: bytes) -> str:
    out = []
    for byte in piece:
        if byte in (0x22, 0x5C):  # " and \
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def _with_ancestors(names: Iterable[dns.name.Name], origin: dns.name.Name) -> set[dns.name.Name]:
    out: set[dns.name.Name] = set()
    for name in names:
        while name not in out and name.is_subdomain(origin):
            out.add(name)
            if name == origin:
                break
            name = name.parent()
    return out


class _Tokenizer(dns.tokenizer.Tokenizer):
    """dnspython's tokenizer, reporting the line of the last token read.

    The stock one counts the newline that ends a token before the token is used, so an error in
    the last field of a line was reported on the next line.
    """

    _token_line = 0

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        token = super().get(want_leading, want_comment)
        if not token.is_eol_or_eof():
            self._token_line = self.line_number - (self.ungotten_char == "\n")
        return token

    def where(self) -> tuple[str, int]:
        return self.filename, self._token_line or self.line_number


def zone_from_text(origin: str | dns.name.Name, text: str, filename: str) -> Zone:
    """A zone from master-file text (RFC 1035 5; ``$INCLUDE`` is not allowed).

    Raises:
        ZoneError: one issue (loc ``()``) whose message starts with ``FILENAME:LINE:`` for a
            syntax error, or names the file for a zone-level problem.
    """
    apex = _parse_origin(origin)
    zone = dns.zone.Zone(apex, IN, relativize=False)
    tokenizer = _Tokenizer(text, filename)
    try:
        with zone.writer(True) as txn:
            dns.zonefile.Reader(tokenizer, IN, txn).read()
    except dns.exception.SyntaxError as exc:  # already "file:line: detail"
        raise ZoneError([ZoneIssue((), str(exc))]) from None
    except dns.exception.DNSException as exc:  # e.g. a CNAME beside other data
        where = "{}:{}".format(*tokenizer.where())
        raise ZoneError([ZoneIssue((), f"{where}: {exc}")]) from None
    builder = ZoneBuilder(apex)
    for name, rdataset in zone.iterate_rdatasets():
        for rdata in rdataset:
            builder.add((), name, rdata, rdataset.ttl)
    try:
        return builder.build()
    except ZoneError as exc:
        raise ZoneError([ZoneIssue((), f"{filename}: {i.message}") for i in exc.issues]) from None


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


class _Chase:
    """Follows CNAMEs from ``qname`` inside one zone, collecting the chain (RFC 1034 4.3.2)."""

    def __init__(self, authority: Authority, zone: Zone, hinfo_any: bool) -> None:
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


# -- wire ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """A rendered answer for one (qname, qtype, qclass), ready to be patched per query.

    ``body`` holds the answer, authority and additional sections, rendered as if the question
    (``qname`` lowercased) sat at offset 12; ``core`` is the length of answer + authority, so
    ``body[:core]`` is the reply without the additional section (RFC 2181 9: dropping extra
    data does not set TC).
    """

    flags: int
    an: int
    ns: int
    ar: int
    body: bytes
    core: int


def render(qname: dns.name.Name, answer: Answer) -> Prepared:
    """Render ``answer``'s sections for a question for ``qname``.

    Only the full qname compresses against the question (a pointer to offset 12), so the
    query's case appears in owner names equal to it; other names keep the zone's case.
    """
    start = 12 + len(_wire(qname)) + 4
    buf = io.BytesIO()
    buf.seek(start)
    compress: dict[dns.name.Name, int] = {qname: 12}

    def section(rrsets: Iterable[dns.rrset.RRset]) -> int:
        return sum(r.to_wire(buf, compress, want_shuffle=False) for r in rrsets)

    an = section(answer.answer)
    ns = section(answer.authority)
    core = buf.tell() - start
    ar = section(answer.additional)
    flags = QR | (AA if answer.aa else 0) | (answer.rcode & 0xF)
    return Prepared(flags, an, ns, ar, buf.getvalue()[start:], core)


def _opt_record(payload: int, do: bool, ext_rcode: int = 0) -> bytes:
    return _OPT.pack(0, T.OPT, payload, ext_rcode, 0, _DO if do else 0, 0)


def _parse_fast(data: bytes) -> tuple[bytes, bytes, int, int] | None:
    """``(key, question, payload, do)`` of a plain query, else None (the slow path decides).

    Plain: QR=0, opcode QUERY, one question of uncompressed labels, nothing in answer or
    authority, and at most one additional record: an EDNS version 0 OPT at the root that ends
    the datagram. ``key`` is the lowercased qname + qtype + qclass; ``payload`` is -1 without
    EDNS.
    """
    n = len(data)
    if n < 17 or data[2] & 0xF8:
        return None
    counts = data[4:12]
    if counts != _ONE_QUESTION and counts != _ONE_QUESTION_OPT:
        return None
    i = 12
    while (length := data[i]) != 0:
        if length > 63:
            return None
        i += length + 1
        if i >= n:
            return None
    end = i + 1
    qend = end + 4
    if end > 12 + 255 or qend > n:
        return None
    key = data[12:end].lower() + data[end:qend]
    if data[11] == 0:
        return (key, data[12:qend], -1, 0) if qend == n else None
    if (
        qend + 11 > n
        or data[qend : qend + 3] != b"\x00\x00\x29"
        or data[qend + 6] != 0  # EDNS version > 0: BADVERS, on the slow path
        or qend + 11 + (data[qend + 9] << 8 | data[qend + 10]) != n
    ):
        return None
    return key, data[12:qend], data[qend + 3] << 8 | data[qend + 4], data[qend + 7] & 0x80


def _error_reply(data: bytes, rcode: Rcode) -> bytes:
    """Header-only reply (no question) with the query's ID, opcode and RD."""
    flags = QR | ((data[2] << 8) & (_OPCODE | RD)) | rcode
    return _HEADER.pack(data[:2], flags, 0, 0, 0, 0)


class Authority:
    """Everything one listener serves: its zones, the answer cache, EDNS settings.

    Immutable as far as answers go (the cache is a memo): a reload builds a new one.

    Args:
        zones: the zones; the longest origin that encloses a name serves it.
        udp_payload: the EDNS UDP payload size advertised and the cap on the client's
            (RFC 6891 6.2.5; 1232 avoids IP fragmentation, the DNS Flag Day 2020 value).
        cache_size: how many prepared answers are kept (first in, first out).
        hinfo_any: answer ANY with the synthesised HINFO instead of one real RRset.
    """

    def __init__(
        self,
        zones: Iterable[Zone],
        *,
        udp_payload: int = 1232,
        cache_size: int = 10_000,
        hinfo_any: bool = False,
    ) -> None:
        self.zones: Mapping[dns.name.Name, Zone] = MappingProxyType({z.origin: z for z in zones})
        self.udp_payload = max(512, udp_payload)
        self.cache_size = cache_size
        self.hinfo_any = hinfo_any
        self._cache: OrderedDict[bytes, Prepared] = OrderedDict()
        self._opt = (_opt_record(self.udp_payload, False), _opt_record(self.udp_payload, True))

    # -- lookup ------------------------------------------------------------------------------

    def zone_for(self, name: dns.name.Name) -> Zone | None:
        """The zone with the longest origin that encloses ``name``."""
        for i in range(len(name.labels)):
            zone = self.zones.get(dns.name.Name(name.labels[i:]))
            if zone is not None:
                return zone
        return None

    def lookup(self, qname: dns.name.Name, qtype: int, qclass: int = IN) -> Answer:
        """The answer to one question (no wire format involved)."""
        meta = META_QTYPES.get(qtype)
        if meta is not None:
            return Answer(meta)
        zone = self.zone_for(qname) if qclass == IN else None
        if zone is None:
            return Answer(Rcode.REFUSED)  # not ours: no recursion, RA stays clear
        return _Chase(self, zone, self.hinfo_any).run(qname, qtype)

    def additional(self, rrsets: Iterable[dns.rrset.RRset]) -> tuple[dns.rrset.RRset, ...]:
        """A and AAAA RRsets of the MX/SRV/NS targets in ``rrsets`` that we hold."""
        out: list[dns.rrset.RRset] = []
        seen: set[dns.name.Name] = set()
        for rrset in rrsets:
            if rrset.rdtype not in TARGET_TYPES:
                continue
            for rdata in rrset:
                name = rdata.exchange if rrset.rdtype == T.MX else rdata.target
                if name in seen:
                    continue
                seen.add(name)
                zone = self.zone_for(name)
                node = zone.nodes.get(name, {}) if zone is not None else {}
                out.extend(node[t] for t in (T.A, T.AAAA) if t in node)
        return tuple(out)

    # -- wire --------------------------------------------------------------------------------

    def respond(self, data: bytes, *, tcp: bool = False, truncate: bool = False) -> bytes | None:
        """The reply to one query message, or None when it must be dropped.

        Args:
            data: the query (for TCP, without its length prefix).
            tcp: the reply may be as long as 65535 bytes; over UDP the limit is 512 without
                EDNS, else the client's payload size (at least 512) capped by ours.
            truncate: reply with TC=1 and no records whatever the answer (an RRL slip).

        Never raises: a query that does not parse gets FORMERR when its header is readable,
        and None otherwise; responses (QR=1) are never answered.
        """
        parsed = _parse_fast(data)
        if parsed is None:
            slow = self._parse_slow(data)
            if not isinstance(slow, tuple):
                return slow
            parsed = slow
        key, question, payload, do = parsed
        qflags = (data[2] << 8 | data[3]) & COPIED
        opt = b"" if payload < 0 else self._opt[do != 0]
        if truncate:
            return _HEADER.pack(data[:2], QR | TC | qflags, 1, 0, 0, opt != b"") + question + opt
        prepared = self._cache.get(key)
        if prepared is None:
            prepared = self._prepare(key)
        if tcp:
            limit = TCP_LIMIT
        elif payload < 512:
            limit = 512
        else:
            limit = payload if payload < self.udp_payload else self.udp_payload
        return _assemble(prepared, data[:2], qflags, question, opt, limit)

    def _prepare(self, key: bytes) -> Prepared:
        qname, end = dns.name.from_wire(key, 0)
        qtype, qclass = struct.unpack_from("!HH", key, end)
        prepared = render(qname, self.lookup(qname, qtype, qclass))
        cache = self._cache
        if len(cache) >= self.cache_size:
            cache.popitem(last=False)
        cache[key] = prepared
        return prepared

    def _parse_slow(self, data: bytes) -> tuple[bytes, bytes, int, int] | bytes | None:
        """dnspython's parser for what ``_parse_fast`` declined: the parsed tuple, or the
        final reply (FORMERR, NOTIMP, BADVERS), or None to drop."""
        if len(data) < 12 or data[2] & 0x80:
            return None  # no readable header, or a response: never answer those
        if (data[2] >> 3) & 0xF != 0:
            return _error_reply(data, Rcode.NOTIMP)
        try:
            message = dns.message.from_wire(data)
        except Exception:  # anything dnspython raises on hostile bytes
            return _error_reply(data, Rcode.FORMERR)
        if len(message.question) != 1:
            return _error_reply(data, Rcode.FORMERR)
        q = message.question[0]
        wire = _wire(q.name)
        question = wire + struct.pack("!HH", q.rdtype, q.rdclass)
        do = message.ednsflags & _DO
        if message.edns > 0:
            flags = QR | ((data[2] << 8 | data[3]) & COPIED)
            opt = _opt_record(self.udp_payload, do != 0, Rcode.BADVERS >> 4)
            return _HEADER.pack(data[:2], flags, 1, 0, 0, 1) + question + opt
        payload = message.payload if message.edns == 0 else -1
        return wire.lower() + question[-4:], question, payload, do


def _assemble(
    p: Prepared, ident: bytes, qflags: int, question: bytes, opt: bytes, limit: int
) -> bytes:
    """ID + header + the query's question + the prepared sections + OPT, within ``limit``."""
    extra = opt != b""
    fixed = 12 + len(question) + len(opt)
    if fixed + len(p.body) <= limit:
        head = _HEADER.pack(ident, p.flags | qflags, 1, p.an, p.ns, p.ar + extra)
        return head + question + p.body + opt
    if fixed + p.core <= limit:
        head = _HEADER.pack(ident, p.flags | qflags, 1, p.an, p.ns, extra)
        return head + question + p.body[: p.core] + opt
    return _HEADER.pack(ident, p.flags | qflags | TC, 1, 0, 0, extra) + question + opt


# -- response rate limiting ------------------------------------------------------------------


class Verdict(IntEnum):
    """What to do with one response under RRL."""

    SEND = 0
    DROP = 1
    SLIP = 2  # send a truncated, empty reply instead: a real client retries over TCP


@dataclass(slots=True)
class _Bucket:
    balance: float
    stamp: float
    limited: int = 0


@dataclass(slots=True)
class RateLimiter:
    """BIND-style response rate limiting per client prefix.

    Each prefix earns ``rate`` responses per second, up to a balance of ``rate``; every response
    spends one. Below zero the prefix is limited: its responses are dropped, except every
    ``slip``-th, which is sent truncated (0: never). The debt may grow to ``rate * window``, so a
    flood has to stop for up to ``window`` seconds before answers resume.

    Memory is bounded by ``max_clients``: when the table is full, prefixes whose balance has
    recovered (indistinguishable from new ones) are forgotten, then the oldest, down to 90%.
    """

    rate: float
    window: float = 15.0
    slip: int = 2
    max_clients: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _table: dict[object, _Bucket] = field(default_factory=dict)

    def check(self, prefix: object) -> Verdict:
        """Account one response to ``prefix`` and say whether to send it."""
        now = self.clock()
        bucket = self._table.get(prefix)
        if bucket is None:
            if len(self._table) >= self.max_clients:
                self._evict(now)
            bucket = self._table[prefix] = _Bucket(self.rate, now)
        else:
            bucket.balance = min(self.rate, bucket.balance + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        bucket.balance -= 1
        if bucket.balance >= 0:
            return Verdict.SEND
        bucket.balance = max(bucket.balance, -self.rate * self.window)
        bucket.limited += 1
        if self.slip and bucket.limited % self.slip == 0:
            return Verdict.SLIP
        return Verdict.DROP

    def __len__(self) -> int:
        return len(self._table)

    def _evict(self, now: float) -> None:
        rate = self.rate
        table = self._table
        recovered = [k for k, b in table.items() if b.balance + (now - b.stamp) * rate >= rate]
        for key in recovered:
            del table[key]
        target = self.max_clients * 9 // 10
        while len(table) > target:
            del table[next(iter(table))]


def client_prefix(host: str) -> str | bytes:
    """The RRL account of a client address: its /24 (IPv4) or /56 (IPv6) network.

    IPv4-mapped IPv6 addresses count as IPv4; a scope (``%eth0``) is ignored.
    """
    if ":" not in host:
        return host.rpartition(".")[0]
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped).rpartition(".")[0]
    return address.packed[:7]
