"""Putting a protocol under the connection manager: ``Tracked`` and ``track()``.

aionet's own hot-path protocols (``EchoProtocol``, ``HttpProtocol``) derive from ``Tracked``
and do the tracking inline. Any other protocol object — a third party's, such as aiosmtpd's
``SMTP`` — has its class swapped by ``track()`` for a generated direct subclass whose
callbacks admit, count and release the connection around the protocol's own, so no wrapper
sits in the data path.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..counting import CountingTransport

if TYPE_CHECKING:
    from ._manager import ConnectionRecord, ListenerSlot

__all__ = ["Tracked", "track"]


class Tracked:
    """Marker base for protocols that do their own tracking inline (aionet's hot paths).

    Such a protocol must, in ``connection_made``, set ``self._aionet_rec`` to
    ``self._aionet_slot.admit(transport)`` and do nothing more when that is None (refused);
    per read, add to ``rec.bytes_in`` and copy ``rec.clock.now`` to ``rec.last_active``; and
    in ``connection_lost`` call ``rec.release()`` once. ``EchoProtocol`` is the model. Every
    other protocol gets the same behaviour from ``track()`` without writing any of it.
    """

    if not TYPE_CHECKING:  # adds no instance dict; mypy still sees the attributes
        __slots__ = ()
    _aionet_slot: ListenerSlot
    _aionet_rec: ConnectionRecord | None
    _aionet_peer: Any  # set by the listener when a PROXY header named the real client


def _tracked_subclass(cls: type, foreign: bool = True) -> type:
    """A direct subclass of ``cls`` whose callbacks put it under the connection manager.

    ``connection_made`` asks the slot to admit the connection before ``cls``'s own runs (a
    refused connection never reaches the protocol); ``data_received`` counts bytes and marks
    activity; an exception from the protocol is logged, counted and aborts the connection;
    ``connection_lost`` releases the record after ``cls``'s own, in a ``finally``.

    A ``foreign`` (third-party) protocol also gets its transport behind a ``CountingTransport``
    (its output is counted in ``bytes_out``), and when it keeps the connection open after the
    peer's EOF, the record's half-close clock starts (``HALF_CLOSE_TIMEOUT``): a protocol that
    then neither writes nor closes is closed by the sweep instead of holding the socket. The
    stream handlers' protocol is not foreign: its writer counts, and its task always closes.

    It is a direct subclass adding no slots because CPython only allows ``obj.__class__ = new``
    between classes of the same layout (a mixin base in front of ``cls`` breaks that); the
    methods reach ``cls``'s own through closures, since zero-argument ``super()`` cannot be
    shared between generated classes.
    """
    base: Any = cls
    made, data = base.connection_made, base.data_received
    eof, lost = base.eof_received, base.connection_lost

    def connection_made(self: Any, transport: asyncio.BaseTransport) -> None:
        self._aionet_rec = None  # a refusal may report connection_lost before admit returns
        rec = self._aionet_rec = self._aionet_slot.admit(transport, self._aionet_peer)
        if rec is not None:
            try:
                made(self, CountingTransport(transport, rec) if foreign else transport)
            except Exception as exc:
                rec.slot.handler_error(rec, exc)
                rec.transport.abort()

    def data_received(self: Any, chunk: bytes) -> None:
        rec = self._aionet_rec
        if rec is not None:
            rec.bytes_in += len(chunk)
            rec.last_active = rec.clock.now
            try:
                data(self, chunk)
            except Exception as exc:
                rec.slot.handler_error(rec, exc)
                rec.transport.abort()

    def eof_received(self: Any) -> bool | None:
        rec = self._aionet_rec
        if rec is None:
            return None
        keep_open: bool | None = eof(self)
        if keep_open and foreign:
            rec.half_close()
        return keep_open

    def connection_lost(self: Any, exc: Exception | None) -> None:
        rec = self._aionet_rec
        if rec is None:
            return
        self._aionet_rec = None
        try:
            lost(self, exc)
        finally:
            rec.release()

    namespace: dict[str, Any] = {
        "__slots__": (),
        "_aionet_tracked": True,
        "_aionet_peer": None,
        "connection_made": connection_made,
        "data_received": data_received,
        "eof_received": eof_received,
        "connection_lost": connection_lost,
    }
    if issubclass(cls, asyncio.BufferedProtocol):
        updated = base.buffer_updated

        def buffer_updated(self: Any, nbytes: int) -> None:
            rec = self._aionet_rec
            if rec is not None:
                rec.bytes_in += nbytes
                rec.last_active = rec.clock.now
                updated(self, nbytes)

        namespace["buffer_updated"] = buffer_updated
    return type(f"Tracked{cls.__name__}", (cls,), namespace)


class _Forwarder(asyncio.Protocol):
    """Forwards every callback to another protocol (for classes that refuse a class swap)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


_tracked_classes: dict[type, type] = {}


def _tracked_class(cls: type) -> type:
    tracked = _tracked_classes.get(cls)
    if tracked is None:
        tracked = _tracked_classes[cls] = _tracked_subclass(cls)
    return tracked


def track(protocol: asyncio.BaseProtocol, slot: ListenerSlot) -> asyncio.BaseProtocol:
    """Put ``protocol`` under ``slot``'s tracking and return the object to give the loop.

    A ``Tracked`` protocol (aionet's own, written for speed) is only handed its slot. Any
    other protocol object has its class swapped, once per class, for a generated direct
    subclass with the tracking callbacks, so the object stays itself: no wrapper in the data
    path, and an in-place TLS upgrade that re-targets a transport at the same object (aiosmtpd's
    STARTTLS) keeps the tracking. A class that refuses the swap (a C type, ``__slots__``
    without ``__dict__``) is wrapped in a forwarding proxy instead.
    """
    cls = type(protocol)
    if not (isinstance(protocol, Tracked) or getattr(cls, "_aionet_tracked", False)):
        try:
            protocol.__class__ = _tracked_class(cls)
        except TypeError:
            protocol = _tracked_class(_Forwarder)(protocol)
    try:
        protocol._aionet_slot = slot  # type: ignore[attr-defined]
    except AttributeError:
        protocol.__class__ = cls
        protocol = _tracked_class(_Forwarder)(protocol)
        protocol._aionet_slot = slot  # type: ignore[attr-defined]
    return protocol
