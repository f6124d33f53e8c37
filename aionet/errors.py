"""The exception hierarchy every layer of aionet raises.

``AionetError`` is the root. Each subclass carries what its boundary needs to answer the user:
``ConfigError`` carries positioned messages for ``FILE:LINE:COL`` output, ``ProtocolError``
carries the reply bytes the glue sends back to the peer, ``StartupError`` names the listener
that could not start.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = [
    "AdmissionRefused",
    "AionetError",
    "ConfigError",
    "ConfigIssue",
    "LineTooLong",
    "ProtocolError",
    "RegistryError",
    "StartupError",
]


class AionetError(Exception):
    """Base class of every error aionet raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file, positioned for ``FILE:LINE:COL`` output."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


class ConfigError(AionetError):
    """A configuration is invalid. Holds every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class RegistryError(AionetError):
    """A protocol name or ``module:Class`` reference cannot be resolved to a handler class."""


class StartupError(AionetError):
    """The server could not start (a listener failed to bind, a handler failed to start)."""


class AdmissionRefused(AionetError):
    """The connection manager turned a connection away; ``reason`` names the limit."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProtocolError(AionetError):
    """A peer broke the protocol. ``reply`` is what the glue sends back (e.g. ``b"500 ..."``).

    ``close`` says whether the session must end after the reply.
    """

    def __init__(self, message: str, *, reply: bytes = b"", close: bool = False) -> None:
        self.reply = reply
        self.close = close
        super().__init__(message)


class LineTooLong(ProtocolError, asyncio.LimitOverrunError, ValueError):
    """A ``StreamHandler``'s client sent a line longer than the reader's limit
    (``StreamHandler.stream_limit``): ``conn.reader.readline()``/``readuntil()`` raise it.

    Catch it to answer with the protocol's own error (``500 line too long``); left uncaught it
    ends the session, logged at info as ``line_too_long`` (a hostile or broken client, not a
    handler bug). ``readline()`` has dropped the line when it raises; ``readuntil()`` leaves
    the buffer as it was, as asyncio does. It is also the ``LimitOverrunError`` and the
    ``ValueError`` asyncio's own reader raises, so code written for those keeps working.
    """

    def __init__(self, limit: int, consumed: int = 0) -> None:
        Exception.__init__(self, f"line longer than {limit} bytes")  # no cooperative chain
        self.reply = b""
        self.close = True
        self.limit = limit
        self.consumed = consumed
