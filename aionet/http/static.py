"""The built-in app: files under ``static_dir`` and a small status page.

Every decision about a request (the safe path, 304, the range) is made by the pure functions in
``aionet.proto.http_files``; this module does the file system calls. Paths are resolved
segment by segment below the real ``static_dir``, and a symlink is followed only when its
target stays inside it. Files go out through the ``http.response.zerocopysend`` extension
(``sendfile`` where the transport allows it), falling back to plain body messages under a
server that does not offer it.
"""

from __future__ import annotations

import functools
import html
import json
import os
import platform
import stat
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..proto.http import HttpError, phrase
from ..proto.http_files import (
    UNSATISFIABLE,
    content_type,
    etag,
    http_date,
    is_not_modified,
    parse_range,
    range_applies,
    safe_segments,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .types import Receive, Scope, Send

__all__ = ["StaticApp"]

_WANTED = frozenset({b"if-none-match", b"if-modified-since", b"range", b"if-range", b"accept"})
_ALLOW = [(b"allow", b"GET, HEAD")]
Headers = dict[bytes, bytes]
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"range"})
Found = tuple[str, os.stat_result]


class StaticApp:
    """ASGI app serving ``root`` (or nothing), with the status page at ``/`` by default.

    Args:
        root: the directory to serve, or None for the status page alone.
        stats: returns the figures the status page shows (connections, requests, ...).
    """

    def __init__(self, root: Path | None, stats: Callable[[], dict[str, Any]]) -> None:
        self.root = os.path.realpath(root) if root is not None else None
        self.stats = stats
        self.cache = SmallFiles()
        self._segments: dict[bytes, list[str]] = {}  # raw path → checked segments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan to speak of
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, _ALLOW)
            return
        headers = {k: v for k, v in scope["headers"] if k in _WANTED}
        try:
            found = self._resolve(scope["raw_path"]) if self.root is not None else None
        except HttpError as exc:
            await _plain(send, exc.status)
            return
        if isinstance(found, bytes):  # a directory asked for without its slash
            await _plain(send, 301, [(b"location", found + _query(scope))])
        elif found is not None:
            await self._send_file(scope, send, found, headers)
        elif scope["raw_path"] == b"/":
            await self._status_page(send, headers.get(b"accept", b""))
        else:
            await _plain(send, 404)

    def _resolve(self, raw_path: bytes) -> Found | bytes | None:
        """The file to serve and its ``stat``, the target to redirect to, or None (404).

        Raises:
            HttpError: 400/404 from ``safe_segments`` for hostile paths.
        """
        assert self.root is not None
        segments = self._segments.get(raw_path)
        if segments is None:
            segments = safe_segments(raw_path)
            if len(self._segments) >= 4096:
                self._segments.clear()
            self._segments[raw_path] = segments
        found = _walk(self.root, segments)
        if found is None:
            return None
        path, info = found
        if stat.S_ISDIR(info.st_mode):
            index = _walk(path, ["index.html"])
            if index is None or not stat.S_ISREG(index[1].st_mode):
                return None
            # One leading slash: ``//host`` in a Location is another site (an open redirect).
            return index if raw_path.endswith(b"/") else b"/" + raw_path.lstrip(b"/") + b"/"
        return found if stat.S_ISREG(info.st_mode) else None

    async def _send_file(self, scope: Scope, send: Send, found: Found, headers: Headers) -> None:
        path, info = found
        if _CONDITIONAL.isdisjoint(headers):  # the common case: a plain GET of a cached file
            cached = self.cache.get(path, info)
            if cached is not None and cached.headers is not None:
                await _start(send, 200, cached.headers)
                body = b"" if scope["method"] == "HEAD" else cached.content
                await send({"type": "http.response.body", "body": body})
                return
        size, mtime = info.st_size, info.st_mtime
        tag = etag(info.st_mtime_ns, size)
        common = [(b"etag", tag), (b"last-modified", _http_date(int(mtime)))]
        if is_not_modified(
            tag, mtime, headers.get(b"if-none-match"), headers.get(b"if-modified-since")
        ):
            await _start(send, 304, common)
            await send({"type": "http.response.body", "body": b""})
            return
        wanted = parse_range(headers.get(b"range"), size)
        if wanted is not None and not range_applies(headers.get(b"if-range"), tag, mtime):
            wanted = None
        if wanted == UNSATISFIABLE:
            await _plain(send, 416, [(b"content-range", b"bytes */%d" % size)])
            return
        common.append((b"content-type", content_type(path)))
        common.append((b"accept-ranges", b"bytes"))
        status, part = 200, (0, size)
        if isinstance(wanted, tuple):
            status, part = 206, (wanted[0], wanted[1] - wanted[0] + 1)
            common.append((b"content-range", b"bytes %d-%d/%d" % (wanted[0], wanted[1], size)))
        common.append((b"content-length", b"%d" % part[1]))
        await self._send_body(scope, send, found, status, common, part)

    async def _send_body(
        self,
        scope: Scope,
        send: Send,
        found: Found,
        status: int,
        headers: list[tuple[bytes, bytes]],
        part: tuple[int, int],
    ) -> None:
        """Start the response and send ``part`` (offset, count) of the file, cached if small."""
        path, info = found
        first, count = part
        full = headers if status == 200 else None
        cached = self.cache.get(path, info)
        if cached is None and scope["method"] == "GET" and self.cache.wants(info):
            cached = self._read_small(path, info)
        if cached is not None or scope["method"] == "HEAD":
            if cached is not None and cached.headers is None:
                cached.headers = full
            await _start(send, status, headers)
            body = b"" if cached is None else cached.content[first : first + count]
            await send({"type": "http.response.body", "body": body})
            return
        try:
            file = open(path, "rb", buffering=0)  # noqa: ASYNC230, SIM115 - closed below
        except OSError:
            await _plain(send, 404)
            return
        with file:
            await _start(send, status, headers)
            await _file_body(scope, send, file, first, count)

    def _read_small(self, path: str, info: os.stat_result) -> Cached | None:
        try:
            with open(path, "rb", buffering=0) as file:
                return self.cache.put(path, info, file.read())
        except OSError:
            return None

    async def _status_page(self, send: Send, accept: bytes) -> None:
        figures = {"server": f"aionet {__version__}", **self.stats()}
        if b"application/json" in accept:
            body = json.dumps(figures).encode()
            kind = b"application/json"
        else:
            body = _status_html(figures)
            kind = b"text/html; charset=utf-8"
        headers = [(b"content-type", kind), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Cached:
    """One cached small file: its identity, contents, and the 200 response headers."""

    __slots__ = ("content", "headers", "key")

    def __init__(self, key: tuple[int, int, int], content: bytes) -> None:
        self.key = key
        self.content = content
        self.headers: list[tuple[bytes, bytes]] | None = None


class SmallFiles:
    """Contents of small files, reused while ``(inode, mtime, size)`` of a fresh ``stat`` match.

    A cached file costs the ``lstat`` the safe path walk makes anyway instead of
    open/read/close, and its 200 headers are built once. Bounded: files up to ``max_file``
    bytes, ``max_total`` bytes in all (the cache empties when it would overflow).
    """

    def __init__(self, max_file: int = 64 * 1024, max_total: int = 16 * 1024 * 1024) -> None:
        self.max_file = max_file
        self.max_total = max_total
        self.total = 0
        self._files: dict[str, Cached] = {}

    def get(self, path: str, info: os.stat_result) -> Cached | None:
        entry = self._files.get(path)
        if entry is None or entry.key != (info.st_ino, info.st_mtime_ns, info.st_size):
            return None
        return entry

    def wants(self, info: os.stat_result) -> bool:
        return info.st_size <= self.max_file

    def put(self, path: str, info: os.stat_result, content: bytes) -> Cached | None:
        """Keep ``content`` for ``path`` if it still matches ``info``; None if it changed."""
        if len(content) != info.st_size:
            return None  # changed while being read: the caller reads it again
        if self.total + len(content) > self.max_total:
            self._files.clear()
            self.total = 0
        old = self._files.get(path)
        self.total += len(content) - (len(old.content) if old else 0)
        entry = self._files[path] = Cached((info.st_ino, info.st_mtime_ns, info.st_size), content)
        return entry


def _walk(root: str, segments: list[str]) -> Found | None:
    """Join ``segments`` below ``root``: the path and its ``stat``, or None when it is missing,
    cannot exist (a name longer than the file system allows, a symlink loop, ...) or a symlink
    on the way leads outside ``root``."""
    path = root
    info = None
    for segment in segments:
        path = f"{path}/{segment}"
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                path = os.path.realpath(path)
                if path != root and not path.startswith(root + os.sep):
                    return None
                info = os.stat(path)
        except (OSError, ValueError):  # ENOENT, ENOTDIR, EACCES, ENAMETOOLONG, ELOOP, NUL...
            return None
    return path, info if info is not None else os.stat(root)


async def _file_body(scope: Scope, send: Send, file: Any, offset: int, count: int) -> None:
    if scope["method"] == "HEAD" or count == 0:
        await send({"type": "http.response.body", "body": b""})
    elif "http.response.zerocopysend" in scope.get("extensions", {}):
        message = {"type": "http.response.zerocopysend", "file": file}
        await send(message | {"offset": offset, "count": count, "more_body": False})
    else:
        while count > 0:
            data = os.pread(file.fileno(), min(count, 256 * 1024), offset)
            if not data:
                raise RuntimeError(f"{file.name} shrank while being sent")
            offset, count = offset + len(data), count - len(data)
            await send({"type": "http.response.body", "body": data, "more_body": count > 0})


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> bytes:
    return http_date(seconds)


async def _start(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _plain(send: Send, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = f"{status} {phrase(status)}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or ())]
    await _start(send, status, headers)
    await send({"type": "http.response.body", "body": body})


def _query(scope: Scope) -> bytes:
    query: bytes = scope.get("query_string", b"")
    return b"?" + query if query else b""


def _status_html(figures: dict[str, Any]) -> bytes:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in figures.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>aionet</title></head>"
        f"<body><h1>aionet</h1><table>{rows}</table>"
        f"<p>Python {platform.python_version()} · {time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p>"
        "</body></html>\n"
    ).encode()
