"""``Corked``: a session's replies gathered while it works through input it already has, and
written in one go when it must wait (for the client, a TLS handshake, a login).

A client that pipelines (POP3's RFC 2449 PIPELINING, IMAP's many commands in flight) gets its
replies in as few segments as the server can: one ``write`` (one system call, one segment on
the wire) per batch instead of one per reply, as Dovecot corks its output stream while it
parses a batch of input. A client that sends one command at a time sees no difference: the
session flushes before it reads again. ``limit`` bounds what is gathered (a pipelined run of
RETRs): past it the session writes and meets the transport's back-pressure at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["Corked"]


class Corked:
    """Output gathered for one session, written with :meth:`flush`."""

    __slots__ = ("_parts", "limit", "size")

    def __init__(self, limit: int) -> None:
        self._parts: list[bytes] = []
        self.size = 0
        self.limit = limit

    def add(self, data: bytes) -> bool:
        """Gather ``data``; True once ``limit`` is reached (the caller should flush now)."""
        self._parts.append(data)
        self.size += len(data)
        return self.full

    @property
    def full(self) -> bool:
        """``limit`` is reached: the caller should flush now."""
        return self.size >= self.limit

    def take(self) -> bytes:
        """Everything gathered, in order, and forget it."""
        parts = self._parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = []
        self.size = 0
        return data

    def __bool__(self) -> bool:
        return bool(self._parts)

    async def flush(self, writer: asyncio.StreamWriter) -> None:
        """Write what is gathered (if anything) and wait while the client is slow to read."""
        if self._parts:
            writer.write(self.take())
            await writer.drain()
