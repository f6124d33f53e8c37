"""Listeners: one bound endpoint each (TCP over IPv4/IPv6, UDP, unix stream or datagram).

A listener binds its own sockets, hands them to the event loop, and reads back the bound
addresses (port 0 → the ephemeral port). It never speaks a protocol: accepted connections go to
the connection manager's slot, which admits them and runs the handler. Private modules behind
this face (h11 style):

* ``_base``     — ``Listener`` (a named endpoint with sockets) and ``Security``.
* ``_binding``  — binding the sockets, per transport (inet, unix; stale socket files).
* ``_stream``   — ``StreamListener`` and its accept loop: access control, PROXY headers,
  reservations, TLS wrapping, back-off when out of descriptors.
* ``_datagram`` — ``DatagramListener``: one protocol per socket, a reply per datagram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..handler import DatagramHandler, ProtocolHandler, StreamHandler
from ._base import Listener as Listener
from ._base import Security as Security
from ._datagram import DatagramListener as DatagramListener
from ._stream import ACCEPT_BACKOFF as ACCEPT_BACKOFF
from ._stream import ACCEPT_CAPACITY_ERRNOS as ACCEPT_CAPACITY_ERRNOS
from ._stream import PROTOCOL_VERSION_ALERT as PROTOCOL_VERSION_ALERT
from ._stream import StreamListener as StreamListener

if TYPE_CHECKING:
    from ...config.models import ListenerConfig
    from ..connections import ListenerSlot

__all__ = ["DatagramListener", "Listener", "Security", "StreamListener", "build_listeners"]


def build_listeners(
    config: ListenerConfig, slot: ListenerSlot, security: Security | None = None
) -> list[Listener]:
    """The listeners a handler needs: stream, datagram, or both (a DNS-style handler)."""
    handler = slot.handler
    out: list[Listener] = []
    if isinstance(handler, StreamHandler | ProtocolHandler):
        out.append(StreamListener(config, slot, security))
    if isinstance(handler, DatagramHandler):
        out.append(DatagramListener(config, slot, security))
    return out
