"""``protocol: dns`` — an authoritative DNS server over UDP and TCP on one bind.

Options (``listener.options``)::

    zones:
      aionet.test:                   # the zone's origin
        ttl: 300                     # default TTL of its records (seconds, or 5m, 1h)
        soa: {mname: ns1, rname: hostmaster, serial: 1, refresh: 1h, retry: 10m,
              expire: 7d, minimum: 5m}        # every key optional; these are the defaults
        ns: [ns1]                    # default: the SOA's mname
        records:
          - {name: www, type: A, value: 127.0.0.1, ttl: 60}
          - {name: "@", type: MX, value: "10 mail"}
          - {name: "*.lab", type: TXT, value: any text}    # unquoted TXT = one string
      example.test:
        zone_file: zones/example.test.zone   # a master file instead (relative to the cwd)
    edns_udp_size: 1232              # EDNS payload size we advertise and the cap on UDP replies
    tcp_timeout: 10s                 # a TCP query must arrive in full within this time
    cache_size: 10000                # prepared answers kept (name, type, class)
    any_response: rrset              # ANY → one RRset, or "hinfo" (RFC 8482)
    rrl: {responses_per_second: 0, window: 15, slip: 2, max_clients: 100000}   # 0 = off

Names in records and rdata are relative to the zone unless they end with a dot. Every value is
parsed by dnspython (``dns.rdata.from_text``), so each record type validates as in a master
file; errors are reported at the record's ``name``/``type``/``value`` by ``aionet check``.
The wire work lives in ``aionet.proto.dns``; this module validates options, drives UDP
(``datagram``) and TCP (``handle``, length-prefixed, several queries per connection), and
applies response rate limiting to UDP.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..config.types import ConfigPath, Duration, parse_duration
from ..core.handler import DatagramHandler, HandlerOptions, StreamHandler
from ..proto.dns import (
    MAX_TTL,
    Authority,
    RateLimiter,
    RecordText,
    Verdict,
    Zone,
    ZoneBuilder,
    ZoneError,
    ZoneIssue,
    client_prefix,
    zone_from_text,
)

if TYPE_CHECKING:
    from pathlib import Path

    from ..core.handler import Connection, Services

__all__ = ["DnsHandler", "DnsOptions"]


def _seconds(value: object) -> object:
    """A TTL-like value: an integer of seconds, or a duration such as ``5m``."""
    if isinstance(value, str):
        return int(parse_duration(value))
    return value


#: Seconds, from ``300`` or ``5m``; 0 .. 2**31-1 (RFC 2181 8).
Ttl = Annotated[int, BeforeValidator(_seconds), Field(ge=0, le=MAX_TTL)]


def _text(value: object) -> object:
    """A number where rdata text is expected (``value: 10``) is that number's text."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class RecordSpec(HandlerOptions):
    """One record of a YAML zone."""

    name: Annotated[str, BeforeValidator(_text)] = "@"
    type: str
    value: Annotated[str, BeforeValidator(_text)]
    ttl: Ttl | None = None


class SoaSpec(HandlerOptions):
    """The zone's SOA; names are relative to the zone unless they end with a dot."""

    mname: str = "ns1"
    rname: str = "hostmaster"
    serial: int = Field(default=1, ge=0, le=2**32 - 1)
    refresh: Ttl = 3600
    retry: Ttl = 600
    expire: Ttl = 604800
    minimum: Ttl = 300

    def text(self) -> str:
        return (
            f"{self.mname} {self.rname} {self.serial} {self.refresh} {self.retry} "
            f"{self.expire} {self.minimum}"
        )


class ZoneSpec(HandlerOptions):
    """One zone: YAML records (with SOA/NS defaults) or a master file."""

    ttl: Ttl = 3600
    soa: SoaSpec | None = None
    ns: list[str] | None = None
    records: list[RecordSpec] = Field(default_factory=list)
    zone_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.zone_file is not None and (self.records or self.soa or self.ns is not None):
            raise ValueError("zone_file replaces soa, ns and records: use one or the other")
        return self


class RrlOptions(HandlerOptions):
    """Response rate limiting (UDP only), BIND-style, per client /24 or /56."""

    responses_per_second: float = Field(default=0, ge=0)
    window: Duration = Field(default=15.0, ge=1, le=3600)
    slip: int = Field(default=2, ge=0, le=10)
    max_clients: int = Field(default=100_000, ge=1)


class DnsOptions(HandlerOptions):
    """``listener.options`` of a ``dns`` listener (see the module docstring)."""

    zones: dict[str, ZoneSpec] = Field(min_length=1)
    edns_udp_size: int = Field(default=1232, ge=512, le=4096)
    tcp_timeout: Duration = Field(default=10.0, gt=0)
    cache_size: int = Field(default=10_000, ge=1)
    any_response: Literal["rrset", "hinfo"] = "rrset"
    rrl: RrlOptions = Field(default_factory=RrlOptions)

    _built: tuple[Zone, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _build_zones(self) -> Self:
        """Build every zone now, so ``aionet check`` reports zone errors at their keys."""
        built: list[Zone] = []
        errors: list[InitErrorDetails] = []
        for origin, spec in self.zones.items():
            try:
                built.append(_build_zone(origin, spec))
            except ZoneError as exc:
                errors.extend(_error(("zones", origin, *i.loc), i.message) for i in exc.issues)
        if errors:
            raise ValidationError.from_exception_data("zones", errors)
        self._built = tuple(built)
        return self

    @property
    def built_zones(self) -> tuple[Zone, ...]:
        """The zones, validated and frozen."""
        return self._built


def _error(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return InitErrorDetails(type=error, loc=loc, input=None)


def _build_zone(origin: str, spec: ZoneSpec) -> Zone:
    """The zone of one ``zones:`` entry; SOA and NS defaults fill what the records lack."""
    if spec.zone_file is not None:
        return _load_zone_file(origin, spec.zone_file)
    builder = ZoneBuilder(origin, ttl=spec.ttl)
    soa = spec.soa or SoaSpec()
    if not _has_apex(spec.records, "SOA", origin):
        builder.add_text(("soa",), RecordText("@", "SOA", soa.text()))
    for i, record in enumerate(spec.records):
        builder.add_text(("records", i), RecordText(**record.model_dump()))
    servers = spec.ns
    if servers is None:
        servers = [] if _has_apex(spec.records, "NS", origin) else [soa.mname]
    for j, server in enumerate(servers):
        builder.add_text(("ns", j), RecordText("@", "NS", server))
    return builder.build()


def _has_apex(records: list[RecordSpec], rdtype: str, origin: str) -> bool:
    """Whether ``records`` has one of type ``rdtype`` at the zone's apex."""
    apex = {"@", origin.rstrip(".").lower() + "."}
    return any(r.type.upper() == rdtype and r.name.lower() in apex for r in records)


def _load_zone_file(origin: str, path: Path) -> Zone:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ZoneError([ZoneIssue(("zone_file",), f"cannot read {path}: {reason}")]) from None
    try:
        return zone_from_text(origin, text, str(path))
    except ZoneError as exc:
        issues = [ZoneIssue(("zone_file",), f"zone file {i.message}") for i in exc.issues]
        raise ZoneError(issues) from None


class DnsHandler(StreamHandler, DatagramHandler):
    """``protocol: dns``: authoritative answers for the configured zones, UDP and TCP."""

    transport_kinds = frozenset({"tcp", "udp"})
    reload_always = True  # zone files are re-read on every reload, and swapped atomically
    Options = DnsOptions
    options: DnsOptions

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        opts = self.options
        self.authority = Authority(
            opts.built_zones,
            udp_payload=opts.edns_udp_size,
            cache_size=opts.cache_size,
            hinfo_any=opts.any_response == "hinfo",
        )
        rrl = opts.rrl
        self.rrl: RateLimiter | None = None
        if rrl.responses_per_second > 0:
            self.rrl = RateLimiter(rrl.responses_per_second, rrl.window, rrl.slip, rrl.max_clients)
        #: Responses RRL dropped / answered truncated (``slip``), since start.
        self.rrl_dropped = 0
        self.rrl_slipped = 0
        self._waiting: set[asyncio.StreamWriter] = set()
        self._draining = False

    async def start(self) -> None:
        zones = {str(z.origin): z.records for z in self.authority.zones.values()}
        self.log.info("dns_zones_loaded", zones=zones)

    # -- UDP -----------------------------------------------------------------------------------

    def datagram(self, data: bytes, addr: Any) -> bytes | None:
        rrl = self.rrl
        if rrl is not None and isinstance(addr, tuple):
            verdict = rrl.check(client_prefix(addr[0]))
            if verdict is Verdict.DROP:
                self.rrl_dropped += 1
                return None
            if verdict is Verdict.SLIP:
                self.rrl_slipped += 1
                return self.authority.respond(data, truncate=True)
        return self.authority.respond(data)

    # -- TCP -----------------------------------------------------------------------------------

    async def handle(self, conn: Connection) -> None:
        """Length-prefixed queries (RFC 1035 4.2.2), answered in order until EOF or timeout."""
        writer = conn.writer
        while not self._draining:
            query = await self._read_query(conn)
            if query is None:
                return
            reply = self.authority.respond(query, tcp=True)
            if reply is None:
                return  # not a query we answer: the stream cannot be trusted any more
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()

    async def _read_query(self, conn: Connection) -> bytes | None:
        """The next message, or None on EOF, timeout or a draining server."""
        self._waiting.add(conn.writer)
        try:
            async with asyncio.timeout(self.options.tcp_timeout):
                head = await conn.reader.readexactly(2)
                self._waiting.discard(conn.writer)
                return await conn.reader.readexactly(int.from_bytes(head, "big"))
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        finally:
            self._waiting.discard(conn.writer)

    async def drain(self) -> None:
        """Finish the query in progress on each connection; close the ones waiting for one."""
        self._draining = True
        for writer in list(self._waiting):
            with contextlib.suppress(Exception):
                writer.close()

    async def undrain(self) -> None:
        self._draining = False
