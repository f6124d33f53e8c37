"""What a bench target is: a factory of sessions, each of which performs requests.

A ``Target`` is built from the parsed command line in every worker process (so it only needs
picklable input: the argparse namespace). ``connect()`` opens one ``Session`` — one TCP
connection, one UDP socket, one logged-in FTP control connection — and ``Session.request()``
performs one request (or one pipelined batch) and returns how many completed.

Failures are ``BenchError`` with a short ``kind`` ("status 500", "protocol", "rcode SERVFAIL")
that the summary counts. Plain ``OSError``/``EOFError`` from a session are classified by the
runner ("closed", "connect refused", "tls"), and a request that outlives ``--timeout`` is
aborted by the runner's watchdog and counted as ``Session.timeout_kind``.

Targets are registered like handlers (``aionet.bench.registry``): built-in names, the
``aionet.bench_targets`` entry-point group, or a ``package.module:Class`` reference.
"""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import argparse

__all__ = [
    "BenchError",
    "Session",
    "Target",
    "add_tls_arguments",
    "client_tls_context",
    "parse_hostport",
]


class BenchError(Exception):
    """A failed request; ``kind`` is what the error table counts."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class Session(ABC):
    """One connection's worth of requests. Not shared between tasks."""

    #: The error kind a request that exceeds ``--timeout`` is counted as.
    timeout_kind: ClassVar[str] = "timeout"
    #: False once the peer closed or the protocol says the session cannot carry more requests;
    #: the runner then opens a new session for the next request.
    open: bool = True
    #: The send time (``perf_counter_ns``) of the request that just completed, stamped just
    #: before its write (or earlier, when streaming sent it before ``request()`` was called).
    #: Reset by the runner before each ``request()``; unset, the runner's stamp before
    #: ``request()`` is used.
    sent_ns: int | None = None
    #: Set by sessions that see the reply in a protocol callback: when it completed
    #: (``perf_counter_ns``; when its last bytes arrived), so the task wake-up after it and
    #: the parsing are not counted as latency.
    done_ns: int | None = None

    @abstractmethod
    async def request(self) -> int:
        """Perform one request (or a pipelined batch); return how many completed.

        Raises:
            BenchError: the request failed in a way worth its own line in the error table.
            OSError, EOFError: the connection failed; the runner classifies it.
        """

    @abstractmethod
    def abort(self) -> None:
        """Close at once (timeout or stop); a pending ``request()`` must then fail promptly."""

    async def aclose(self) -> None:
        """Close gracefully where the protocol has a goodbye (QUIT); always closes."""
        self.abort()


class Target(ABC):
    """A kind of load: options, and a factory of sessions."""

    #: ``aionet bench NAME``
    name: ClassVar[str]
    help: ClassVar[str] = ""
    #: Latency of a request includes opening its session (one connection per request).
    connect_per_request: bool = False
    #: Requests in flight per connection (HTTP/2 streams). The runner runs this many request
    #: loops per connection, each with its own ``Session``; ``connect()`` must then hand out
    #: sessions that share connections, ``streams`` to a connection.
    streams: int = 1

    @classmethod
    @abstractmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this target's options (and its positional TARGET) to its subparser."""

    @classmethod
    @abstractmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        """Build from the parsed command line.

        Raises:
            ValueError: an option value that makes no sense (shown as a usage error).
        """

    @abstractmethod
    async def connect(self) -> Session:
        """Open one session.

        Raises:
            OSError: connect failed (refused, unreachable, TLS handshake).
        """

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the report shows about the target: ``{"address": ..., options...}``."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Called once per worker process before any connection (build TLS contexts here)."""


# -- shared helpers ------------------------------------------------------------------------------


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` → ``(host, port)``.

    Raises:
        ValueError: empty host or a port that is not 1-65535.
    """
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad address {text!r} (expected HOST:PORT)")
    return host, port


def add_tls_arguments(parser: argparse.ArgumentParser, flag: str | None = "--tls") -> None:
    group = parser.add_argument_group("TLS")
    if flag:
        group.add_argument(flag, dest="tls", action="store_true", help="wrap connections in TLS")
    group.add_argument("--cafile", help="CA bundle to verify the server with")
    group.add_argument(
        "--insecure", action="store_true", help="do not verify the server certificate"
    )
    group.add_argument("--sni", help="server name to send and verify (default: the host)")


def client_tls_context(args: argparse.Namespace, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=getattr(args, "cafile", None))
    if getattr(args, "insecure", False):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
