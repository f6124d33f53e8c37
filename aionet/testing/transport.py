"""``MemoryTransport``: drive an ``asyncio.Protocol`` without sockets (tier-2 tests).

Writes land in ``buffer``; ``close()``/``abort()`` call the protocol's ``connection_lost``
immediately, ``feed()``/``feed_eof()`` deliver the peer's bytes and EOF, reading can be paused,
and the write buffer size can be set to exercise flow control. Modelled on uvicorn's
``MockTransport`` and Twisted's ``StringTransport``.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["MemoryTransport"]


class MemoryTransport(asyncio.Transport):
    def __init__(
        self,
        protocol: asyncio.BaseProtocol | None = None,
        *,
        peername: Any = ("127.0.0.1", 50000),
        sockname: Any = ("127.0.0.1", 7007),
        high_water: int = 64 * 1024,
    ) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.lost = False
        self.write_paused = False
        self.high_water = high_water
        self._protocol = protocol
        self._extra = {"peername": peername, "sockname": sockname}

    # -- the test's side --------------------------------------------------------------------------

    def connect(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        protocol.connection_made(self)

    def feed(self, data: bytes) -> None:
        assert isinstance(self._protocol, asyncio.Protocol)
        self._protocol.data_received(data)

    def feed_eof(self) -> None:
        """The peer half-closed: ``eof_received()``; the transport closes unless it says to
        keep the connection half-open (a true return), as asyncio's transports do."""
        assert isinstance(self._protocol, asyncio.Protocol)
        if not self._protocol.eof_received():
            self.close()

    def take(self) -> bytes:
        """Everything written so far (and clear it); a paused writer resumes when drained."""
        out = bytes(self.buffer)
        self.buffer.clear()
        if self.write_paused and self._protocol is not None:
            self.write_paused = False
            self._protocol.resume_writing()
        return out

    def _lose(self, exc: Exception | None = None) -> None:
        if not self.lost and self._protocol is not None:
            self.lost = True
            self._protocol.connection_lost(exc)

    # -- asyncio.Transport ------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            return
        self.buffer.extend(data)
        if len(self.buffer) > self.high_water and not self.write_paused and self._protocol:
            self.write_paused = True
            self._protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is not None:
            self.high_water = high

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._lose(None)

    def abort(self) -> None:
        self.aborted = True
        self.closed = True
        self._lose(None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol
