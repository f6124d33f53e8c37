"""DNS on the wire: ``Authority`` answers query bytes from prepared, pre-rendered answers."""

from __future__ import annotations

import io
import struct
from collections import OrderedDict
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import dns.message
import dns.name
import dns.rrset

from ._common import AA, COPIED, IN, META_QTYPES, QR, RD, TARGET_TYPES, TC, TCP_LIMIT, Rcode, T
from ._lookup import Answer, _Chase
from ._zones import Zone, _name_wire

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


_HEADER = struct.Struct("!2sHHHHH")  # id, flags, qd, an, ns, ar
_OPT = struct.Struct("!BHHBBHH")  # root, type 41, payload, ext-rcode, version, flags, rdlen
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_DO = 0x8000
_OPT_HEAD = b"\x00\x00\x29"  # an OPT record: the root name, type 41
_OPCODE = 0x7800


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
    start = 12 + len(_name_wire(qname)) + 4
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
        cache_size: how many prepared answers are kept (first in, first out), and how many
            questions as they came on the wire (each case variant counts) are remembered for
            the hit path, which answers a plain query whose question bytes it has seen before
            without parsing them again.
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
        self._seen: dict[bytes, Prepared] = {}  # question bytes as sent (case kept) → answer
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
        if not truncate:
            hit = self._hit(data, tcp)
            if hit is not None:
                return hit
        parsed = _parse_fast(data)
        fast = parsed is not None
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
        if fast:
            seen = self._seen
            if len(seen) >= self.cache_size:
                del seen[next(iter(seen))]
            seen[question] = prepared
        return _assemble(prepared, data[:2], qflags, question, opt, self._limit(payload, tcp))

    def _hit(self, data: bytes, tcp: bool) -> bytes | None:
        """The reply to a plain query (as ``_parse_fast`` defines it, with an OPT record, if
        any, that carries no options) whose question bytes were answered before, or None.
        An exact match with a question ``_parse_fast`` accepted is what makes the labels safe
        to skip; the header and the OPT record are checked here as there."""
        n = len(data)
        if n < 17 or data[2] & 0xF8:
            return None
        counts = data[4:12]
        if counts == _ONE_QUESTION:
            question, payload, do = data[12:], -1, 0
        elif (
            counts == _ONE_QUESTION_OPT
            and n >= 28
            and data[n - 11 : n - 8] == _OPT_HEAD
            and data[n - 5] == 0  # EDNS version 0
            and data[n - 2] == data[n - 1] == 0  # no options
        ):
            question, payload, do = data[12 : n - 11], data[n - 8] << 8 | data[n - 7], data[n - 4]
        else:
            return None
        prepared = self._seen.get(question)
        if prepared is None:
            return None
        qflags = (data[2] << 8 | data[3]) & COPIED
        opt = b"" if payload < 0 else self._opt[do >> 7]
        return _assemble(prepared, data[:2], qflags, question, opt, self._limit(payload, tcp))

    def _limit(self, payload: int, tcp: bool) -> int:
        """The largest reply allowed: 65535 over TCP; over UDP 512 without EDNS, else the
        client's payload size (at least 512) capped by ours."""
        if tcp:
            return TCP_LIMIT
        if payload < 512:
            return 512
        return payload if payload < self.udp_payload else self.udp_payload

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
        wire = _name_wire(q.name)
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
