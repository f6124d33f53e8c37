"""``aionet bench http URL [URL ...]``: a lean HTTP/1.1 client on an ``asyncio.Protocol``.

Requests are encoded once per URL; responses are parsed with httptools (the llhttp parser),
bodies are counted, not kept. Keep-alive by default; ``--no-keepalive`` sends
``Connection: close`` and opens a connection per request (its latency then includes the
connect, as with ``ab``). A response whose status is not accepted (``--expect``, default
2xx and 3xx) counts as an error "status NNN" and the connection is kept.

``--http2`` (with ``--streams N`` requests in flight per connection) is ``http2.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

from ..target import BenchError, Session, Target, add_tls_arguments, client_tls_context
from ._stream import FutureProtocol, open_protocol

if TYPE_CHECKING:
    import argparse
    import ssl
    from collections.abc import Iterator

__all__ = ["HttpTarget", "parse_expect"]


class _HttpSession(FutureProtocol):
    def __init__(
        self,
        requests: Iterator[tuple[bytes, bool]],
        accepted: frozenset[int],
        keepalive: bool = True,
    ) -> None:
        super().__init__()
        self.requests = requests
        self.accepted = accepted
        self.keepalive = keepalive  # False: we sent "Connection: close"
        self.parser = httptools.HttpResponseParser(self)
        self.head_only = False
        self.status = 0
        self.keep_alive = True
        self.received_ns = 0  # when the bytes being parsed arrived

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only:
            self._complete()

    def on_message_complete(self) -> None:
        if not self.head_only:
            self._complete()

    def _complete(self) -> None:
        if not (self.keep_alive and self.keepalive):  # never reuse what we asked to close
            self.open = False
        if self.status in self.accepted:
            # the response was complete when its last bytes arrived; parsing them is ours
            self.done(self.received_ns)
        else:
            self.fail(BenchError(f"status {self.status}"))

    def data_received(self, data: bytes) -> None:
        self.received_ns = time.perf_counter_ns()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.open = False
            self.fail(BenchError("protocol", str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None:  # a body delimited by the close completes here
            self.received_ns = time.perf_counter_ns()
            with contextlib.suppress(httptools.HttpParserError):
                self.parser.feed_data(b"")
        super().connection_lost(exc)

    async def request(self) -> int:
        data, head = next(self.requests)
        if head != self.head_only:
            self.head_only = head
        if head:  # the parser cannot know a HEAD response has no body: one parser per response
            self.parser = httptools.HttpResponseParser(self)
        waiter = self.new_waiter()
        self.send(data)
        await waiter
        return 1


def parse_expect(values: list[str]) -> frozenset[int]:
    """``["200", "3xx"]`` → the accepted status codes.

    Raises:
        ValueError: not a status or an ``Nxx`` class.
    """
    accepted: set[int] = set()
    for value in values or ["2xx", "3xx"]:
        for part in value.split(","):
            part = part.strip().lower()
            if len(part) == 3 and part.endswith("xx") and part[0] in "12345":
                base = int(part[0]) * 100
                accepted.update(range(base, base + 100))
            elif part.isdigit() and 100 <= int(part) <= 599:
                accepted.add(int(part))
            else:
                raise ValueError(f"--expect {part!r}: want a status (200) or a class (2xx)")
    return frozenset(accepted)


class HttpTarget(Target):
    name = "http"
    help = "HTTP/1.1 or HTTP/2 (--http2) requests (URL list, method, headers, body)"

    def __init__(
        self,
        urls: list[str],
        *,
        method: str = "GET",
        headers: list[str] | None = None,
        body: bytes = b"",
        keepalive: bool = True,
        expect: list[str] | None = None,
        args: argparse.Namespace | None = None,
    ) -> None:
        if not urls:
            raise ValueError("give at least one URL")
        parts = [urlsplit(u) for u in urls]
        origins = {(p.scheme, p.hostname, p.port) for p in parts}
        if len(origins) != 1:
            raise ValueError("all URLs must have the same scheme, host and port")
        first = parts[0]
        if first.scheme not in ("http", "https") or not first.hostname:
            raise ValueError(f"{urls[0]!r}: want http://HOST[:PORT]/PATH or https://...")
        self.urls = urls
        self.header_lines = [h for h in headers or [] if h.strip()]
        self.body = body
        self.https = first.scheme == "https"
        self.host = first.hostname
        self.port = first.port or (443 if self.https else 80)
        self.method = method.upper()
        self.keepalive = keepalive
        self.connect_per_request = not keepalive
        self.accepted = parse_expect(expect or [])
        self._args = args
        self.tls: ssl.SSLContext | None = None
        host_header = first.netloc.rpartition("@")[2]
        extra = "".join(f"{h.strip()}\r\n" for h in headers or [] if h.strip())
        if not any(h.lower().startswith("host:") for h in headers or []):
            extra = f"Host: {host_header}\r\n" + extra
        if body or self.method in ("POST", "PUT", "PATCH"):
            extra += f"Content-Length: {len(body)}\r\n"
        if not keepalive:
            extra += "Connection: close\r\n"
        self.encoded: list[tuple[bytes, bool]] = []
        for p in parts:
            target = (p.path or "/") + (f"?{p.query}" if p.query else "")
            head = f"{self.method} {target} HTTP/1.1\r\n{extra}\r\n".encode("latin-1")
            self.encoded.append((head + body, self.method == "HEAD"))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "urls", nargs="+", metavar="URL", help="URL(s), one origin; requests cycle through"
        )
        parser.add_argument("-m", "--method", default="GET", help="request method (default GET)")
        parser.add_argument(
            "-H", "--header", action="append", default=[], help="'Name: value' (repeatable)"
        )
        body = parser.add_mutually_exclusive_group()
        body.add_argument("--body", help="request body (text)")
        body.add_argument("--body-file", help="request body from a file")
        parser.add_argument(
            "--no-keepalive", action="store_true", help="one connection per request"
        )
        parser.add_argument(
            "--expect",
            action="append",
            default=[],
            help="accepted statuses, e.g. 200 or 2xx (repeatable; default 2xx and 3xx)",
        )
        h2 = parser.add_argument_group("HTTP/2")
        h2.add_argument(
            "--http2",
            action="store_true",
            help="HTTP/2: ALPN h2 for https://, prior knowledge (h2c) for http://",
        )
        h2.add_argument(
            "--streams",
            "--max-concurrent-streams",
            type=int,
            default=None,
            metavar="N",
            help="--http2: requests in flight per connection (h2load's -m; default 1)",
        )
        add_tls_arguments(parser, flag=None)  # TLS is the https:// scheme

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> HttpTarget:
        body = b""
        if args.body is not None:
            body = args.body.encode()
        elif args.body_file is not None:
            with open(args.body_file, "rb") as f:
                body = f.read()
        if getattr(args, "http2", False):
            from .http2 import Http2Target

            return Http2Target.from_namespace(args, body)
        if getattr(args, "streams", None) is not None:
            raise ValueError("--streams is a number of HTTP/2 streams: add --http2")
        return cls(
            args.urls,
            method=args.method,
            headers=args.header,
            body=body,
            keepalive=not args.no_keepalive,
            expect=args.expect,
            args=args,
        )

    def _tls_args(self) -> argparse.Namespace:
        if self._args is not None:
            return self._args
        import argparse

        return argparse.Namespace(cafile=None, insecure=False)

    def prepare(self) -> None:
        if self.https:
            self.tls = client_tls_context(self._tls_args(), ["http/1.1"])

    async def connect(self) -> Session:
        requests = itertools.cycle(self.encoded)
        accepted, keepalive = self.accepted, self.keepalive
        sni = getattr(self._args, "sni", None)
        return await open_protocol(
            lambda: _HttpSession(requests, accepted, keepalive),
            self.host,
            self.port,
            self.tls,
            sni,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "urls": self.urls,
            "method": self.method,
            "keepalive": self.keepalive,
            "tls": self.https,
        }
