"""``response_fields``: what an app's headers become on HTTP/2 (h2's own checks are off)."""

from __future__ import annotations

import pytest

from aionet.http._h2_stream import response_fields


def test_names_are_lowercased_and_connection_fields_dropped() -> None:
    got = response_fields([(b"Content-Type", b"text/plain"), (b"Connection", b"close"),
                           (b"Transfer-Encoding", b"chunked"), (b"X-A", b"1  2")])  # fmt: skip
    assert got == [(b"content-type", b"text/plain"), (b"x-a", b"1  2")]


@pytest.mark.parametrize(
    "field",
    [
        (b"x-inject", b"a\r\nset-cookie: evil=1"),  # response splitting when proxied to h1
        (b"x-nul", b"a\x00b"),
        (b"x-lf", b"a\nb"),
        (b"x-edge", b" padded"),
        (b"x-edge", b"padded\t"),
        (b":status", b"200"),  # a pseudo-header from the app
        (b"bad name", b"1"),
        (b"", b"1"),
    ],
)
def test_unsafe_fields_are_refused(field: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="invalid response header"):
        response_fields([field])
