"""``HttpProtocol``'s deadlines: refusals, the timeouts, keep-alive and drain.

Refusals follow one path: a check raises ``HttpError`` (``aionet.proto.http``), ``reject()``
stops parsing, answers the status with ``Connection: close`` — right away, or after the
responses already owed when requests are in flight — and closes (a lingering close, so the
reply is not lost to a reset).

No timer per connection: the handler's periodic ``HttpState.tick()`` calls ``check_timeouts``,
which enforces the header, body, keep-alive and send timeouts from timestamps (one stored per
read) and, for the send timeout, the size of the transport's write buffer at each look. It
does so when ``next_check`` said: at the deadline of the connection's state, and no later
than the shortest timeout from the last look (any deadline that begins after a look ends at
least that long after it) — for a halted connection (upgraded to WebSocket, closing) the send
timeout, the only one left; while output waits on the client, every tick. Two moments ask for
a look at the next tick themselves (``HttpState.watch``): a lingering close (``LINGER`` is
shorter than the timeouts) and output passing the high-water mark (``pause_writing``), so the
send timeout runs from then. Output below the mark that stops draining is seen at the next
look, at most the shortest timeout later.

A base of ``HttpProtocol`` (``aionet.http.protocol``), which holds the slots and the state.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..proto.http import HttpError, error_response
from ._output import _Output
from .state import spare
from .target import decode_path, split_target

if TYPE_CHECKING:
    from collections import deque

    from ..core.connections import Bucket
    from .cycle import RequestCycle

__all__ = ["LINGER"]

#: Seconds a refused connection keeps draining the client's input before it is closed.
LINGER = 2.0


class _Deadlines(_Output):
    """Refuse, time out, keep alive or not, drain (the slots are ``HttpProtocol``'s)."""

    if not TYPE_CHECKING:  # adds no instance dict; mypy still sees the attributes
        __slots__ = ()
    peer: str
    _active: RequestCycle | None  # the request whose response is in progress
    _parsing: RequestCycle | None  # the request whose body is being parsed
    _queue: deque[RequestCycle]
    _error: HttpError | None  # refusal owed after the queued responses
    _eof: bool
    _lingering: bool
    _url: bytes
    _head_pending: bool
    _head_since: float
    _idle_since: float
    _send_left: int  # write buffer size at the last look
    due: Bucket | None  # its bucket in the state's deadline wheel

    def may_keep_alive(self) -> bool:
        """Whether the response being started may leave the connection open."""
        return not (
            self.state.draining
            or self._eof
            or (self._halted and self._error is None)
            or self.state.limits.keepalive_timeout <= 0
        )

    # -- refusals, timeouts, drain -----------------------------------------------------------

    def reject(self, err: HttpError) -> None:
        """Refuse with ``err.status`` and close, after the responses already owed."""
        self._halt()
        if self._url and err.target is None:
            err.target = decode_path(split_target(self._url[:200])[0])
        cycle, active = self._parsing, self._active
        self._parsing = None
        if cycle is not None and cycle is not active:
            with contextlib.suppress(ValueError):
                self._queue.remove(cycle)  # its body broke: it is never answered
        if active is None:
            self._refuse(err)
        elif active is cycle:  # the body of the request in flight broke
            self._refuse(err, answer=active.abandon())
        else:
            self._error = err  # answered once the queued responses are out

    def _refuse(self, err: HttpError, *, answer: bool = True) -> None:
        if answer:
            self.write(error_response(err.status, self.state.date.prelude))
        self._linger()
        if self.state.access is not None:
            self.state.log_refusal(err, self.peer)

    def _linger(self) -> None:
        """Close after a refusal without losing the reply to a reset (nginx's lingering close).

        Closing a socket with unread input makes the kernel send RST, which can destroy the
        reply before the client reads it. So: flush and send FIN, keep reading (discarding)
        until the client closes or ``LINGER`` seconds pass.
        """
        self._halted = True
        if self._aionet_rec is None or not self.transport.can_write_eof():
            self.close()
            return
        self._lingering = True
        self._idle_since = self.state.clock()
        self.state.watch(self)  # LINGER may end before the look it is filed for
        self.transport.write_eof()
        self._paused = 0
        self.transport.resume_reading()

    def check_timeouts(self, now: float) -> None:
        """Called by the periodic tick: abort a connection whose output is stuck, 408 a slow
        head or body, close an idle keep-alive connection."""
        limits = self.state.limits
        if limits.send_timeout and self._send_stalled(now, limits.send_timeout):
            self._abort("http_send_timeout")
            return
        if self._halted:
            if self._lingering and now - self._idle_since >= LINGER:
                self.close()
            return
        if self._head_pending:
            if limits.header_timeout and now - self._head_since >= limits.header_timeout:
                self.reject(HttpError(408, "request head not complete within header_timeout"))
        elif self._parsing is not None:
            if (
                limits.body_timeout
                and not self._paused  # we are not reading: not the client's delay
                and not self._parsing.expect_100  # it waits for our 100 Continue
                and now - self._read_at >= limits.body_timeout
            ):
                self.reject(HttpError(408, "request body stalled longer than body_timeout"))
        elif self._active is None:
            timeout = limits.keepalive_timeout or limits.header_timeout
            if timeout and now - self._idle_since >= timeout:
                self.close()

    def next_check(self, now: float) -> float:
        """When ``check_timeouts`` must look again (it just looked at ``now``)."""
        state = self.state
        limits = state.limits
        if limits.send_timeout and (self._sendfile is not None or self._send_left):
            return now + state.pace  # output waits: progress is measured look to look
        if self._halted:  # for good: refused (lingering), closing, or upgraded (WebSocket)
            if self._lingering:
                return min(now + LINGER, self._idle_since + LINGER)
            return now + spare(limits.send_timeout)  # the only deadline left
        due = now + limits.shortest()
        if self._head_pending:
            if limits.header_timeout:
                due = min(due, self._head_since + limits.header_timeout)
        elif self._parsing is not None:
            if limits.body_timeout and not self._paused and not self._parsing.expect_100:
                due = min(due, self._read_at + limits.body_timeout)
        elif self._active is None:
            timeout = limits.keepalive_timeout or limits.header_timeout
            if timeout:
                due = min(due, self._idle_since + timeout)
        return due

    def _send_stalled(self, now: float, timeout: float) -> bool:
        """Whether output has waited on the client for ``timeout`` without progress.

        Progress is the transport's write buffer shrinking between two ticks (or a
        ``sendfile`` piece completing); an empty buffer is never stalled.
        """
        if self._sendfile is not None:
            return now - self._send_since >= timeout
        if self._aionet_rec is None:
            return False
        size = self.transport.get_write_buffer_size()
        last, self._send_left = self._send_left, size
        if size == 0 or last == 0 or size < last:
            self._send_since = now
            return False
        return now - self._send_since >= timeout

    def _abort(self, event: str) -> None:
        """Drop the connection and whatever it still buffers (the client is not reading)."""
        self._halted = True
        if self._aionet_rec is not None:
            self.state.log.info(event, peer=self.peer)
            self.transport.abort()

    def drain(self) -> None:
        """Server drain: an idle connection closes after a short grace, a busy one after its
        response (the draining state sends ``Connection: close``).

        The grace lets a request that is already on its way (a client reusing the connection
        the moment its last response arrived) be read and answered with ``Connection: close``
        instead of hitting a closed socket: closing an idle keep-alive connection the instant
        a drain starts turns that common race into client errors.
        """
        if self._active is None and not self._halted:
            self._idle_since = self.state.clock()

    def close_if_idle(self) -> None:
        """End of the drain grace: close if still idle (no request begun)."""
        if self._active is None and not self._halted and not self._head_pending:
            self.close()
