"""Helpers shared by the HTTP tests: a config builder, raw-socket exchanges, a response splitter."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import httptools


def http_config(
    name: str = "web", *, server: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """A one-listener config dict: ``http`` on 127.0.0.1:0 with these options."""
    listener: dict[str, Any] = {"name": name, "protocol": "http", "bind": "127.0.0.1:0"}
    limits = options.pop("limits", None)
    if limits is not None:
        listener["limits"] = limits
    listener["options"] = options
    return {"server": {"limits": {"idle_timeout": "5m"}, **(server or {})}, "listeners": [listener]}


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class _Collector:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.responses: list[Response] = []
        self.current: Response | None = None
        self.complete = 0

    def on_message_begin(self) -> None:
        self.current = Response(0)
        self.responses.append(self.current)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers[name.decode().lower()] = value.decode("latin-1")
        self.current.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.current is not None
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def split_responses(data: bytes) -> list[Response]:
    """Every complete response in ``data``, in order (interim 1xx responses included).

    Not for responses to HEAD: the parser would expect the bodies their headers announce.
    """
    collector = _Collector()
    with contextlib.suppress(httptools.HttpParserError):
        collector.parser.feed_data(data)
    return collector.responses[: collector.complete]


async def exchange(
    host: str, port: int, data: bytes | list[bytes], *, timeout: float = 5.0, pause: float = 0.0
) -> tuple[bytes, bool]:
    """Send ``data`` (pieces with ``pause`` between), read until EOF or ``timeout``.

    Returns everything received and whether the server closed the connection.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for piece in [data] if isinstance(data, bytes) else data:
            writer.write(piece)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)  # the caller's slow client: pieces arrive apart
        return await read_until_closed(reader, timeout)
    finally:
        writer.close()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, bool]:
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return bytes(received), True
                received += chunk
    except TimeoutError:
        return bytes(received), False
    except ConnectionError:  # reset or broken pipe: closed, too
        return bytes(received), True


def status_of(data: bytes) -> int:
    """The status code of the first response in ``data``."""
    assert data.startswith(b"HTTP/1.1 "), data[:80]
    return int(data[9:12])
