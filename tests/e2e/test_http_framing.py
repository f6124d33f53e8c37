"""Strict HTTP/1.1 framing on the raw socket: every refused request gets its status, then EOF.

Each vector names what RFC 9112 forbids (mostly request-smuggling shapes). Most are rejected by
llhttp itself; the rest (Transfer-Encoding other than a lone ``chunked``, Transfer-Encoding in
HTTP/1.0, Host count, versions, sizes, timeouts) by aionet's own checks. Each test asserts the
status AND that the server closed the connection after it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aionet.testing import serve
from tests.http_helpers import exchange, http_config, split_responses, status_of

APP = "tests.apps.raw_apps:echo"
H = b"Host: t\r\n"

VECTORS: dict[str, tuple[bytes, int]] = {
    # request line
    "no-target": (b"GET HTTP/1.1\r\n" + H + b"\r\n", 400),
    "extra-token-in-request-line": (b"GET / HTTP/1.1 x\r\n" + H + b"\r\n", 400),
    "space-in-target": (b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "control-byte-in-target": (b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "nul-in-target": (b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "invalid-method-characters": (b"G@T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    # a well-formed version we do not speak: 505 (RFC 9110 section 15.6.6); a malformed one: 400
    "http-1.2-version": (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    "http-2-version": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    "http-2.5-version": (b"GET / HTTP/2.5\r\n" + H + b"\r\n", 505),
    "http-3-version": (b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    "two-digit-major-version": (b"GET / HTTP/11.1\r\n" + H + b"\r\n", 400),
    "version-without-dot": (b"GET / HTTP/1\r\n" + H + b"\r\n", 400),
    "lowercase-protocol-name": (b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    "bare-lf-request-line": (b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    # header fields
    "header-without-colon": (b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    "empty-field-name": (b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    "bare-lf-in-headers": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\nX-B: c\r\n\r\n", 400),
    "bare-cr-in-headers": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rX-B: c\r\n\r\n", 400),
    "nul-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    "control-byte-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    "del-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    "nul-in-name": (b"GET / HTTP/1.1\r\n" + H + b"X\x00A: b\r\n\r\n", 400),
    "missing-host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\n" + H + b"Host: u\r\n\r\n", 400),
    # body framing (RFC 9112 section 6)
    "content-length-and-transfer-encoding": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    "two-different-content-lengths": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    "repeated-content-length": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    ),
    "content-length-list": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
        400,
    ),
    "negative-content-length": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n", 400),
    "hex-content-length": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\n", 400),
    "chunked-not-final": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    "unknown-coding-before-chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "unknown-coding": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    "identity-coding": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    "two-transfer-encoding-fields": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer-encoding-in-http-1.0": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-not-hex": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "negative-chunk-size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-overflow": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffff\r\nx\r\n0\r\n\r\n",
        400,
    ),
    "space-before-chunk-size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "bare-lf-after-chunk-size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk-data-longer-than-size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n",
        400,
    ),
    "upgrade-request-with-body": (
        b"POST / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\nUpgrade: foo\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        400,
    ),
}


@pytest.mark.parametrize(("request_bytes", "status"), VECTORS.values(), ids=VECTORS.keys())
async def test_refused_with_status_then_closed(
    tmp_path: Path, request_bytes: bytes, status: int
) -> None:
    async with serve(http_config(app=APP), data_dir=tmp_path) as server:
        data, closed = await exchange(*server.address("web"), request_bytes)
        assert status_of(data) == status, data
        assert b"connection: close\r\n" in data.split(b"\r\n\r\n")[0] + b"\r\n"
        assert closed, "the server must close after refusing"


async def test_a_valid_request_then_garbage_answers_both_in_order(tmp_path: Path) -> None:
    async with serve(http_config(app=APP), data_dir=tmp_path) as server:
        good = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        bad = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        data, closed = await exchange(*server.address("web"), good + bad)
        first, second = split_responses(data)
        assert (first.status, first.body) == (200, b"abc")
        assert second.status == 400
        assert closed


async def test_head_too_large_is_431(tmp_path: Path) -> None:
    config = http_config(app=APP, max_header_size="2KiB")
    async with serve(config, data_dir=tmp_path) as server:
        addr = server.address("web")
        one_big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n"
        many = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(
            b"X-%d: %s\r\n" % (i, b"v" * 40) for i in range(60)
        )
        long_target = b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        for request in (one_big, many + b"\r\n", long_target):
            data, closed = await exchange(*addr, request)
            assert status_of(data) == 431 and closed
        # A head that never ends, trickled in pieces, is cut off too.
        data, closed = await exchange(*addr, [b"GET / HTTP/1.1\r\nX: "] + [b"b" * 512] * 8)
        assert status_of(data) == 431 and closed
        # Just under the limit is fine.
        ok = (
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1500 + b"\r\nConnection: close\r\n\r\n"
        )
        data, closed = await exchange(*addr, ok)
        assert status_of(data) == 200


async def test_body_over_max_body_size_is_413(tmp_path: Path) -> None:
    config = http_config(app=APP, max_body_size="1KiB")
    async with serve(config, data_dir=tmp_path) as server:
        addr = server.address("web")
        declared = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n"
        data, closed = await exchange(*addr, declared)
        assert status_of(data) == 413 and closed
        chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        pieces = [chunked] + [b"200\r\n" + b"z" * 512 + b"\r\n"] * 3
        data, closed = await exchange(*addr, pieces, pause=0.02)
        assert status_of(data) == 413 and closed
        fits = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n"
        data, closed = await exchange(*addr, fits + b"y" * 1024)
        assert status_of(data) == 200 and data.endswith(b"y" * 1023 + b"\r\n0\r\n\r\n")


async def test_incomplete_head_gets_408_at_header_timeout(tmp_path: Path) -> None:
    config = http_config(app=APP, header_timeout="300ms")
    async with serve(config, data_dir=tmp_path) as server:
        loop_time = __import__("asyncio").get_running_loop().time
        start = loop_time()
        data, closed = await exchange(*server.address("web"), b"GET / HTTP/1.1\r\nHost: t\r\n")
        elapsed = loop_time() - start
        assert status_of(data) == 408 and closed
        assert 0.25 <= elapsed < 2.0


async def test_upgrade_the_app_does_not_take_is_answered_then_closed(tmp_path: Path) -> None:
    async with serve(http_config(app=APP), data_dir=tmp_path) as server:
        request = (  # WebSocket is served (tests/e2e/test_websocket.py); other upgrades are not
            b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
        )
        data, closed = await exchange(*server.address("web"), request)
        [response] = split_responses(data)
        assert response.status == 200
        assert response.headers["connection"] == "close"
        assert closed


async def test_unknown_methods_reach_the_app_even_pipelined(tmp_path: Path) -> None:
    async with serve(http_config(app=APP), data_dir=tmp_path) as server:
        requests = (
            b"BREW /pot HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
            b"get / HTTP/1.1\r\nHost: t\r\n\r\n"
            b"X-CUSTOM.1 / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data, closed = await exchange(*server.address("web"), requests)
        responses = split_responses(data)
        methods = [r.headers["x-method"] for r in responses]
        assert methods == ["BREW", "GET", "get", "X-CUSTOM.1"]
        assert responses[0].body == b"abc"
        assert closed


async def test_method_split_across_reads_reaches_the_app(tmp_path: Path) -> None:
    async with serve(http_config(app=APP), data_dir=tmp_path) as server:
        pieces = [b"PROPFI", b"X / HTTP/1.1\r\nHost: t\r\n", b"Connection: close\r\n\r\n"]
        data, _closed = await exchange(*server.address("web"), pieces, pause=0.05)
        [response] = split_responses(data)
        assert response.headers["x-method"] == "PROPFIX"
