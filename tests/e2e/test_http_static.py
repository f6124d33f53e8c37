"""The built-in app: safe file serving under ``static_dir``, validators, ranges, status page."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

import httpx
import pytest

from aionet.testing import serve
from tests.http_helpers import exchange, http_config, split_responses, status_of


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"0123456789" * 100 + b"abcdefghijklmnopqrstuvwx")  # 1 KiB
    (root / "style.css").write_text("body {}\n")
    (root / "data.bin").write_bytes(os.urandom(8 * 1024 * 1024 + 123))
    (root / "sub" / "index.html").write_text("<p>sub</p>\n")
    (root / "empty.txt").write_bytes(b"")
    (tmp_path / "secret.txt").write_text("top secret\n")
    (root / "inside-link.txt").symlink_to(root / "hello.txt")
    (root / "outside-link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "outside-dir").symlink_to(tmp_path)
    return root


def raw_get(target: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + b"\r\n"


TRAVERSALS = {
    "dot-dot": (b"/../secret.txt", 404),
    "dot-dot-in-sub": (b"/sub/../../secret.txt", 404),
    "encoded-dot-dot": (b"/%2e%2e/secret.txt", 404),
    "encoded-dot-dot-upper": (b"/sub/%2E%2E/%2E%2E/secret.txt", 404),
    "encoded-slash": (b"/sub%2f..%2f..%2fsecret.txt", 400),
    "encoded-backslash": (b"/..%5csecret.txt", 400),
    "backslash": (b"/..\\secret.txt", 400),
    "encoded-nul": (b"/hello.txt%00.html", 400),
    "absolute-path": (b"//etc/passwd", 404),
    "absolute-form-target": (b"http://t/../secret.txt", 404),
    "symlink-out": (b"/outside-link.txt", 404),
    "symlinked-dir-out": (b"/outside-dir/secret.txt", 404),
    "not-utf8": (b"/%ff%fe", 400),
}


@pytest.mark.parametrize(("target", "status"), TRAVERSALS.values(), ids=TRAVERSALS.keys())
async def test_traversal_attempts_are_refused(
    tmp_path: Path, site: Path, target: bytes, status: int
) -> None:
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        data, _ = await exchange(*server.address("web"), raw_get(target))
        assert status_of(data) == status
        assert b"top secret" not in data


async def test_files_types_head_and_symlink_inside(tmp_path: Path, site: Path) -> None:
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        host, port = server.address("web")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            hello = await client.get("/hello.txt")
            assert hello.content == (site / "hello.txt").read_bytes()
            assert hello.headers["content-type"] == "text/plain; charset=utf-8"
            assert hello.headers["accept-ranges"] == "bytes"
            css = await client.get("/style.css")
            assert css.headers["content-type"] == "text/css; charset=utf-8"
            binary = await client.head("/data.bin")
            assert binary.headers["content-type"] == "application/octet-stream"
            assert binary.headers["content-length"] == str(8 * 1024 * 1024 + 123)
            assert binary.content == b""
            assert (await client.get("/inside-link.txt")).content == hello.content
            assert (await client.get("/empty.txt")).content == b""
            assert (await client.get("/missing")).status_code == 404
            assert (await client.post("/hello.txt")).status_code == 405
            sub = await client.get("/sub")
            assert (sub.status_code, sub.headers["location"]) == (301, "/sub/")
            assert (await client.get("/sub/")).text == "<p>sub</p>\n"


async def test_large_file_arrives_intact(tmp_path: Path, site: Path) -> None:
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        host, port = server.address("web")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as client:
            data = (await client.get("/data.bin")).content
            ranged = await client.get("/data.bin", headers={"range": "bytes=100000-4000000"})
        original = (site / "data.bin").read_bytes()
        assert hashlib.sha256(data).digest() == hashlib.sha256(original).digest()
        assert ranged.status_code == 206 and ranged.content == original[100000:4000001]


RANGES = {
    "first-ten": (b"bytes=0-9", 206, b"bytes 0-9/1024", slice(0, 10)),
    "suffix": (b"bytes=-10", 206, b"bytes 1014-1023/1024", slice(1014, 1024)),
    "open-ended": (b"bytes=1000-", 206, b"bytes 1000-1023/1024", slice(1000, 1024)),
    "past-the-end-clamped": (b"bytes=1020-5000", 206, b"bytes 1020-1023/1024", slice(1020, 1024)),
    "whole-file-as-range": (b"bytes=0-", 206, b"bytes 0-1023/1024", slice(0, 1024)),
    "unsatisfiable": (b"bytes=1024-", 416, b"bytes */1024", None),
    "invalid-syntax-ignored": (b"bytes=abc", 200, None, slice(0, 1024)),
    "other-unit-ignored": (b"items=0-1", 200, None, slice(0, 1024)),
    "several-ranges-ignored": (b"bytes=0-1,5-6", 200, None, slice(0, 1024)),
}


@pytest.mark.parametrize(
    ("spec", "status", "content_range", "part"), RANGES.values(), ids=RANGES.keys()
)
async def test_ranges(
    tmp_path: Path,
    site: Path,
    spec: bytes,
    status: int,
    content_range: bytes | None,
    part: slice | None,
) -> None:
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        data, _ = await exchange(*server.address("web"), raw_get(b"/hello.txt", b"Range: " + spec))
        [response] = split_responses(data)
        assert response.status == status
        assert response.headers.get("content-range", "").encode() == (content_range or b"")
        if part is not None:
            assert response.body == (site / "hello.txt").read_bytes()[part]


async def test_conditional_requests_get_304(tmp_path: Path, site: Path) -> None:
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        host, port = server.address("web")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            first = await client.get("/hello.txt")
            tag, modified = first.headers["etag"], first.headers["last-modified"]

            async def status(**headers: str) -> int:
                named = {name.replace("_", "-"): value for name, value in headers.items()}
                return (await client.get("/hello.txt", headers=named)).status_code

            assert await status(if_none_match=tag) == 304
            assert await status(if_none_match=f'"nope", W/{tag}') == 304
            assert await status(if_none_match="*") == 304
            assert await status(if_modified_since=modified) == 304
            assert await status(if_modified_since="Mon, 01 Jan 2001 00:00:00 GMT") == 200
            assert await status(if_modified_since="garbage") == 200
            # If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2).
            assert await status(if_none_match='"other"', if_modified_since=modified) == 200
            not_modified = await client.get("/hello.txt", headers={"if-none-match": tag})
            assert not_modified.content == b"" and not_modified.headers["etag"] == tag
            # If-Range: a stale validator gets the whole file.
            stale = await client.get(
                "/hello.txt", headers={"range": "bytes=0-1", "if-range": '"x"'}
            )
            assert stale.status_code == 200
            fresh = await client.get("/hello.txt", headers={"range": "bytes=0-1", "if-range": tag})
            assert fresh.status_code == 206


async def test_status_page_without_index_and_without_static_dir(tmp_path: Path, site: Path) -> None:
    for options in ({"static_dir": str(site)}, {}):
        async with serve(http_config(**options), data_dir=tmp_path / "d") as server:
            host, port = server.address("web")
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                page = await client.get("/")
                assert page.status_code == 200 and "<h1>aionet</h1>" in page.text
                figures = (await client.get("/", headers={"accept": "application/json"})).json()
                assert figures["listener"] == "web" and figures["open_connections"] == 1
                assert figures["requests"] == 2
    (site / "index.html").write_text("<p>home</p>")
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        host, port = server.address("web")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            assert (await client.get("/")).text == "<p>home</p>"


async def test_missing_static_dir_fails_start(tmp_path: Path) -> None:
    from aionet.errors import StartupError

    with pytest.raises(StartupError, match=r"static_dir .* is not a directory"):
        async with serve(http_config(static_dir=str(tmp_path / "nope")), data_dir=tmp_path):
            pass


@pytest.mark.tool("curl")
async def test_curl_range(tmp_path: Path, site: Path) -> None:
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        host, port = server.address("web")
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-r", "5-14", f"http://{host}:{port}/hello.txt",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert out == b"5678901234"


async def test_changed_files_are_never_served_stale(tmp_path: Path, site: Path) -> None:
    page = site / "page.txt"
    page.write_bytes(b"version 1")
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        host, port = server.address("web")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            assert (await client.get("/page.txt")).content == b"version 1"
            assert (await client.get("/page.txt")).content == b"version 1"  # cached now
            page.write_bytes(b"version 2")  # same size, new contents
            stat = page.stat()
            os.utime(page, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
            second = await client.get("/page.txt")
            assert second.content == b"version 2"
            page.unlink()
            assert (await client.get("/page.txt")).status_code == 404


async def test_pipelined_requests_in_one_write_are_all_answered_in_order(
    tmp_path: Path, site: Path
) -> None:
    # Status page, a miss, a file, HEAD of the file, a range and a close, all in one packet.
    async with serve(http_config(static_dir=str(site)), data_dir=tmp_path / "d") as server:
        requests = (
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n"
            b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data, closed = await exchange(*server.address("web"), requests)
        # The HEAD reply announces a body it does not carry: cut the stream there by hand.
        starts = [m.start() for m in re.finditer(rb"HTTP/1\.1 \d{3} ", data)]
        assert len(starts) == 6, data
        head_reply = data[starts[3] : starts[4]]
        responses = split_responses(data[: starts[3]]) + split_responses(data[starts[4] :])
        assert [r.status for r in responses] == [200, 404, 200, 206, 200]
        assert responses[2].body == (site / "hello.txt").read_bytes()
        assert head_reply.startswith(b"HTTP/1.1 200 ")
        assert head_reply.endswith(b"\r\n\r\n") and b"content-length: 1024\r\n" in head_reply
        assert responses[3].body == b"0123456789"
        assert responses[4].body == b"body {}\n"
        assert closed
