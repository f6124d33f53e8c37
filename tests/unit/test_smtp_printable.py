"""``printable``: what a Received: header and the log show of a client's words."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aionet.smtp.service import printable


def slow(text: str, limit: int = 255) -> str:
    return "".join(c if c.isprintable() and c not in "()" else "?" for c in text[:limit])


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_the_fast_path_changes_nothing(text: str, limit: int) -> None:
    assert printable(text, limit) == slow(text, limit)


def test_examples() -> None:
    assert printable("mx.example.test") == "mx.example.test"
    assert printable("evil\r\n\tX-Injected: 1 (c)") == "evil???X-Injected: 1 ?c?"
    assert printable("a" * 300) == "a" * 255
