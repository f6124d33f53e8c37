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

Private modules behind this face (h11 style): ``_common`` (constants), ``_zones``, ``_lookup``,
``_wire`` (``Authority``, rendering, the fast path) and ``_rrl``.
"""

from ._common import MAX_TTL as MAX_TTL
from ._common import Rcode as Rcode
from ._lookup import Answer as Answer
from ._rrl import RateLimiter as RateLimiter
from ._rrl import Verdict as Verdict
from ._rrl import client_prefix as client_prefix
from ._wire import Authority as Authority
from ._wire import Prepared as Prepared
from ._wire import render as render
from ._zones import RecordText as RecordText
from ._zones import Zone as Zone
from ._zones import ZoneBuilder as ZoneBuilder
from ._zones import ZoneError as ZoneError
from ._zones import ZoneIssue as ZoneIssue
from ._zones import zone_from_text as zone_from_text

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
