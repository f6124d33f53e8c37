"""The exception hierarchy every layer of aionet raises.

``AionetError`` is the root. Each subclass carries what its boundary needs to answer the user:
``ConfigError`` carries positioned messages for ``FILE:LINE:COL`` output, ``ProtocolError``
carries the reply bytes the glue sends back to the peer, ``StartupError`` names the listener
that could not start.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AionetError",
    "ConfigError",
    "ConfigIssue",
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


class ProtocolError(AionetError):
    """A peer broke the protocol. ``reply`` is what the glue sends back (e.g. ``b"500 ..."``).

    ``close`` says whether the session must end after the reply.
    """

    def __init__(self, message: str, *, reply: bytes = b"", close: bool = False) -> None:
        self.reply = reply
        self.close = close
        super().__init__(message)
