"""DNS constants every part shares: classes, types, header flags, rcodes, limits."""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

import dns.rdataclass
import dns.rdatatype

if TYPE_CHECKING:
    from collections.abc import Mapping


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
