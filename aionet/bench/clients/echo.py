"""``aionet bench echo HOST:PORT``: TCP ping-pong (optionally pipelined) or streaming."""

from __future__ import annotations

import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..target import BenchError, Target, add_tls_arguments, client_tls_context, parse_hostport
from ._stream import FutureProtocol, open_protocol

if TYPE_CHECKING:
    import argparse
    import ssl

__all__ = ["EchoTarget"]


class _PingPong(FutureProtocol):
    """Send ``depth`` messages at once, wait until all of them came back, check the bytes."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        received = self.received
        received += data
        if len(received) >= len(self.payload) and self.waiter is not None:
            if received != self.payload:
                self.fail(BenchError("protocol", "echoed bytes differ from the sent bytes"))
            else:
                self.done()
            received.clear()

    async def request(self) -> int:
        waiter = self.new_waiter()
        self.send(self.payload)
        await waiter
        return self.depth

    depth = 1


class _Stream(FutureProtocol):
    """Keep ``window`` messages in flight; each echoed message completes one request."""

    def __init__(self, message: bytes, window: int) -> None:
        super().__init__()
        self.message = message
        self.window = window
        self.sent: deque[int] = deque()
        self.pending = 0  # bytes of the oldest message still to come back
        self.ready = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        now = time.perf_counter_ns()
        self.transport.write(self.message * self.window)
        self.sent.extend([now] * self.window)
        self.pending = len(self.message)

    def data_received(self, data: bytes) -> None:
        n = len(data)
        size = len(self.message)
        while n >= self.pending:
            n -= self.pending
            self.pending = size
            self.ready += 1
        self.pending -= n
        if self.ready and self.waiter is not None:
            self.done()

    async def request(self) -> int:
        if not self.ready:
            await self.new_waiter()
        self.ready -= 1
        self.sent_ns = self.sent.popleft()
        self.sent.append(time.perf_counter_ns())
        self.transport.write(self.message)
        return 1


class EchoTarget(Target):
    name = "echo"
    help = "TCP echo: ping-pong with pipelining, or streaming"
    default_port = 7

    def __init__(
        self,
        host: str,
        port: int,
        *,
        size: int = 64,
        depth: int = 1,
        stream: bool = False,
        tls: ssl.SSLContext | None = None,
        sni: str | None = None,
        args: argparse.Namespace | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.size, self.depth, self.stream = size, depth, stream
        self.tls, self.sni, self._args = tls, sni, args
        self.payload = os.urandom(max(size, 0))
        if size <= 0 or depth <= 0:
            raise ValueError("--size and --depth must be positive")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="HOST:PORT", help="the echo server")
        parser.add_argument("--size", type=int, default=64, help="message bytes (default 64)")
        parser.add_argument(
            "--depth",
            type=int,
            default=1,
            help="messages in flight per connection: pipelining depth, or the window when "
            "streaming (default 1)",
        )
        parser.add_argument(
            "--stream",
            action="store_true",
            help="stream continuously instead of ping-pong (closed model only)",
        )
        add_tls_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EchoTarget:
        host, port = parse_hostport(args.target, cls.default_port)
        return cls(
            host,
            port,
            size=args.size,
            depth=args.depth,
            stream=args.stream,
            sni=args.sni,
            args=args,
        )

    def prepare(self) -> None:
        if self._args is not None and self._args.tls and self.tls is None:
            self.tls = client_tls_context(self._args)

    async def connect(self) -> FutureProtocol:
        if self.stream:
            message, window = self.payload, self.depth
            return await open_protocol(
                lambda: _Stream(message, window), self.host, self.port, self.tls, self.sni
            )
        batch, depth = self.payload * self.depth, self.depth

        def make() -> _PingPong:
            proto = _PingPong(batch)
            proto.depth = depth
            return proto

        return await open_protocol(make, self.host, self.port, self.tls, self.sni)

    def describe(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "size": self.size,
            "depth": self.depth,
            "mode": "stream" if self.stream else "ping-pong",
            "tls": self.tls is not None or bool(self._args and self._args.tls),
        }
