"""``HttpProtocol``'s output side: writes, read pausing, waiting for the client, ``sendfile``.

This is what a request cycle writes through (the ``HttpConnection`` protocol of
``aionet.http.cycle``): every write adds to the connection record's ``bytes_out``; reading is
paused for one or more reasons at once (one bit each, so one reason's resume cannot undo
another's pause); ``wait_writable`` parks a response until ``resume_writing``; a file goes out
with ``loop.sendfile`` in ``SENDFILE_PIECE`` pieces, each one progress for ``send_timeout``.

A base of ``HttpProtocol`` (``aionet.http.protocol``), which holds the slots and the state.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..core.connections import Tracked
from ..proto.http import CONTINUE_100
from .cycle import ClientDisconnected

if TYPE_CHECKING:
    from .state import HttpState

__all__ = ["PAUSE_BODY", "PAUSE_HALT", "PAUSE_QUEUE", "SENDFILE_PIECE"]

# Why reading is paused: one bit per reason, so one reason's resume cannot undo another's pause.
PAUSE_BODY = 1  # a request body is buffered past the high-water mark
PAUSE_QUEUE = 2  # too many pipelined requests wait behind the one in flight
PAUSE_HALT = 4  # refused or upgraded: nothing more is parsed

#: Bytes per ``loop.sendfile`` call: each completed piece is progress for ``send_timeout``.
SENDFILE_PIECE = 256 * 1024


class _Output(Tracked):
    """Writing, pausing and ``sendfile`` for one connection (the slots are ``HttpProtocol``'s)."""

    if not TYPE_CHECKING:  # adds no instance dict; mypy still sees the attributes
        __slots__ = ()
    state: HttpState
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    write_paused: bool
    _halted: bool  # nothing more is parsed: refused, upgraded or closing
    _paused: int  # PAUSE_* bits
    _read_at: float  # when the last read came (the body timeout runs from it)
    _drain_waiter: asyncio.Future[None] | None
    _sendfile: asyncio.Future[Any] | None  # a ``loop.sendfile`` piece in flight
    _send_since: float  # when output last made progress

    def write(self, data: bytes) -> None:
        rec = self._aionet_rec
        if rec is not None:
            rec.bytes_out += len(data)
            self.transport.write(data)

    def write_pair(self, head: bytes, body: bytes) -> None:
        """``head`` then ``body`` in one gathered write (uvloop: one ``writev``, no join)."""
        rec = self._aionet_rec
        if rec is not None:
            rec.bytes_out += len(head) + len(body)
            self.transport.writelines((head, body))

    def close(self) -> None:
        self._halted = True
        if self._aionet_rec is not None:
            self.transport.close()

    def pause(self, reason: int) -> None:
        if not self._paused and self._aionet_rec is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self._aionet_rec is not None:
                self._read_at = self.state.now  # the body timeout runs from now again
                self.transport.resume_reading()

    def send_continue(self) -> None:
        """``100 Continue``: the client sends its body from now (the body timeout runs)."""
        self._read_at = self.state.clock()
        self.write(CONTINUE_100)

    def _halt(self) -> None:
        self._halted = True
        self.pause(PAUSE_HALT)

    async def wait_writable(self) -> None:
        """Wait until the transport's write buffer drains below its low-water mark."""
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self.loop.create_future()
        await waiter

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sendfile(self, file: Any, offset: int, count: int) -> bool:
        """Send ``count`` bytes of ``file`` with ``loop.sendfile``; False if unavailable.

        Native sendfile needs a plain socket transport of the asyncio loop (not uvloop, not
        TLS); the caller then falls back to reading the file in chunks. The file goes in
        pieces of ``SENDFILE_PIECE`` so that ``send_timeout`` sees progress.

        Raises:
            ClientDisconnected: the connection was lost (or aborted) part way.
        """
        state = self.state
        if not state.sendfile or self._aionet_rec is None:
            return False
        start, end = offset, offset + count
        while offset < end:
            size = min(SENDFILE_PIECE, end - offset)
            try:
                await self._sendfile_piece(file, offset, size)
            except NotImplementedError:
                state.sendfile = False  # this loop has no sendfile at all (uvloop)
                return False
            except (asyncio.SendfileNotAvailableError, RuntimeError):
                if offset == start:  # nothing sent yet: the caller reads the file instead
                    return False  # this transport cannot (TLS), or it is closing
                raise ClientDisconnected("the client disconnected") from None
            offset += size
        return True

    async def _sendfile_piece(self, file: Any, offset: int, size: int) -> None:
        rec = self._aionet_rec
        if rec is None:
            raise ClientDisconnected("the client disconnected")
        self._send_since = self.state.clock()
        piece = self._sendfile = asyncio.ensure_future(
            self.loop.sendfile(self.transport, file, offset, size, fallback=False)
        )
        try:
            await piece
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our own task is being cancelled
            raise ClientDisconnected("the client disconnected") from None
        finally:
            self._sendfile = None
        rec.bytes_out += size
