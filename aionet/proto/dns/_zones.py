"""DNS zones: record texts and master files → an immutable ``Zone`` (errors as ``ZoneIssue``)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.rdata
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.tokenizer
import dns.zone
import dns.zonefile

from ._common import IN, Loc, T

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from dns.rdtypes.ANY.SOA import SOA


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


def _name_wire(name: dns.name.Name) -> bytes:
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
