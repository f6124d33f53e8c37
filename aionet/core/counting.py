"""``CountingTransport``: how the output of a wrapped third-party protocol is counted.

Its own module so that ``core.starttls`` (imported by ``core.handler``, which
``core.connections`` imports) can re-wrap an upgraded transport without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

__all__ = ["CountingTransport"]


class Counted(Protocol):
    """Where the bytes go: a ``ConnectionRecord``."""

    bytes_out: int


class CountingTransport:
    """The transport a wrapped third-party protocol is given: ``write`` and ``writelines`` add
    to the record's ``bytes_out`` and go straight on; everything else is the transport's own.

    A proxy, not a patched transport, because uvloop's transports are C types whose methods
    cannot be replaced per object. The record keeps the real transport (the core closes and
    aborts that); ``core.starttls.upgrade`` hands the real one to ``loop.start_tls`` and returns
    a new proxy around the TLS transport, so what is counted after STARTTLS is the plaintext
    the protocol wrote, as before it.
    """

    __slots__ = ("_aionet_rec", "transport")

    def __init__(self, transport: asyncio.BaseTransport, rec: Counted) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._aionet_rec = rec

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._aionet_rec.bytes_out += len(data)
        self.transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        chunks = list(list_of_data)
        self._aionet_rec.bytes_out += sum(map(len, chunks))
        self.transport.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    def __repr__(self) -> str:
        return f"<CountingTransport {self.transport!r}>"
