"""How much of a connection's output its socket still holds: ``unsent(transport)``.

The idle sweep counts a client that takes its output as active (``ConnectionRecord.
output_moved``); much of a long reply waits in the kernel's send queue, not in the transport's
buffer, so the queue is asked too (``SIOCOUTQ``, Linux; 0 elsewhere).
"""

from __future__ import annotations

import sys
from typing import Any

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not on this platform
    fcntl = termios = None  # type: ignore[assignment]

__all__ = ["unsent"]

#: ``SIOCOUTQ`` (Linux: the same number as ``TIOCOUTQ``), or None where it is not known.
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None


def unsent(transport: Any) -> int:
    """Bytes in the socket's send queue the peer has not acknowledged (0 where that cannot be
    asked: no socket, not Linux)."""
    sock = transport.get_extra_info("socket")
    if sock is None or _OUTQ is None:
        return 0
    try:
        answer = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int.from_bytes(answer, sys.byteorder, signed=True)
