"""The sans-IO HTTP rules in ``aionet.proto.http`` and ``aionet.proto.http_files``: no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aionet.proto.http import (
    DateCache,
    HttpError,
    RequestIds,
    check_transfer_encoding,
    chunk,
    encode_headers,
    error_response,
    is_token,
    message_start,
    parse_content_length,
    refusal_response,
    sane_request_id,
    status_allows_body,
    status_line,
)
from aionet.proto.http_files import (
    UNSATISFIABLE,
    content_type,
    etag,
    is_not_modified,
    parse_http_date,
    parse_range,
    range_applies,
    safe_segments,
)

# -- request rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b" chunked\t", b"CHUNKED"])
def test_lone_chunked_is_the_only_accepted_coding(value: bytes) -> None:
    check_transfer_encoding(value, "1.1")


@pytest.mark.parametrize("value", [b"gzip, chunked", b"chunked, gzip", b"identity", b"", b"x"])
def test_other_codings_are_400(value: bytes) -> None:
    with pytest.raises(HttpError) as info:
        check_transfer_encoding(value, "1.1")
    assert info.value.status == 400


def test_transfer_encoding_in_http_1_0_is_400() -> None:
    with pytest.raises(HttpError, match=r"HTTP/1\.0"):
        check_transfer_encoding(b"chunked", "1.0")


def test_content_length_parsing() -> None:
    assert parse_content_length(b" 42 ") == 42
    for bad in (b"4 2", b"-1", b"0x1", b""):
        with pytest.raises(HttpError):
            parse_content_length(bad)


def test_tokens_and_request_ids() -> None:
    assert is_token(b"GET") and is_token(b"X-CUSTOM.1") and not is_token(b"G@T")
    assert not is_token(b"")
    assert sane_request_id(b"abc-123_x.y") and not sane_request_id(b"a b")
    assert sane_request_id(b"a" * 128) and not sane_request_id(b"a" * 129)
    ids = RequestIds(b"p")
    assert [ids.next(), ids.next()] == [b"p-1", b"p-2"]
    assert RequestIds().next() != RequestIds().next()  # random per-process prefixes


# -- message_start: where the n-th message begins in validated input ---------------------------

_get = st.builds(lambda p: b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % p, st.binary(max_size=0))
_with_length = st.builds(
    lambda body: b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    st.binary(max_size=40),
)
_chunked = st.builds(
    lambda parts, trailer: (
        b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(b"%x;e=1\r\n%s\r\n" % (len(p), p) for p in parts if p)
        + b"0\r\n"
        + (b"X-T: 1\r\n" if trailer else b"")
        + b"\r\n"
    ),
    st.lists(st.binary(min_size=1, max_size=20), max_size=4),
    st.booleans(),
)


@given(st.lists(st.one_of(_get, _with_length, _chunked), min_size=1, max_size=6), st.booleans())
def test_message_start_finds_every_boundary(messages: list[bytes], blank: bool) -> None:
    sep = b"\r\n" if blank else b""
    data = sep.join(messages) + sep + b"FOO / HTTP/1.1\r\n"
    offset = 0
    for i, message in enumerate(messages):
        assert message_start(data, i) == offset
        offset += len(message) + len(sep)
    assert data[message_start(data, len(messages)) or 0 :].startswith(b"FOO ")


def test_message_start_unknown_when_the_input_is_short() -> None:
    assert message_start(b"GET / HTTP/1.1\r\nHost", 1) is None
    assert message_start(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab", 1) is None


# -- replies -------------------------------------------------------------------------------------


def test_status_lines_and_bodiless_statuses() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(599) == b"HTTP/1.1 599 \r\n"
    with pytest.raises(ValueError, match="invalid HTTP status"):
        status_line(600)
    assert [status_allows_body(s) for s in (101, 200, 204, 304, 404)] == [
        False,
        True,
        False,
        False,
        True,
    ]


def test_date_cache_changes_once_per_second() -> None:
    cache = DateCache("srv")
    assert cache.update(1_000_000_000.2)
    first = cache.prelude
    assert first == b"server: srv\r\ndate: Sun, 09 Sep 2001 01:46:40 GMT\r\n"
    assert not cache.update(1_000_000_000.9) and cache.prelude is first
    assert cache.update(1_000_000_001.0) and cache.prelude != first
    assert DateCache(None).prelude.startswith(b"date: ")


def test_encode_headers_strips_framing_and_finds_length_and_close() -> None:
    block, length, close = encode_headers(
        [
            (b"Content-Type", b"text/plain"),
            (b"content-length", b"12"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"close"),
            (b"x-tab", b"a\tb"),
        ]
    )
    assert block == b"Content-Type: text/plain\r\ncontent-length: 12\r\nx-tab: a\tb\r\n"
    assert (length, close) == (12, True)


@pytest.mark.parametrize(
    "header",
    [
        (b"x-a", b"b\r\nSet-Cookie: evil=1"),
        (b"x-a", b"b\nc"),
        (b"x-a", b"b\x00"),
        (b"x a", b"b"),
        (b"x-a:", b"b"),
        (b"content-length", b"ten"),
    ],
)
def test_encode_headers_refuses_response_splitting(header: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        encode_headers([header])


def test_chunks_and_complete_responses() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    response = error_response(400, b"date: D\r\n")
    assert response == (
        b"HTTP/1.1 400 Bad Request\r\ndate: D\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 16\r\nconnection: close\r\n\r\n400 Bad Request\n"
    )
    assert error_response(500, close=False, head_only=True).endswith(b"content-length: 26\r\n\r\n")
    refusal = refusal_response()
    head, _, body = refusal.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"connection: close" in head and b"content-length: %d" % len(body) in head


# -- static files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        (b"/", []),
        (b"/a/b.txt", ["a", "b.txt"]),
        (b"//a/./b", ["a", "b"]),
        (b"/caf%C3%A9.txt", ["café.txt"]),
        (b"/a%20b", ["a b"]),
    ],
)
def test_safe_segments(raw: bytes, segments: list[str]) -> None:
    assert safe_segments(raw) == segments


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"/../x", 404),
        (b"/a/%2e%2e/%2E%2E/x", 404),
        (b"/a%2fb", 400),
        (b"/a%5Cb", 400),
        (b"/a\\b", 400),
        (b"/a%00b", 400),
        (b"/a%0ab", 400),
        (b"/%ff", 400),
        (b"*", 400),
    ],
)
def test_unsafe_paths(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        safe_segments(raw)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        (b"bytes=0-9", (0, 9)),
        (b"bytes=-10", (90, 99)),
        (b"bytes=-1000", (0, 99)),
        (b"bytes=50-", (50, 99)),
        (b"bytes=90-200", (90, 99)),
        (b"bytes = 1-2", (1, 2)),
        (b"bytes=100-", UNSATISFIABLE),
        (b"bytes=-0", UNSATISFIABLE),
        (b"bytes=5-2", None),
        (b"bytes=a-b", None),
        (b"bytes=-", None),
        (b"bytes=1-2,4-5", None),
        (b"lines=1-2", None),
        (b"bytes=1", None),
    ],
)
def test_parse_range(header: bytes | None, expected: object) -> None:
    assert parse_range(header, 100) == expected


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_satisfiable_ranges_stay_inside_the_file(first: int, last: int, size: int) -> None:
    result = parse_range(b"bytes=%d-%d" % (first, last), size)
    if isinstance(result, tuple):
        assert 0 <= result[0] <= result[1] < size
    else:
        assert result is None if last < first else result == UNSATISFIABLE


def test_validators_and_conditionals() -> None:
    tag = etag(1_700_000_000_123_456_789, 1024)
    assert tag == b'"%x-400"' % 1_700_000_000_123_456
    mtime = 1_700_000_000.5
    date = b"Tue, 14 Nov 2023 22:13:20 GMT"
    assert parse_http_date(date) == 1_700_000_000.0
    assert parse_http_date(b"yesterday") is None
    assert is_not_modified(tag, mtime, tag, None)
    assert is_not_modified(tag, mtime, b'"a", W/' + tag, None)
    assert not is_not_modified(tag, mtime, b'"a"', date)  # If-None-Match decides
    assert is_not_modified(tag, mtime, None, date)
    assert not is_not_modified(tag, mtime, None, b"Tue, 14 Nov 2023 22:13:19 GMT")
    assert not is_not_modified(tag, mtime, None, None)
    assert range_applies(None, tag, mtime) and range_applies(tag, tag, mtime)
    assert not range_applies(b'"x"', tag, mtime)
    assert range_applies(date, tag, mtime) and not range_applies(b"bad", tag, mtime)


def test_content_types() -> None:
    assert content_type("a.txt") == b"text/plain; charset=utf-8"
    assert content_type("a.html") == b"text/html; charset=utf-8"
    assert content_type("a.png") == b"image/png"
    assert content_type("a.tar.gz") == b"application/octet-stream"
    assert content_type("noext") == b"application/octet-stream"


def test_header_cache_returns_what_encoding_returns() -> None:
    from aionet.proto.http import HeaderCache

    cache = HeaderCache(size=2)
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    first = cache.encode(headers)
    assert first == encode_headers(headers)
    assert cache.encode(list(headers)) is first  # same content: a hit
    assert cache.encode([[b"x-list", b"1"]]) == (b"x-list: 1\r\n", None, False)  # type: ignore[list-item]
    for i in range(3):  # overflowing empties it; results stay right
        assert cache.encode([(b"x-n", b"%d" % i)])[0] == b"x-n: %d\r\n" % i
    with pytest.raises(ValueError, match="invalid"):
        cache.encode([(b"x-a", b"b\r\nc: d")])


@pytest.mark.parametrize(
    "text",
    [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
        b"  Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_the_three_http_date_forms(text: bytes) -> None:
    from aionet.proto.http import parse_http_date

    assert parse_http_date(text) == 784111777.0


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 32 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 25:49:37 GMT",
        b"1994-11-06T08:49:37Z",
    ],
)
def test_not_http_dates(text: bytes) -> None:
    from aionet.proto.http import parse_http_date

    assert parse_http_date(text) is None


@given(st.integers(0, 4_000_000_000))
def test_http_date_round_trips(seconds: int) -> None:
    from email.utils import formatdate

    from aionet.proto.http import http_date, parse_http_date

    assert http_date(seconds) == formatdate(seconds, usegmt=True).encode()
    assert parse_http_date(http_date(seconds)) == seconds
