"""Sequence sets, modified UTF-7 mailbox names and flags (tier 1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aionet.proto.imap import (
    ImapSyntaxError,
    SequenceSet,
    decode_mailbox,
    encode_mailbox,
    normalize_flag,
)

# -- sequence sets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "largest", "numbers"),
    [
        ("1", 5, [1]),
        ("1,3:5,7:*", 9, [1, 3, 4, 5, 7, 8, 9]),
        ("5:3", 9, [3, 4, 5]),  # either order
        ("*", 9, [9]),
        ("*:4", 6, [4, 5, 6]),
        ("1:*", 0, []),  # an empty mailbox
        ("*", 0, []),
        ("2,2,1:3", 5, [1, 2, 3]),  # unique and sorted
        ("4:2,1,3", 5, [1, 2, 3, 4]),
        ("8:10", 5, []),  # beyond the mailbox
        ("559:*", 100, [100]),  # RFC 9051 §6.4.9: n:* includes the last even when n is larger
        ("4294967295", 4294967295, [4294967295]),
    ],
)
def test_resolve(text: str, largest: int, numbers: list[int]) -> None:
    seq = SequenceSet.parse(text)
    assert seq.resolve(largest) == numbers
    for n in range(0, largest + 3 if largest < 100 else 3):
        assert seq.contains(n, largest) == (n in numbers)


def test_resolve_of_a_huge_range_is_clamped_not_materialised() -> None:
    assert SequenceSet.parse("1:4294967295").resolve(3) == [1, 2, 3]


@pytest.mark.parametrize(
    "text",
    ["", "0", "1:0", "1,,2", ",1", "1:", ":1", "a", "1:2:3", "4294967296", "1" * 30, "1,$", "$$"],
)
def test_invalid_sets(text: str) -> None:
    with pytest.raises(ImapSyntaxError):
        SequenceSet.parse(text)


def test_saved_result_marker() -> None:
    seq = SequenceSet.parse("$")
    assert seq.is_saved and seq.resolve(10) == [] and str(seq) == "$"
    assert not SequenceSet.parse("1:*").is_saved


def test_exceeds_names_sequence_numbers_past_the_mailbox() -> None:
    assert SequenceSet.parse("1:7").exceeds(5)
    assert not SequenceSet.parse("1:*,5").exceeds(5)


def test_compact_form() -> None:
    assert str(SequenceSet.from_numbers([7, 1, 2, 3, 9, 8, 5])) == "1:3,5,7:9"
    assert str(SequenceSet.parse("3:1,*,4:*")) == "3:1,*,4:*"
    assert str(SequenceSet.from_numbers([])) == ""


@given(st.sets(st.integers(min_value=1, max_value=200)))
def test_from_numbers_round_trips(numbers: set[int]) -> None:
    seq = SequenceSet.from_numbers(numbers)
    assert seq.resolve(200) == sorted(numbers)
    if numbers:
        assert SequenceSet.parse(str(seq)) == seq


# -- modified UTF-7 (RFC 3501 §5.1.3) ---------------------------------------------------------


def test_rfc3501_example() -> None:
    wire = b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    name = "~peter/mail/台北/日本語"
    assert decode_mailbox(wire) == name
    assert encode_mailbox(name) == wire


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("&", b"&-"),
        ("Tom & Jerry", b"Tom &- Jerry"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("€uro", b"&IKw-uro"),
        ("\U0001f600", b"&2D3eAA-"),  # outside the BMP: a surrogate pair
        ("a\tb", b"a&AAk-b"),  # control characters are encoded
        ("", b""),
    ],
)
def test_mutf7_pairs(name: str, wire: bytes) -> None:
    assert encode_mailbox(name) == wire
    assert decode_mailbox(wire) == name


@pytest.mark.parametrize(
    "wire",
    [
        b"&U,BTFw",  # no "-"
        b"&AGE-",  # "a" must be itself, not encoded
        b"&U,BTFw-&ZeVnLIqe-",  # two adjacent runs must be one
        b"&U,BTF-",  # odd number of bytes / bad length
        b"&U,BTFx-",  # non-zero unused bits
        b"&2D0-",  # a lone high surrogate
        b"&U/BTFw-",  # "/" is "," in modified base64
        b"Entw\xc3\xbcrfe",  # 8-bit without UTF8=ACCEPT
        b"&!-",
    ],
)
def test_invalid_mutf7(wire: bytes) -> None:
    with pytest.raises(ImapSyntaxError):
        decode_mailbox(wire)


def test_utf8_mode_takes_utf8_and_ampersand_as_is() -> None:
    assert decode_mailbox("Entwürfe &-".encode(), utf8=True) == "Entwürfe &-"
    assert encode_mailbox("台北 & co", utf8=True) == "台北 & co".encode()
    with pytest.raises(ImapSyntaxError):
        decode_mailbox(b"\xff", utf8=True)


@given(st.text())
def test_mutf7_round_trip(name: str) -> None:
    wire = encode_mailbox(name)
    assert wire.isascii() and b"\r" not in wire and b"\n" not in wire
    assert decode_mailbox(wire) == name
    assert encode_mailbox(decode_mailbox(wire)) == wire


@given(st.binary(max_size=40))
def test_mutf7_decoder_accepts_only_canonical_forms(wire: bytes) -> None:
    try:
        name = decode_mailbox(wire)
    except ImapSyntaxError:
        return
    assert encode_mailbox(name) == wire


# -- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        (b"\\seen", "\\Seen"),
        (b"\\ANSWERED", "\\Answered"),
        (b"\\Flagged", "\\Flagged"),
        (b"\\dElEtEd", "\\Deleted"),
        (b"\\draft", "\\Draft"),
        (b"$Forwarded", "$Forwarded"),
        (b"Junk", "Junk"),
    ],
)
def test_flags_are_normalised(raw: bytes, flag: str) -> None:
    assert normalize_flag(raw) == flag


def test_recent_and_unknown_system_flags() -> None:
    with pytest.raises(ImapSyntaxError):
        normalize_flag(b"\\Recent")
    assert normalize_flag(b"\\recent", allow_recent=True) == "\\Recent"
    with pytest.raises(ImapSyntaxError):
        normalize_flag(b"\\Important")
