"""Modules split by concern keep their public faces (issue 14): every name importable where it
was, no module over the size limit, and the HTTP protocol's bases add no instance dict."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import structlog

import aionet
from aionet.http.protocol import HttpProtocol
from aionet.http.state import HttpLimits, HttpState

PKG = Path(aionet.__file__).resolve().parent

#: The largest module the code base allows (lines).
MAX_LINES = 600

#: What each split module exported before the split: still importable from the same path.
FACES = {
    "aionet.http.protocol": [
        "HttpProtocol",
        "LINGER",
        "MAX_METHOD",
        "MAX_QUEUE",
        "PAUSE_BODY",
        "PAUSE_HALT",
        "PAUSE_QUEUE",
        "SENDFILE_PIECE",
    ],
    "aionet.core.connections": [
        "Clock",
        "ConnectionManager",
        "ConnectionRecord",
        "CountingTransport",
        "HALF_CLOSE_TIMEOUT",
        "IDLE_CLOSE_GRACE",
        "LineReader",
        "ListenerSlot",
        "ListenerStats",
        "Reservation",
        "StreamProtocol",
        "Tracked",
        "decrement",
        "format_peer",
        "track",
    ],
    "aionet.core.listeners": [
        "ACCEPT_BACKOFF",
        "ACCEPT_CAPACITY_ERRNOS",
        "DatagramListener",
        "Listener",
        "PROTOCOL_VERSION_ALERT",
        "Security",
        "StreamListener",
        "build_listeners",
    ],
    "aionet.core.server": ["LockoutPeers", "Server"],
}


@pytest.mark.parametrize("module", list(FACES))
def test_every_name_is_importable_where_it_was(module: str) -> None:
    face = importlib.import_module(module)
    missing = [name for name in FACES[module] if not hasattr(face, name)]
    assert not missing, f"{module} no longer exports {missing}"
    for name in getattr(face, "__all__", []):
        assert hasattr(face, name), f"{module}.__all__ names {name!r}, which it lacks"


def test_no_module_is_over_the_limit() -> None:
    sizes = {
        path.relative_to(PKG.parent).as_posix(): len(path.read_text().splitlines())
        for path in PKG.rglob("*.py")
    }
    big = {path: lines for path, lines in sizes.items() if lines > MAX_LINES}
    assert not big, f"over {MAX_LINES} lines: {big}; split it by concern"


def test_the_http_protocol_bases_add_no_instance_dict() -> None:
    """The bases in ``http/_*.py`` declare no slots of their own: every field is a slot of
    ``HttpProtocol``, as it was in one class (no per-connection ``__dict__``)."""
    state = HttpState(None, HttpLimits(), structlog.get_logger("test"))
    proto = HttpProtocol(state)
    assert not hasattr(proto, "__dict__")
    for base in HttpProtocol.__mro__[1:]:
        assert base.__dict__.get("__slots__", ()) == (), base
