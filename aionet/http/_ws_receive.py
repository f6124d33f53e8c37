"""``WebSocket``'s receiving side: frames in, ASGI ``websocket.receive`` messages out.

Without an extension, ``_receive_fast`` parses the frame heads itself (``_ws_frames``) and
delivers a whole, final, unfragmented text or binary message directly; every other frame goes,
whole, to ``websockets``' ``Protocol`` (``_handle_frames``), whose parser therefore always starts
at a frame boundary and keeps the state it would have without the fast path (a fragmented
message, the close handshake, the RFC's close codes). A head it must fail the connection for
hands it everything from there on. Text is UTF-8 checked here: once per whole message, piece by
piece for a fragmented one (1007 as soon as a piece cannot be valid).

Received messages wait for the app up to ``MAX_QUEUE`` of them (or ``MAX_QUEUE_BYTES``), then
reading pauses until the app has taken half of them.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol as Framing
from websockets.protocol import State

from ._ws_frames import frame_at, unmask

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from .types import Message
    from .websocket import WsHost

__all__ = ["MAX_QUEUE", "MAX_QUEUE_BYTES", "PAUSE_WS", "FrameReceiver"]

#: Received messages held for an app that does not call ``receive()`` before reading pauses...
MAX_QUEUE = 16
#: ... or bytes of them (one message may still be up to ``max_size``).
MAX_QUEUE_BYTES = 1024 * 1024
#: ``HttpProtocol``'s pause reason while the app lags behind the received messages.
PAUSE_WS = 8
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class FrameReceiver:
    """The frame-to-message half of ``WebSocket`` (which holds the slots)."""

    if not TYPE_CHECKING:  # adds no instance dict; mypy still sees the attributes
        __slots__ = ()
    _host: WsHost
    _fast: bool  # no extension, and the fast path reads the frames
    _pending: bytes | bytearray  # the start of a frame the fast path waits for (b"": none)...
    _need: int  # ... until it holds this many bytes
    _limit: int  # max_size, or sys.maxsize
    _fragments: list[bytes] | None
    _utf8: codecs.IncrementalDecoder | None
    _text: bool  # the message being reassembled is text
    _ping: bytes | None
    _inbox: deque[tuple[Message, int]]  # each with its size in bytes
    _inbox_bytes: int
    _holding: bool  # reading is paused until the app takes more of the inbox
    _waiter: asyncio.Future[None] | None
    messages_in: int

    def _receive_fast(self, framing: Framing, data: bytes) -> bool:
        """Deliver whole plain messages here; hand every other frame, whole, to ``framing``.

        ``framing``'s parser is thus always at a frame boundary when it gets a frame, and its
        state (a fragmented message, the close handshake) is what it would be without us.
        True when ``framing`` had no part in it (nothing for it to write, its state unchanged).
        """
        pending = self._pending
        if pending:
            pending += data  # in place: a waiting frame is always a bytearray
            if len(pending) < self._need:
                return True
            data, self._pending = bytes(pending), b""
        quiet = True
        pos, size = 0, len(data)
        while pos < size:
            fragmented = framing.current_size
            head = frame_at(data, pos, self._limit - (fragmented or 0))
            if head is None or head[2] > size:  # the rest of the frame is still to come
                self._pending = bytearray(data[pos:])
                self._need = size - pos + 1 if head is None else head[2] - pos
                break
            first, start, end = head
            if first < 0:  # a head websockets fails the connection for: from here on, its job
                self._to_framing(framing, data[pos:])
                return False
            if (first == 0x81 or first == 0x82) and fragmented is None:
                if not self._message(unmask(data, start, end), framing, first == 0x81):
                    self._to_framing(framing, data[end:])  # 1007: websockets discards the rest
                    return False
            else:
                quiet = False
                framing.receive_data(data[pos:end])
                self._handle_frames(framing)
                if framing.state is not State.OPEN:  # closing: websockets takes the rest
                    self._to_framing(framing, data[end:])
                    return False
            pos = end
        return quiet

    def _to_framing(self, framing: Framing, data: bytes) -> None:
        """``framing`` parses everything from now on (after what the fast path held back)."""
        self._fast = False
        if self._pending:
            data, self._pending = bytes(self._pending) + data, b""
        if data:
            framing.receive_data(data)
            self._handle_frames(framing)

    def _handle_frames(self, framing: Framing) -> None:
        for frame in framing.events_received():
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                text = self._text = opcode is Opcode.TEXT
                if frame.fin:
                    self._message(bytes(frame.data), framing, text)
                else:
                    self._utf8 = _utf8_decoder() if text else None
                    self._fragments = [bytes(frame.data)]
                    if not self._check_utf8(bytes(frame.data), False, framing):
                        break
            elif opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(frame.data))
                if not self._check_utf8(bytes(frame.data), frame.fin, framing):
                    break
                if frame.fin:
                    data, self._fragments = b"".join(self._fragments), None
                    self._message(data, framing, self._text)
            elif opcode is Opcode.PONG and self._ping is not None and frame.data == self._ping:
                self._ping = None
            if framing.state is not State.OPEN:
                break

    def _check_utf8(self, data: bytes, final: bool, framing: Framing) -> bool:
        decoder = self._utf8
        if decoder is None:
            return True
        try:
            decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            self._utf8 = None
            self._fragments = None
            framing.fail(1007, f"invalid UTF-8: {exc.reason}")
            return False
        return True

    def _message(self, data: bytes, framing: Framing, is_text: bool) -> bool:
        """Queue one received message for the app; False if it failed the connection (1007)."""
        if is_text:
            self._utf8 = None
            try:
                text = data.decode()  # a fragmented one was checked piece by piece already
            except UnicodeDecodeError as exc:
                framing.fail(1007, f"invalid UTF-8: {exc.reason}")
                return False
            message: Message = {"type": "websocket.receive", "text": text}
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self.messages_in += 1
        metrics = self._host.state.metrics
        if metrics is not None:
            metrics.ws_received(len(data))
        inbox = self._inbox
        inbox.append((message, len(data)))
        self._inbox_bytes += len(data)
        if len(inbox) >= MAX_QUEUE or self._inbox_bytes >= MAX_QUEUE_BYTES:
            self._holding = True
            self._host.pause(PAUSE_WS)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True
