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


class StaticApp:
    """ASGI app serving ``root`` (or nothing), with the status page at ``/`` by default.

    Args:
        root: the directory to serve, or None for the status page alone.
        stats: returns the figures the status page shows (connections, requests, ...).
    """

    def __init__(self, root: Path | None, stats: Callable[[], dict[str, Any]]) -> None:
        self.root = os.path.realpath(root) if root is not None else None
        self.stats = stats

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
            await _send_file(scope, send, found, headers)
        elif scope["raw_path"] == b"/":
            await self._status_page(send, headers.get(b"accept", b""))
        else:
            await _plain(send, 404)

    def _resolve(self, raw_path: bytes) -> str | bytes | None:
        """The real path of the file to serve, the slash-ended target to redirect to, or None.

        Raises:
            HttpError: 400/404 from ``safe_segments`` for hostile paths.
        """
        assert self.root is not None
        segments = safe_segments(raw_path)
        path = _walk(self.root, segments)
        if path is None:
            return None
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            index = os.path.join(path, "index.html")
            if not os.path.isfile(index):
                return None
            return index if raw_path.endswith(b"/") else raw_path + b"/"
        return path if stat.S_ISREG(info.st_mode) else None

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


def _walk(root: str, segments: list[str]) -> str | None:
    """Join ``segments`` below ``root``; None if missing or if a symlink leads outside."""
    path = root
    for segment in segments:
        path = os.path.join(path, segment)
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError):
            return None
        if stat.S_ISLNK(info.st_mode):
            path = os.path.realpath(path)
            if path != root and not path.startswith(root + os.sep):
                return None
    return path


async def _send_file(scope: Scope, send: Send, path: str, headers: dict[bytes, bytes]) -> None:
    try:
        file = open(path, "rb", buffering=0)  # noqa: ASYNC230, SIM115 - closed below
    except OSError:
        await _plain(send, 404)
        return
    with file:
        info = os.fstat(file.fileno())
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
        status, first, count = 200, 0, size
        if isinstance(wanted, tuple):
            status, first, count = 206, wanted[0], wanted[1] - wanted[0] + 1
            common.append((b"content-range", b"bytes %d-%d/%d" % (wanted[0], wanted[1], size)))
        common.append((b"content-length", b"%d" % count))
        await _start(send, status, common)
        await _file_body(scope, send, file, first, count)


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
