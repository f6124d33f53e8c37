"""The FTP data path, owned by aionet (aioftp's stream-based one is too slow, see
benchmarks/RESULTS.md):

* **downloads on plain TCP** go from the file to the socket with ``sendfile(2)``: the stdlib
  loop's ``loop.sock_sendfile`` where the loop implements it natively, else (uvloop, which has
  no ``sendfile``) the same non-blocking ``os.sendfile`` loop driven by ``add_writer``;
* **everything else** (uploads, listings, TLS data channels) runs on a transport made from the
  accepted socket with ``loop.connect_accepted_socket`` (``ssl=`` the control connection's
  context, so the client can resume the control session) and ``DataProtocol``, a
  ``BufferedProtocol`` receiving straight into a 1 MiB buffer that is written to the file.

Resource handling: ``DataChannel.close()`` / ``abort()`` always close the transport; the caller
owns the socket until it is handed to ``open_channel``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

__all__ = ["DataChannel", "DataProtocol", "open_channel", "send_file"]

RECV_BUFFER = 1024 * 1024
SEND_CHUNK = 256 * 1024
CLOSE_TIMEOUT = 10.0


class _NoTickets(ssl.SSLContext):
    """Hands the loop the control connection's context, minus TLS 1.3 session tickets.

    A data connection must use the control's ``SSLContext`` (the client resumes the control's
    session, and tickets only decrypt under the context that issued them), but it must not send
    NewSessionTicket messages: a client that only writes (an upload) never reads them, and
    closing a socket with unread data makes the kernel send RST and drop what the client had
    not sent yet — a truncated upload (seen with lftp). OpenSSL copies ``num_tickets`` into each
    connection when it is created (``wrap_bio``), so this wrapper sets it to 0 for exactly that
    call; nothing can run in between (no await).
    """

    _real: ssl.SSLContext

    def __new__(cls, real: ssl.SSLContext) -> _NoTickets:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self._real = real
        return self

    def __init__(self, real: ssl.SSLContext) -> None:
        pass

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        real = self._real
        tickets = real.num_tickets
        real.num_tickets = 0
        try:
            return real.wrap_bio(*args, **kwargs)
        finally:
            real.num_tickets = tickets


_no_tickets: weakref.WeakKeyDictionary[ssl.SSLContext, _NoTickets] = weakref.WeakKeyDictionary()


def data_context(control: ssl.SSLContext) -> ssl.SSLContext:
    """The context to hand the loop for a data connection under ``control``'s TLS session."""
    wrapper = _no_tickets.get(control)
    if wrapper is None:
        wrapper = _no_tickets[control] = _NoTickets(control)
    return wrapper


class DataProtocol(asyncio.BufferedProtocol):
    """Receives into one large buffer, hands each chunk to ``sink``; flow control for sends."""

    def __init__(self, sink: Callable[[memoryview], None] | None = None) -> None:
        self._buffer = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buffer)
        self.sink = sink
        self.received = 0
        loop = asyncio.get_running_loop()
        self.eof: asyncio.Future[None] = loop.create_future()  # peer finished sending
        self.closed: asyncio.Future[None] = loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self.sink is None:
            return  # nothing expected (a listing or a download): ignore what the peer sends
        try:
            self.sink(self._view[:nbytes])
        except BaseException as exc:  # a full disk or the quota: stop the transfer
            self.error = exc
            if not self.eof.done():
                self.eof.set_exception(exc)
            if self.transport is not None:
                self.transport.abort()

    def eof_received(self) -> bool:
        if not self.eof.done():
            self.eof.set_result(None)
        return False

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        if not self.eof.done():
            self.eof.set_exception(exc or ConnectionResetError("data connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)
        # nobody may await eof (a download); do not log "exception never retrieved"
        if self.eof.done() and not self.eof.cancelled():
            self.eof.exception()

    async def writable(self) -> None:
        await self._writable.wait()
        if self.closed.done():
            raise ConnectionResetError("data connection lost")


class DataChannel:
    """One open data connection: a transport with its ``DataProtocol``."""

    def __init__(self, transport: asyncio.Transport, protocol: DataProtocol) -> None:
        self.transport = transport
        self.protocol = protocol

    @property
    def session_reused(self) -> bool | None:
        """Whether the TLS handshake resumed a session (None on plain TCP)."""
        sslobj = self.transport.get_extra_info("ssl_object")
        return None if sslobj is None else bool(sslobj.session_reused)

    async def write(self, data: bytes | memoryview) -> None:
        await self.protocol.writable()
        self.transport.write(data)

    async def send_path(self, fd: int, offset: int, touch: Callable[[int], None]) -> int:
        """Send the file from ``offset`` in chunks (the TLS path); returns bytes sent."""
        sent = 0
        while True:
            chunk = os.pread(fd, SEND_CHUNK, offset + sent)
            if not chunk:
                return sent
            await self.write(chunk)
            sent += len(chunk)
            touch(len(chunk))

    async def close(self) -> None:
        """Flush, close (TLS: close_notify) and wait until the transport is gone."""
        await self.protocol.writable()
        self.transport.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self.protocol.closed)
        except TimeoutError:
            self.transport.abort()

    def abort(self) -> None:
        self.transport.abort()


async def open_channel(
    sock: socket.socket,
    context: ssl.SSLContext | None,
    *,
    sink: Callable[[memoryview], None] | None = None,
    handshake_timeout: float = 10.0,
) -> DataChannel:
    """Wrap an accepted data socket (TLS server side when ``context`` is given).

    Raises:
        ssl.SSLError, ConnectionError, TimeoutError: the TLS handshake failed (socket closed).
    """
    loop = asyncio.get_running_loop()
    protocol: DataProtocol | None = None

    def factory() -> DataProtocol:
        nonlocal protocol
        protocol = DataProtocol(sink)
        return protocol

    kwargs: dict[str, Any] = {}
    if context is not None:
        kwargs = {"ssl": data_context(context), "ssl_handshake_timeout": handshake_timeout}
    try:
        transport, _ = await loop.connect_accepted_socket(factory, sock, **kwargs)
    except BaseException:
        sock.close()
        raise
    assert protocol is not None
    return DataChannel(transport, protocol)


async def send_file(
    sock: socket.socket, fd: int, offset: int, count: int, touch: Callable[[int], None]
) -> int:
    """Zero-copy ``sendfile`` of ``count`` bytes from ``offset`` on a plain non-blocking socket.

    Raises:
        OSError: the peer went away (BrokenPipeError, ConnectionResetError).
    """
    loop = asyncio.get_running_loop()
    if isinstance(loop, asyncio.BaseEventLoop) and count > 0:
        # The stdlib loop's native path (os.sendfile + add_writer), in slices to count activity.
        sent = 0
        with os.fdopen(os.dup(fd), "rb") as file:
            while sent < count:
                piece = min(count - sent, 64 * 1024 * 1024)
                n = await loop.sock_sendfile(sock, file, offset + sent, piece, fallback=False)
                if n == 0:
                    break
                sent += n
                touch(n)
        return sent
    return await _sendfile_loop(loop, sock, fd, offset, count, touch)


async def _sendfile_loop(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    fd: int,
    offset: int,
    count: int,
    touch: Callable[[int], None],
) -> int:
    sent = 0
    out = sock.fileno()
    while sent < count:
        try:
            n = os.sendfile(out, fd, offset + sent, min(count - sent, 1 << 30))
        except BlockingIOError:
            await _writable(loop, out)
            continue
        if n == 0:
            break
        sent += n
        touch(n)
    return sent


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_writer(fd, ready)
    try:
        await fut
    finally:
        with contextlib.suppress(Exception):
            loop.remove_writer(fd)
