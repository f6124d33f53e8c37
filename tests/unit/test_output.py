"""``Corked``: gathered output comes out whole, in order, once; ``add`` says when to flush."""

from __future__ import annotations

from aionet.core.output import Corked
from aionet.testing import memory_streams


def test_gathers_in_order_and_signals_the_limit() -> None:
    out = Corked(limit=10)
    assert not out
    assert out.add(b"+OK\r\n") is False
    assert out.add(b"+OK 2\r\n") is True  # 12 >= 10
    assert out and out.size == 12
    assert out.take() == b"+OK\r\n+OK 2\r\n"
    assert not out and out.size == 0
    assert out.add(b"x") is False
    assert out.take() == b"x"


async def test_flush_writes_once_and_only_when_something_is_gathered() -> None:
    _, writer, transport = memory_streams()
    out = Corked(limit=1024)
    await out.flush(writer)
    assert transport.take() == b""
    out.add(b"a\r\n")
    out.add(b"b\r\n")
    await out.flush(writer)
    assert transport.take() == b"a\r\nb\r\n" and not out
    writer.close()
