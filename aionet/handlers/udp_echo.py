"""UDP echo: each datagram is sent back to its sender."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..core.handler import DatagramHandler, HandlerOptions

if TYPE_CHECKING:
    from ..core.handler import Services

__all__ = ["UdpEchoHandler"]


class UdpEchoHandler(DatagramHandler):
    """``protocol: udp-echo``."""

    class Options(HandlerOptions):
        #: Datagrams longer than this are dropped instead of echoed (amplification is 1:1 anyway,
        #: but a cap keeps a lab server from reflecting jumbo payloads).
        max_datagram: int = Field(default=65507, ge=1, le=65507)

    options: Options

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        self._max = self.options.max_datagram  # a plain attribute: read per datagram

    def datagram(self, data: bytes, addr: Any) -> bytes | None:
        return data if len(data) <= self._max else None
