"""UDP echo: each datagram is sent back to its sender."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..core.handler import DatagramHandler, HandlerOptions

__all__ = ["UdpEchoHandler"]


class UdpEchoHandler(DatagramHandler):
    """``protocol: udp-echo``."""

    class Options(HandlerOptions):
        #: Datagrams longer than this are dropped instead of echoed (amplification is 1:1 anyway,
        #: but a cap keeps a lab server from reflecting jumbo payloads).
        max_datagram: int = Field(default=65507, ge=1, le=65507)

    options: Options

    def datagram(self, data: bytes, addr: Any) -> bytes | None:
        if len(data) > self.options.max_datagram:
            return None
        return data
