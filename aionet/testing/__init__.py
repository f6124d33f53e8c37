"""Test helpers for aionet and for handler authors.

* ``serve(config)`` — async context manager: a running ``Server`` on the given config (a dict or
  a ``Config``), ready, its listeners bound (use port 0), shut down on exit.
* ``MemoryTransport`` — an in-memory transport to drive a protocol without sockets.
* ``memory_streams()`` / ``memory_connection()`` — a stream handler's reader and writer (and the
  ``Connection`` its ``handle()`` takes) over a ``MemoryTransport``, without sockets.
* the pytest plugin (``aionet.testing.fixtures``, loaded automatically) provides the
  ``aionet_server`` fixture.
"""

from ._serve import serve as serve
from .streams import memory_connection as memory_connection
from .streams import memory_streams as memory_streams
from .transport import MemoryTransport as MemoryTransport

__all__ = ["MemoryTransport", "memory_connection", "memory_streams", "serve"]
