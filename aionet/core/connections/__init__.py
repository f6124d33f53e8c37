"""The connection manager: one per process, shared by every listener.

It admits or refuses each new connection (global, per-listener and per-IP caps), keeps the live
table (id → record), closes idle connections with one periodic sweep, counts what happened, and
drives drain. Private modules behind this face (h11 style):

* ``_manager``  — the live table: ``ConnectionRecord``, ``ListenerSlot``, ``ConnectionManager``
  (admission, the idle sweep, drain, counters) and ``Reservation`` (counted from accept).
* ``_tracking`` — putting a protocol under the manager: ``Tracked`` (inline, for the hot
  paths) and ``track()`` (any other protocol, by a class swap: no wrapper in the data path).
* ``_streams``  — ``StreamProtocol``: a ``StreamHandler``'s streams, its task, its close.
* ``_wheel``    — ``DeadlineWheel``: the idle sweep's buckets of records by deadline (the
  HTTP handler files its connections' timeouts in one too).
* ``_counters`` — the coarse ``Clock``, ``ListenerStats``, ``format_peer``, ``decrement``.
* ``_outq``     — ``unsent()``: what a socket's send queue still holds (the sweep counts a
  client taking a long reply as active).
"""

from ..counting import CountingTransport as CountingTransport
from ._counters import Clock as Clock
from ._counters import ListenerStats as ListenerStats
from ._counters import decrement as decrement
from ._counters import format_peer as format_peer
from ._manager import HALF_CLOSE_TIMEOUT as HALF_CLOSE_TIMEOUT
from ._manager import IDLE_CLOSE_GRACE as IDLE_CLOSE_GRACE
from ._manager import ConnectionManager as ConnectionManager
from ._manager import ConnectionRecord as ConnectionRecord
from ._manager import ListenerSlot as ListenerSlot
from ._manager import Reservation as Reservation
from ._streams import LineReader as LineReader
from ._streams import StreamProtocol as StreamProtocol
from ._tracking import Tracked as Tracked
from ._tracking import track as track
from ._wheel import Bucket as Bucket
from ._wheel import DeadlineWheel as DeadlineWheel

__all__ = [
    "Bucket",
    "Clock",
    "ConnectionManager",
    "ConnectionRecord",
    "CountingTransport",
    "DeadlineWheel",
    "ListenerSlot",
    "ListenerStats",
    "Reservation",
    "StreamProtocol",
    "Tracked",
    "track",
]
