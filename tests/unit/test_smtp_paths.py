"""aionet's short cut for ``<local@domain>`` in MAIL and RCPT gives what aiosmtpd's parser
gives, for every argument (the short cut only ever declines to aiosmtpd's parser)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from aionet.smtp._aiosmtpd import EngineBase


def engine(limit: int = 0) -> EngineBase:
    out = object.__new__(EngineBase)  # _getaddr reads nothing but the local-part limit
    out.local_part_limit = limit
    return out


def outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:  # aiosmtpd's parser raises IndexError on "<": so must we
        return type(exc)


def both(arg: str, limit: int = 0) -> tuple[object, object]:
    reference = object.__new__(SMTP)
    reference.local_part_limit = limit
    return (
        outcome(lambda: engine(limit)._getaddr(arg)),
        outcome(lambda: SMTP._getaddr(reference, arg)),
    )


@pytest.mark.parametrize(
    "arg",
    [
        "<bench@bench.test>",
        "<bench@bench.test> SIZE=1024 BODY=8BITMIME",
        "<first.last+tag@sub.example.org>",
        "<a!#$%&'*+/=?^_`{|}~-@x>",
        "<a..b@x>",
        "<.a@x>",
        "<a@x.>",
        "<a@-x>",
        '<"quoted local"@x>',
        "<a@[127.0.0.1]>",
        "<@relay:a@x>",
        "<>",
        " <a@x>",
        "<a@x",
        "a@x",
        "<a@x>>",
        "<a@x>  SIZE=1",
        "<a@x>\tSIZE=1",
        "<a@x> (comment) SIZE=1",
        "<a@x>(comment)",
        "<a@x>x",
        "<",
        "<ü@x>",
        "",
    ],
)
def test_the_short_cut_agrees_with_aiosmtpd(arg: str) -> None:
    mine, theirs = both(arg)
    assert mine == theirs


def test_the_local_part_limit_applies_on_the_short_cut() -> None:
    assert both("<" + "a" * 64 + "@x>", 64) == (("a" * 64 + "@x", ""),) * 2
    assert both("<" + "a" * 65 + "@x>", 64) == ((None, None),) * 2


ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
PIECES = st.sampled_from(
    [*ATEXT, ".", "@", "<", ">", " ", '"', "[", "]", ":", ",", "ü", "\\", "(", ")", "\t", "=", "S"]
)
TAILS = st.sampled_from(["", " SIZE=10", "  BODY=7BIT", "\t(c) X=1", "(c)", "x", " "])


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(PIECES, max_size=24).map("".join),
    st.sampled_from(["<", ""]),
    st.booleans(),
    TAILS,
)
def test_any_argument_gets_the_same_answer(
    body: str, opening: str, closing: bool, tail: str
) -> None:
    arg = opening + body + (">" if closing else "") + tail
    mine, theirs = both(arg)
    assert mine == theirs


ATOMS = r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,6}(\.[a-z0-9+-]{1,4}){0,2}"
LOCAL = st.from_regex(ATOMS, fullmatch=True)
DOMAIN = st.from_regex(r"[a-zA-Z0-9-]{1,6}(\.[a-zA-Z0-9-]{1,6}){0,2}", fullmatch=True)


@settings(max_examples=1000, deadline=None)
@given(LOCAL, DOMAIN, TAILS)
def test_simple_paths_get_the_same_answer(local: str, domain: str, tail: str) -> None:
    mine, theirs = both(f"<{local}@{domain}>{tail}")
    assert mine == theirs


def test_a_simple_path_does_not_reach_the_header_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiosmtpd.smtp

    def boom(*args: object) -> object:
        raise AssertionError("parsed by email's header parser")

    monkeypatch.setattr(aiosmtpd.smtp, "get_angle_addr", boom)
    assert engine()._getaddr("<bench@bench.test> SIZE=1") == ("bench@bench.test", "SIZE=1")
    with pytest.raises(AssertionError, match="header parser"):
        engine()._getaddr('<"q"@bench.test>')  # the test can fail: others are parsed
