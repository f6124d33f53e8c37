"""SASL decoding shared by SMTP, POP3 (and IMAP next): one meaning everywhere."""

from __future__ import annotations

import contextlib
from base64 import b64encode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aionet.proto.sasl import (
    PlainCredentials,
    SaslError,
    decode_login,
    decode_plain,
    decode_response,
    parse_plain,
)


def b64(data: bytes) -> str:
    return b64encode(data).decode()


def test_plain_with_and_without_authzid() -> None:
    assert decode_plain(b64(b"\x00alice\x00s3cret")) == PlainCredentials("alice", "s3cret")
    assert decode_plain(b64(b"alice\x00alice\x00pw")) == PlainCredentials("alice", "pw", "alice")
    assert parse_plain("\x00bob\x00p\u00e4ss".encode()) == PlainCredentials("bob", "p\u00e4ss")
    assert "s3cret" not in repr(decode_plain(b64(b"\x00alice\x00s3cret")))


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("*", "aborted"),
        ("  *\r\n", "aborted"),
        ("not base64!", "base64"),
        ("YWJ", "base64"),  # missing padding
        (b64(b"alice\x00pw"), "malformed"),  # two parts
        (b64(b"a\x00b\x00c\x00d"), "malformed"),  # four parts
        (b64(b"\x00\x00pw"), "malformed"),  # empty authcid
        (b64(b"\x00al\xffice\x00pw"), "malformed"),  # not UTF-8
        (b64(b"mallory\x00alice\x00pw"), "authzid"),  # acting as another user
    ],
)
def test_plain_refusals_carry_a_reason(response: str, reason: str) -> None:
    with pytest.raises(SaslError) as info:
        decode_plain(response)
    assert info.value.reason == reason


def test_login_and_raw_responses() -> None:
    assert decode_login(b64("z\u00fcrich".encode())) == "z\u00fcrich"
    assert decode_response(b64(b"\x00\x01") + "\r\n") == b"\x00\x01"
    with pytest.raises(SaslError, match="UTF-8"):
        decode_login(b64(b"\xff"))


@given(st.binary(max_size=200))
def test_any_response_decodes_or_raises_sasl_error(data: bytes) -> None:
    for response in (data, b64encode(data)):
        with contextlib.suppress(SaslError):
            decode_plain(response)
