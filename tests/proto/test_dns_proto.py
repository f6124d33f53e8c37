"""The sans-IO DNS authority: zones, lookup rules, the wire fast path, RRL. No sockets."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aionet.handlers.dns import DnsOptions
from aionet.proto.dns import (
    Authority,
    RateLimiter,
    Verdict,
    ZoneError,
    client_prefix,
    zone_from_text,
)

ZONE = "aionet.test"

RECORDS: list[dict[str, Any]] = [
    {"name": "www", "type": "A", "value": "127.0.0.1", "ttl": 60},
    {"name": "www", "type": "AAAA", "value": "::1", "ttl": 60},
    {"name": "Web", "type": "A", "value": "127.0.0.5"},
    {"name": "alias", "type": "CNAME", "value": "Web"},
    {"name": "chain1", "type": "CNAME", "value": "chain2"},
    {"name": "chain2", "type": "CNAME", "value": "alias"},
    {"name": "loop1", "type": "CNAME", "value": "loop2"},
    {"name": "loop2", "type": "CNAME", "value": "loop1"},
    {"name": "dangling", "type": "CNAME", "value": "nowhere"},
    {"name": "outside", "type": "CNAME", "value": "www.example.com."},
    {"name": "@", "type": "MX", "value": "10 mail"},
    {"name": "mail", "type": "A", "value": "127.0.0.2"},
    {"name": "@", "type": "TXT", "value": "v=spf1 -all"},
    {"name": "_sip._udp", "type": "SRV", "value": "0 5 5060 sip"},
    {"name": "sip", "type": "A", "value": "127.0.0.3"},
    {"name": "1.0.0.127", "type": "PTR", "value": "www"},
    {"name": "@", "type": "CAA", "value": '0 issue "letsencrypt.org"'},
    {"name": "*.wild", "type": "A", "value": "127.0.0.9"},
    {"name": "*.wild", "type": "TXT", "value": "wildcard"},
    {"name": "host.wild", "type": "A", "value": "127.0.0.10"},
    {"name": "deep.ent.wild", "type": "A", "value": "127.0.0.11"},
    {"name": "*.cnamewild", "type": "CNAME", "value": "www"},
    {"name": "sub", "type": "NS", "value": "ns.sub"},
    {"name": "ns.sub", "type": "A", "value": "127.0.0.53"},
]


def options(records: list[dict[str, Any]] | None = None, **zone: Any) -> DnsOptions:
    extra = {k: zone.pop(k) for k in list(zone) if k in ("edns_udp_size", "any_response")}
    spec = {"ttl": 300, "records": RECORDS if records is None else records, **zone}
    return DnsOptions.model_validate({"zones": {ZONE: spec}, **extra})


def authority(records: list[dict[str, Any]] | None = None, **kw: Any) -> Authority:
    cache_size = kw.pop("cache_size", 10_000)
    opts = options(records, **kw)
    return Authority(
        opts.built_zones,
        udp_payload=opts.edns_udp_size,
        cache_size=cache_size,
        hinfo_any=opts.any_response == "hinfo",
    )


@pytest.fixture(scope="module")
def auth() -> Authority:
    return authority()


def query(name: str, rdtype: str = "A", **kw: Any) -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype, **kw)


def ask(a: Authority, q: dns.message.Message | bytes, **kw: Any) -> dns.message.Message:
    wire = q if isinstance(q, bytes) else q.to_wire()
    reply = a.respond(wire, **kw)
    assert reply is not None
    return dns.message.from_wire(reply)


def texts(section: list[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in section for line in rrset.to_text().splitlines()]


# -- record types ----------------------------------------------------------------------------

TYPE_CASES = [
    ("www", "A", "www.aionet.test. 60 IN A 127.0.0.1"),
    ("www", "AAAA", "www.aionet.test. 60 IN AAAA ::1"),
    ("alias", "CNAME", "alias.aionet.test. 300 IN CNAME Web.aionet.test."),
    ("@", "MX", "aionet.test. 300 IN MX 10 mail.aionet.test."),
    ("@", "TXT", 'aionet.test. 300 IN TXT "v=spf1 -all"'),
    ("@", "NS", "aionet.test. 300 IN NS ns1.aionet.test."),
    (
        "@",
        "SOA",
        "aionet.test. 300 IN SOA ns1.aionet.test. hostmaster.aionet.test. 1 3600 600 604800 300",
    ),
    ("_sip._udp", "SRV", "_sip._udp.aionet.test. 300 IN SRV 0 5 5060 sip.aionet.test."),
    ("1.0.0.127", "PTR", "1.0.0.127.aionet.test. 300 IN PTR www.aionet.test."),
    ("@", "CAA", 'aionet.test. 300 IN CAA 0 issue "letsencrypt.org"'),
]


@pytest.mark.parametrize(("name", "rdtype", "expected"), TYPE_CASES)
def test_every_record_type_is_answered_authoritatively(
    auth: Authority, name: str, rdtype: str, expected: str
) -> None:
    qname = ZONE if name == "@" else f"{name}.{ZONE}"
    r = ask(auth, query(qname, rdtype))
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and r.flags & dns.flags.QR
    assert not r.flags & dns.flags.RA
    assert texts(r.answer) == [expected]


def test_mx_and_srv_targets_bring_their_addresses_as_additional_data(auth: Authority) -> None:
    r = ask(auth, query(ZONE, "MX"))
    assert texts(r.additional) == ["mail.aionet.test. 300 IN A 127.0.0.2"]
    r = ask(auth, query(f"_sip._udp.{ZONE}", "SRV"))
    assert texts(r.additional) == ["sip.aionet.test. 300 IN A 127.0.0.3"]


# -- negative answers and errors --------------------------------------------------------------


def test_nxdomain_carries_the_soa_with_the_negative_ttl() -> None:
    a = authority(ttl=3600, soa={"minimum": 120})
    r = ask(a, query(f"missing.{ZONE}"))
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert r.answer == []
    [soa] = r.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 120  # min(SOA TTL, MINIMUM)


def test_nodata_is_noerror_with_the_soa(auth: Authority) -> None:
    r = ask(auth, query(f"www.{ZONE}", "MX"))
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []
    assert [rrset.rdtype for rrset in r.authority] == [dns.rdatatype.SOA]


@pytest.mark.parametrize("name", ["example.com", "test", "aionet.test.example.com", "."])
def test_names_outside_our_zones_are_refused_without_aa_or_ra(auth: Authority, name: str) -> None:
    r = ask(auth, query(name))
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.flags & (dns.flags.AA | dns.flags.RA)
    assert r.answer == [] and r.authority == []


def test_other_classes_are_refused(auth: Authority) -> None:
    r = ask(auth, query(f"www.{ZONE}", "A", rdclass="CH"))
    assert r.rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize(("qtype", "rcode"), [("AXFR", "REFUSED"), ("MAILB", "NOTIMP")])
def test_meta_query_types(auth: Authority, qtype: str, rcode: str) -> None:
    r = ask(auth, query(ZONE, qtype))
    assert r.rcode() == dns.rcode.from_text(rcode)


def header(ident: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


QUESTION = b"\x03www\x06aionet\x04test\x00\x00\x01\x00\x01"


@pytest.mark.parametrize(
    "wire",
    [
        header(7, 0x0100, 0),  # no question
        header(7, 0x0100, 2) + QUESTION + QUESTION,  # two questions
        header(7, 0x0100, 1) + QUESTION[:-3],  # a question cut short
        header(7, 0x0100, 1) + QUESTION + b"junk",  # trailing bytes
        header(7, 0x0100, 1) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label > 63
        header(7, 0x0100, 1, ar=1) + QUESTION + b"\x00\x00\x29",  # an OPT cut short
    ],
)
def test_malformed_queries_get_a_header_only_formerr(auth: Authority, wire: bytes) -> None:
    reply = auth.respond(wire)
    assert reply is not None
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", reply)
    assert ident == 7 and flags & 0x8000 and flags & 0xF == dns.rcode.FORMERR
    assert flags & 0x0100  # RD copied
    assert (qd, an, ns, ar) == (0, 0, 0, 0)


def test_two_opt_records_are_formerr(auth: Authority) -> None:
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    reply = auth.respond(header(9, 0, 1, ar=2) + QUESTION + opt + opt)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS])
def test_opcodes_other_than_query_are_notimp(auth: Authority, opcode: dns.opcode.Opcode) -> None:
    q = query(f"www.{ZONE}")
    q.set_opcode(opcode)
    r = ask(auth, q)
    assert r.rcode() == dns.rcode.NOTIMP and r.id == q.id and r.opcode() == opcode


@pytest.mark.parametrize("wire", [b"", b"\x00" * 11, header(1, 0x8000, 1) + QUESTION])
def test_short_datagrams_and_responses_are_dropped(auth: Authority, wire: bytes) -> None:
    assert auth.respond(wire) is None


def test_edns_version_above_zero_is_badvers(auth: Authority) -> None:
    r = ask(auth, query(f"www.{ZONE}", use_edns=1))
    assert r.rcode() == dns.rcode.BADVERS
    assert r.edns == 0 and r.answer == []
    assert r.question[0].name == dns.name.from_text(f"www.{ZONE}")


# -- wildcards (RFC 4592) --------------------------------------------------------------------


def test_wildcard_synthesises_answers_for_missing_names(auth: Authority) -> None:
    r = ask(auth, query(f"anything.wild.{ZONE}"))
    assert texts(r.answer) == ["anything.wild.aionet.test. 300 IN A 127.0.0.9"]
    r = ask(auth, query(f"two.labels.wild.{ZONE}", "TXT"))
    assert texts(r.answer) == ['two.labels.wild.aionet.test. 300 IN TXT "wildcard"']


def test_wildcard_nodata_for_a_type_it_lacks(auth: Authority) -> None:
    r = ask(auth, query(f"anything.wild.{ZONE}", "MX"))
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []


def test_existing_names_are_never_covered_by_the_wildcard(auth: Authority) -> None:
    r = ask(auth, query(f"host.wild.{ZONE}"))
    assert texts(r.answer) == ["host.wild.aionet.test. 300 IN A 127.0.0.10"]
    r = ask(auth, query(f"host.wild.{ZONE}", "TXT"))  # exists, no TXT: NODATA, not wildcard
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []


def test_an_empty_non_terminal_blocks_the_wildcard(auth: Authority) -> None:
    r = ask(auth, query(f"ent.wild.{ZONE}"))  # exists (deep.ent.wild below it): NODATA
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []
    r = ask(auth, query(f"other.ent.wild.{ZONE}"))  # closest encloser ent.wild has no "*"
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_the_wildcard_owner_itself_answers_directly(auth: Authority) -> None:
    r = ask(auth, query(f"*.wild.{ZONE}"))
    assert texts(r.answer) == ["*.wild.aionet.test. 300 IN A 127.0.0.9"]


def test_a_wildcard_cname_is_chased(auth: Authority) -> None:
    r = ask(auth, query(f"x.cnamewild.{ZONE}"))
    assert texts(r.answer) == [
        "x.cnamewild.aionet.test. 300 IN CNAME www.aionet.test.",
        "www.aionet.test. 60 IN A 127.0.0.1",
    ]


# -- CNAME -----------------------------------------------------------------------------------


def test_cname_chain_is_followed_inside_the_zone(auth: Authority) -> None:
    r = ask(auth, query(f"chain1.{ZONE}"))
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert texts(r.answer) == [
        "chain1.aionet.test. 300 IN CNAME chain2.aionet.test.",
        "chain2.aionet.test. 300 IN CNAME alias.aionet.test.",
        "alias.aionet.test. 300 IN CNAME Web.aionet.test.",
        "Web.aionet.test. 300 IN A 127.0.0.5",
    ]


def test_cname_loop_stops_after_one_turn(auth: Authority) -> None:
    r = ask(auth, query(f"loop1.{ZONE}"))
    assert r.rcode() == dns.rcode.NOERROR
    assert texts(r.answer) == [
        "loop1.aionet.test. 300 IN CNAME loop2.aionet.test.",
        "loop2.aionet.test. 300 IN CNAME loop1.aionet.test.",
    ]


def test_cname_to_a_missing_name_is_nxdomain_with_the_chain(auth: Authority) -> None:
    r = ask(auth, query(f"dangling.{ZONE}"))
    assert r.rcode() == dns.rcode.NXDOMAIN  # RFC 6604: the rcode of the last name
    assert texts(r.answer) == ["dangling.aionet.test. 300 IN CNAME nowhere.aionet.test."]
    assert [rrset.rdtype for rrset in r.authority] == [dns.rdatatype.SOA]


def test_cname_out_of_the_zone_is_left_to_the_resolver(auth: Authority) -> None:
    r = ask(auth, query(f"outside.{ZONE}"))
    assert r.rcode() == dns.rcode.NOERROR and r.authority == []
    assert texts(r.answer) == ["outside.aionet.test. 300 IN CNAME www.example.com."]


def test_a_long_chain_stops_at_the_limit() -> None:
    records = [{"name": f"c{i}", "type": "CNAME", "value": f"c{i + 1}"} for i in range(40)]
    r = ask(authority(records), query(f"c0.{ZONE}"))
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 16


# -- referrals -------------------------------------------------------------------------------


def test_names_at_or_below_a_cut_get_a_referral_with_glue(auth: Authority) -> None:
    for name in (f"sub.{ZONE}", f"host.sub.{ZONE}", f"ns.sub.{ZONE}"):
        r = ask(auth, query(name))
        assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.AA
        assert r.answer == []
        assert texts(r.authority) == ["sub.aionet.test. 300 IN NS ns.sub.aionet.test."]
        assert texts(r.additional) == ["ns.sub.aionet.test. 300 IN A 127.0.0.53"]


def test_ds_at_a_cut_is_answered_by_the_parent(auth: Authority) -> None:
    r = ask(auth, query(f"sub.{ZONE}", "DS"))
    assert r.flags & dns.flags.AA and r.answer == []
    assert [rrset.rdtype for rrset in r.authority] == [dns.rdatatype.SOA]


# -- case, header bits, IDs ------------------------------------------------------------------


def test_query_case_is_preserved_in_question_and_owner_names(auth: Authority) -> None:
    q = query("wWw.AiOnEt.TeSt")
    reply = auth.respond(q.to_wire())
    assert reply is not None
    assert reply[12 : 12 + 17] == b"\x03wWw\x06AiOnEt\x04TeSt\x00"
    r = dns.message.from_wire(reply)
    assert r.question[0].name.to_text() == "wWw.AiOnEt.TeSt."
    assert r.answer[0].name.to_text() == "wWw.AiOnEt.TeSt."


def test_a_cname_target_keeps_the_zones_case(auth: Authority) -> None:
    r = ask(auth, query("ALIAS.aionet.test"))
    assert texts(r.answer) == [
        "ALIAS.aionet.test. 300 IN CNAME Web.aionet.test.",
        "Web.aionet.test. 300 IN A 127.0.0.5",
    ]


def test_each_reply_carries_its_own_id_and_rd_cd_bits(auth: Authority) -> None:
    for ident, flags in [(1, dns.flags.RD), (65535, 0), (4242, dns.flags.RD | dns.flags.CD)]:
        q = query(f"www.{ZONE}", flags=flags)
        q.id = ident
        r = ask(auth, q)
        assert r.id == ident
        assert r.flags & (dns.flags.RD | dns.flags.CD) == flags
        assert not r.flags & (dns.flags.RA | dns.flags.TC)


# -- EDNS and truncation ---------------------------------------------------------------------


def test_opt_is_echoed_only_when_the_query_has_one(auth: Authority) -> None:
    r = ask(auth, query(f"www.{ZONE}", use_edns=0, payload=4096))
    assert r.edns == 0 and r.payload == 1232 and not r.ednsflags & dns.flags.DO
    r = ask(auth, query(f"www.{ZONE}", use_edns=0, want_dnssec=True))
    assert r.ednsflags & dns.flags.DO  # RFC 3225: DO copied
    r = ask(auth, query(f"www.{ZONE}"))
    assert r.edns == -1


def test_edns_options_in_the_query_are_ignored(auth: Authority) -> None:
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    r = ask(auth, query(f"www.{ZONE}", use_edns=0, options=[cookie]))
    assert texts(r.answer) == ["www.aionet.test. 60 IN A 127.0.0.1"]


BIG = [{"name": "big", "type": "TXT", "value": f"{i:03d}" + "x" * 80} for i in range(12)]


def big_authority(**kw: Any) -> Authority:
    return authority([*RECORDS, *BIG], **kw)


@pytest.mark.parametrize(
    ("edns", "payload", "ours", "truncated"),
    [
        (False, 0, 1232, True),  # no OPT: 512
        (True, 300, 1232, True),  # below 512: 512
        (True, 4096, 1232, False),  # the client allows more than we do: 1232
        (True, 1232, 1232, False),
        (True, 1232, 4096, False),
    ],
)
def test_udp_size_limits(edns: bool, payload: int, ours: int, truncated: bool) -> None:
    a = big_authority(edns_udp_size=ours)
    q = query(f"big.{ZONE}", "TXT", use_edns=0 if edns else False, payload=payload)
    full = a.respond(q.to_wire(), tcp=True)
    assert full is not None and 512 < len(full) <= 1232
    reply = a.respond(q.to_wire())
    assert reply is not None
    r = dns.message.from_wire(reply)
    assert bool(r.flags & dns.flags.TC) is truncated
    if truncated:  # header + question (+ OPT) only
        assert r.answer == [] and r.authority == [] and r.additional == []
        assert r.question[0].name == q.question[0].name
        assert len(reply) == len(q.to_wire())  # same question and OPT shape as the query
    else:
        assert reply == full
        assert len(r.answer[0]) == 12


def test_answers_over_our_payload_size_are_truncated_over_udp_only() -> None:
    many = [{"name": "huge", "type": "TXT", "value": f"{i:03d}" + "y" * 200} for i in range(10)]
    a = authority([*RECORDS, *many], edns_udp_size=1232)
    q = query(f"huge.{ZONE}", "TXT", use_edns=0, payload=4096)
    r = ask(a, q)
    assert r.flags & dns.flags.TC and r.answer == []
    r = ask(a, q, tcp=True)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 10


def test_additional_data_is_dropped_before_the_answer_is_truncated() -> None:
    mx = [{"name": "@", "type": "MX", "value": f"{i} mx{i:02d}" + "m" * 30} for i in range(8)]
    addresses = [
        {"name": f"mx{i:02d}" + "m" * 30, "type": "AAAA", "value": f"2001:db8::{j}"}
        for i in range(8)
        for j in range(1, 4)
    ]
    a = authority([*mx, *addresses])
    q = query(ZONE, "MX")
    full = ask(a, q, tcp=True)
    assert len(full.additional) == 8
    r = ask(a, q)  # 512 bytes: the MX records fit, their addresses do not
    assert not r.flags & dns.flags.TC
    assert len(r.answer[0]) == 8 and r.additional == []


def test_an_rrl_slip_reply_is_truncated_and_empty(auth: Authority) -> None:
    q = query(f"www.{ZONE}", use_edns=0)
    r = ask(auth, q, truncate=True)
    assert r.flags & dns.flags.TC and r.answer == [] and r.id == q.id
    assert r.question == q.question and r.edns == 0


# -- ANY (RFC 8482) --------------------------------------------------------------------------


def test_any_gets_a_single_rrset(auth: Authority) -> None:
    r = ask(auth, query(f"www.{ZONE}", "ANY"))
    assert texts(r.answer) == ["www.aionet.test. 60 IN A 127.0.0.1"]
    r = ask(auth, query(ZONE, "ANY"))
    assert len(r.answer) == 1


def test_any_can_be_answered_with_the_rfc8482_hinfo() -> None:
    a = authority(any_response="hinfo")
    r = ask(a, query(f"www.{ZONE}", "ANY"))
    assert texts(r.answer) == ['www.aionet.test. 300 IN HINFO "RFC8482" ""']


def test_any_for_a_missing_name_is_nxdomain(auth: Authority) -> None:
    assert ask(auth, query(f"missing.{ZONE}", "ANY")).rcode() == dns.rcode.NXDOMAIN


# -- the fast path ---------------------------------------------------------------------------


def test_a_cache_hit_renders_nothing_and_parses_nothing_with_dnspython(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = authority()
    warm = query(f"www.{ZONE}")
    assert a.respond(warm.to_wire()) is not None
    later = [
        query("WWW.AIONET.TEST", use_edns=0, payload=4096, flags=0),
        query("www.aionet.test", want_dnssec=True),
        query("Www.Aionet.Test"),
    ]
    wires = [q.to_wire() for q in later]  # rendered before dnspython is booby-trapped
    miss = query(f"mail.{ZONE}").to_wire()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("dnspython was called on the cached path")

    for target, attr in [
        (dns.message, "from_wire"),
        (dns.message.Message, "to_wire"),
        (dns.rrset.RRset, "to_wire"),
        (dns.rdataset.Rdataset, "to_wire"),
        (dns.name.Name, "to_wire"),
        (dns.name, "from_wire"),
    ]:
        monkeypatch.setattr(target, attr, boom)
    replies = [a.respond(w) for w in wires]
    with pytest.raises(AssertionError, match="cached path"):
        a.respond(miss)  # the test can fail: a miss does render
    monkeypatch.undo()
    for q, reply in zip(later, replies, strict=True):
        assert reply is not None
        r = dns.message.from_wire(reply)
        assert r.id == q.id and r.question == q.question
        assert r.answer[0].name.to_text() == q.question[0].name.to_text()
        assert [rd.to_text() for rd in r.answer[0]] == ["127.0.0.1"]
        assert r.edns == q.edns


def test_a_question_seen_before_skips_the_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hit path: question bytes answered before are not walked label by label again,
    whatever the id, the flags, the EDNS payload or the DO bit; another case is another
    question (parsed once, then remembered too)."""
    from aionet.proto.dns import _wire

    a = authority()
    first = [query(f"www.{ZONE}"), query(f"www.{ZONE}", use_edns=0, payload=1400)]
    for q in first:
        assert a.respond(q.to_wire()) is not None
    again = [
        query(f"www.{ZONE}", flags=0),
        query(f"www.{ZONE}", use_edns=0, payload=600, want_dnssec=True),
        query(f"www.{ZONE}", use_edns=0, payload=100),
    ]

    def boom(data: bytes) -> Any:
        raise AssertionError("parsed again")

    monkeypatch.setattr(_wire, "_parse_fast", boom)
    for q in again:
        r = dns.message.from_wire(a.respond(q.to_wire(), tcp=False) or b"")
        assert r.id == q.id and r.question == q.question
        assert r.flags & dns.flags.RD == q.flags & dns.flags.RD
        assert r.edns == q.edns and (r.ednsflags & dns.flags.DO) == (q.ednsflags & dns.flags.DO)
        assert [rd.to_text() for rd in r.answer[0]] == ["127.0.0.1"]
    with pytest.raises(AssertionError, match="parsed again"):
        a.respond(query("WWW.aionet.test").to_wire())  # the test can fail: new bytes parse
    monkeypatch.undo()
    with_cookie = query(f"www.{ZONE}", use_edns=0, options=[dns.edns.GenericOption(10, b"c" * 8)])
    assert ask(a, with_cookie).answer  # an OPT with options takes the parsing path


def test_the_slow_path_gives_the_same_answer(auth: Authority) -> None:
    fast = query(f"www.{ZONE}", use_edns=0)
    slow = query(f"www.{ZONE}", use_edns=0)
    slow.id = fast.id
    slow.authority.append(dns.rrset.from_text(f"x.{ZONE}.", 1, "IN", "A", "10.0.0.1"))
    assert auth.respond(slow.to_wire()) == auth.respond(fast.to_wire())


def test_a_question_with_a_compression_pointer_is_answered_by_the_slow_path(
    auth: Authority,
) -> None:
    # The qname's suffix "aionet.test" points at itself spelt out in... nowhere legal: dnspython
    # rejects forward/self pointers, so this is FORMERR, never an exception.
    wire = header(5, 0x0100, 1) + b"\x03www\xc0\x0c\x00\x01\x00\x01"
    reply = auth.respond(wire)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR


def test_the_cache_is_bounded() -> None:
    a = authority(cache_size=3)
    for i in range(10):
        ask(a, query(f"n{i}.{ZONE}"))
    assert len(a._cache) == 3
    assert ask(a, query(f"n0.{ZONE}")).rcode() == dns.rcode.NXDOMAIN  # evicted, re-rendered


# -- never raise -----------------------------------------------------------------------------


def check_reply(wire: bytes, reply: bytes | None) -> None:
    if reply is None:
        return
    assert reply[:2] == wire[:2] and reply[2] & 0x80
    dns.message.from_wire(reply)  # every reply is a well-formed message


FUZZ = authority([*RECORDS, *BIG])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    for tcp in (False, True):
        check_reply(data, FUZZ.respond(data, tcp=tcp))
    FUZZ.respond(data, truncate=True)


SEEDS = [
    query(f"www.{ZONE}").to_wire(),
    query(f"big.{ZONE}", "TXT", use_edns=0, payload=1400).to_wire(),
    query(f"x.wild.{ZONE}", "ANY", want_dnssec=True).to_wire(),
    query(f"chain1.{ZONE}", use_edns=0).to_wire(),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    wire = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(wire) - 1, 0)))
        if kind == "flip" and wire:
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and wire:
            wire[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del wire[pos:]
        else:
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(wire)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_queries_never_raise(data: bytes) -> None:
    for tcp in (False, True):
        check_reply(data, FUZZ.respond(data, tcp=tcp))


WARM = authority([*RECORDS, *BIG])
COLD = authority([*RECORDS, *BIG])
for _seed in SEEDS:
    WARM.respond(_seed)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_the_hit_path_answers_exactly_as_the_parsing_path(data: bytes) -> None:
    """Every query near a remembered one (header bits, counts, OPT fields, cuts, inserts)
    gets from the warmed authority the bytes a cold one gives, over UDP and TCP."""
    for tcp in (False, True):
        COLD._seen.clear()  # never a hit: every answer parsed
        assert WARM.respond(data, tcp=tcp) == COLD.respond(data, tcp=tcp)


# -- zones from options ----------------------------------------------------------------------


def errors(exc: pytest.ExceptionInfo[ValidationError]) -> dict[tuple[Any, ...], str]:
    return {tuple(e["loc"]): e["msg"] for e in exc.value.errors(include_url=False)}


def test_record_errors_are_positioned_at_the_record_field() -> None:
    bad = [
        {"name": "www", "type": "A", "value": "127.0.0.1"},
        {"name": "bad", "type": "A", "value": "300.1.1.1"},
        {"name": "x", "type": "BOGUS", "value": "1"},
        {"name": "www.example.com.", "type": "A", "value": "127.0.0.1"},
        {"name": "mx", "type": "MX", "value": "10"},
    ]
    with pytest.raises(ValidationError) as exc:
        options(bad)
    found = errors(exc)
    assert set(found) == {
        ("zones", ZONE, "records", 1, "value"),
        ("zones", ZONE, "records", 2, "type"),
        ("zones", ZONE, "records", 3, "name"),
        ("zones", ZONE, "records", 4, "value"),
    }
    assert found[("zones", ZONE, "records", 1, "value")].startswith("bad A: '300.1.1.1'")
    assert "unknown record type 'BOGUS'" in found[("zones", ZONE, "records", 2, "type")]
    assert "outside the zone" in found[("zones", ZONE, "records", 3, "name")]


def rr(name: str, rdtype: str, value: str) -> dict[str, Any]:
    return {"name": name, "type": rdtype, "value": value}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([rr("w", "A", "1.2.3.4"), rr("w", "CNAME", "x")], "a CNAME cannot share its name with A"),
        ([rr("w", "CNAME", "a"), rr("w", "CNAME", "b")], "at most one CNAME"),
        ([rr("@", "CNAME", "a")], "apex cannot be a CNAME"),
        ([rr("x", "SOA", "a b 1 2 3 4 5")], "one SOA, at the apex"),
        ([rr("@", "SOA", "a b 1 2 3 4 5"), rr("@", "SOA", "a b 2 2 3 4 5")], "at most one SOA"),
        ([rr("x", "ANY", "1")], "cannot be zone data"),
    ],
)
def test_zone_rules_are_checked(records: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        options(records)
    [(loc, msg)] = errors(exc).items()
    assert loc[:3] == ("zones", ZONE, "records") and message in msg


def test_soa_and_ns_defaults_and_overrides() -> None:
    a = authority([], soa={"mname": "dns.example.net.", "serial": 7, "minimum": "1m"})
    r = ask(a, query(ZONE, "SOA"))
    assert texts(r.answer) == [
        "aionet.test. 300 IN SOA dns.example.net. hostmaster.aionet.test. 7 3600 600 604800 60"
    ]
    r = ask(a, query(ZONE, "NS"))
    assert texts(r.answer) == ["aionet.test. 300 IN NS dns.example.net."]
    a = authority([], ns=["a.ns.example.", "b"])
    assert len(ask(a, query(ZONE, "NS")).answer[0]) == 2


def test_an_apex_soa_or_ns_in_the_records_replaces_the_default() -> None:
    records = [
        rr("aionet.test.", "SOA", "a.example. b.example. 9 1 1 1 1"),
        rr("@", "NS", "ns.example."),
    ]
    a = authority(records)
    [soa] = ask(a, query(ZONE, "SOA")).answer[0]
    assert soa.serial == 9
    assert texts(ask(a, query(ZONE, "NS")).answer) == ["aionet.test. 300 IN NS ns.example."]


def test_ttls_accept_durations_and_unequal_ttls_take_the_lowest() -> None:
    records: list[dict[str, Any]] = [
        {"name": "t", "type": "A", "value": "10.0.0.1", "ttl": "5m"},
        {"name": "t", "type": "A", "value": "10.0.0.2", "ttl": 30},
    ]
    r = ask(authority(records, ttl="1h"), query(f"t.{ZONE}"))
    assert r.answer[0].ttl == 30


def test_numbers_from_yaml_are_rdata_text() -> None:
    a = authority([{"name": 7, "type": "TXT", "value": 12345}])
    [rdata] = ask(a, query(f"7.{ZONE}", "TXT")).answer[0]
    assert rdata.strings == (b"12345",)


def test_unquoted_txt_is_one_string_and_long_ones_are_split() -> None:
    records = [
        {"name": "t", "type": "TXT", "value": 'two words "quoted"'},
        {"name": "long", "type": "TXT", "value": "z" * 300},
        {"name": "q", "type": "TXT", "value": '"a" "b"'},
    ]
    a = authority(records)
    [rdata] = ask(a, query(f"t.{ZONE}", "TXT")).answer[0]
    assert rdata.strings == (b'two words "quoted"',)
    [rdata] = ask(a, query(f"long.{ZONE}", "TXT")).answer[0]
    assert [len(s) for s in rdata.strings] == [255, 45]
    [rdata] = ask(a, query(f"q.{ZONE}", "TXT")).answer[0]
    assert rdata.strings == (b"a", b"b")


def test_options_need_a_zone_and_one_source_per_zone(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        DnsOptions.model_validate({"zones": {}})
    spec = {"zone_file": str(tmp_path / "z"), "records": [{"type": "A", "value": "1.2.3.4"}]}
    with pytest.raises(ValidationError, match="zone_file replaces"):
        DnsOptions.model_validate({"zones": {ZONE: spec}})


def test_a_bad_zone_name_is_reported_at_its_key() -> None:
    with pytest.raises(ValidationError) as exc:
        DnsOptions.model_validate({"zones": {"a..b": {}}})
    [(loc, msg)] = errors(exc).items()
    assert loc == ("zones", "a..b") and "not a domain name" in msg


# -- zone files ------------------------------------------------------------------------------

ZONE_FILE = """\
$ORIGIN aionet.test.
$TTL 300
@   IN SOA ns1 hostmaster (
        2024010101 ; serial
        3600 600 604800 60 )
    IN NS ns1
ns1 IN A 127.0.0.1
www IN A 127.0.0.2
*.lab 60 IN TXT "lab"
"""


def test_a_zone_file_is_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "aionet.test.zone").write_text(ZONE_FILE)
    monkeypatch.chdir(tmp_path)  # zone_file is relative to the working directory
    opts = DnsOptions.model_validate({"zones": {ZONE: {"zone_file": "zones/aionet.test.zone"}}})
    a = Authority(opts.built_zones)
    assert texts(ask(a, query(f"www.{ZONE}")).answer) == ["www.aionet.test. 300 IN A 127.0.0.2"]
    r = ask(a, query(f"x.lab.{ZONE}", "TXT"))
    assert texts(r.answer) == ['x.lab.aionet.test. 60 IN TXT "lab"']
    r = ask(a, query(f"nope.{ZONE}"))
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].ttl == 60


@pytest.mark.parametrize(
    ("line", "text", "message"),
    [
        (8, "www IN A 300.1.1.1\n", ""),  # the bad value is the last field of its line
        (8, "www IN BOGUS 1\n", "unknown rdatatype 'BOGUS'"),
        (8, "www IN MX 10\n", ""),
        (9, "ok IN A 10.0.0.1\nbad IN AAAA 1.2.3.4\nfine IN A 10.0.0.2\n", ""),
        (9, "www IN A 10.0.0.1\nwww IN CNAME ns1\n", "CNAME"),  # found by dnspython's node
    ],
)
def test_zone_file_errors_name_the_file_and_line(line: int, text: str, message: str) -> None:
    with pytest.raises(ZoneError) as exc:
        zone_from_text(ZONE, ZONE_FILE.replace("www IN A 127.0.0.2\n", text), "z.zone")
    [issue] = exc.value.issues
    assert issue.message.startswith(f"z.zone:{line}: "), issue.message
    assert message in issue.message


def test_a_zone_file_without_soa_or_ns(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match=r"z\.zone: zone aionet\.test\. has no SOA"):
        zone_from_text(ZONE, "$TTL 60\n@ IN NS ns1\n", "z.zone")
    path = tmp_path / "missing.zone"
    with pytest.raises(ValidationError) as exc:
        DnsOptions.model_validate({"zones": {ZONE: {"zone_file": str(path)}}})
    [(loc, msg)] = errors(exc).items()
    assert loc == ("zones", ZONE, "zone_file") and f"cannot read {path}" in msg


def test_a_syntax_error_in_a_zone_file_is_positioned_at_zone_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.zone"
    path.write_text(ZONE_FILE + "oops IN A not-an-address\n")
    with pytest.raises(ValidationError) as exc:
        DnsOptions.model_validate({"zones": {ZONE: {"zone_file": str(path)}}})
    [(loc, msg)] = errors(exc).items()
    assert loc == ("zones", ZONE, "zone_file")
    assert msg.startswith(f"zone file {path}:10: ")


# -- response rate limiting ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rrl_sends_the_rate_then_drops_and_slips() -> None:
    clock = Clock()
    rrl = RateLimiter(5, window=15, slip=2, clock=clock)
    verdicts = [rrl.check("10.0.0") for _ in range(11)]
    assert verdicts[:5] == [Verdict.SEND] * 5
    assert verdicts[5:] == [Verdict.DROP, Verdict.SLIP] * 3
    assert rrl.check("10.0.1") is Verdict.SEND  # another prefix has its own account


def test_rrl_recovers_at_the_rate_and_remembers_debt_up_to_the_window() -> None:
    clock = Clock()
    rrl = RateLimiter(10, window=2, slip=0, clock=clock)
    for _ in range(1000):  # a flood: the debt is capped at rate * window = 20
        rrl.check("p")
    clock.now += 2.0  # 20 earned: back to zero, still limited
    assert rrl.check("p") is Verdict.DROP
    clock.now += 0.2  # +2
    assert rrl.check("p") is Verdict.SEND
    clock.now += 100
    assert [rrl.check("p") for _ in range(11)].count(Verdict.SEND) == 10  # never above rate


@pytest.mark.parametrize(("slip", "expected"), [(0, Verdict.DROP), (1, Verdict.SLIP)])
def test_rrl_slip_zero_never_slips_and_one_always_does(slip: int, expected: Verdict) -> None:
    rrl = RateLimiter(1, slip=slip, clock=Clock())
    rrl.check("p")
    assert {rrl.check("p") for _ in range(10)} == {expected}


def test_rrl_memory_is_bounded_and_keeps_limited_clients() -> None:
    clock = Clock()
    rrl = RateLimiter(2, window=15, slip=0, max_clients=100, clock=clock)
    for _ in range(5):
        rrl.check("attacker")
    clock.now += 0.01
    for i in range(10_000):
        rrl.check(f"client-{i}")
        clock.now += 10  # each client recovered by the time the table fills
    assert len(rrl) <= 100
    assert rrl.check("attacker") is Verdict.SEND  # its debt was paid long ago
    burst = RateLimiter(2, window=15, slip=0, max_clients=100, clock=Clock())
    for i in range(10_000):  # nobody recovers: the oldest are forgotten, memory stays bounded
        burst.check(f"c{i}")
    assert len(burst) <= 100


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("192.0.2.1", "192.0.2.254", True),
        ("192.0.2.1", "192.0.3.1", False),
        ("2001:db8:0:ab00::1", "2001:db8:0:abff:ffff::1", True),
        ("2001:db8:0:ab00::1", "2001:db8:0:ac00::1", False),
        ("::ffff:192.0.2.7", "192.0.2.99", True),
        ("fe80::1%eth0", "fe80::2", True),
    ],
)
def test_client_prefix_is_a_slash_24_or_slash_56(a: str, b: str, same: bool) -> None:
    assert (client_prefix(a) == client_prefix(b)) is same
