"""``core.sessions``: the sessions set, drain and the idle goodbye every line service shares."""

from __future__ import annotations

import pytest

from aionet.core.sessions import Sessions, say_goodbye
from aionet.core.starttls import upgrade_context
from aionet.errors import StartupError
from aionet.testing import MemoryTransport


class _Session:
    def __init__(self, sessions: Sessions[_Session] | None = None) -> None:
        self.told = 0
        self.sessions = sessions

    def drain_now(self) -> None:
        self.told += 1
        if self.sessions is not None:  # a session that closes at once leaves the set
            self.sessions.discard(self)


def test_track_holds_a_session_while_it_runs_even_when_it_fails() -> None:
    sessions: Sessions[_Session] = Sessions()
    one = _Session()
    seen: list[set[_Session]] = []

    def run() -> None:
        with sessions.track(one):
            seen.append(set(sessions))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        run()
    assert seen == [{one}]
    assert len(sessions) == 0


def test_drain_tells_every_live_session_once_and_sets_draining() -> None:
    sessions: Sessions[_Session] = Sessions()
    kept, leaving = _Session(), _Session(sessions)
    sessions.add(kept)
    sessions.add(leaving)
    assert not sessions.draining
    sessions.drain()  # a session leaving the set while told does not upset the walk
    assert sessions.draining
    assert (kept.told, leaving.told) == (1, 1)
    assert set(sessions) == {kept}


def test_no_starttls_certificate_means_no_upgrade() -> None:
    assert upgrade_context(None, None, "pop3") is None


def test_a_starttls_certificate_without_tls_config_is_a_startup_error() -> None:
    with pytest.raises(StartupError, match=r"^imap: options.starttls 'mail' needs tls"):
        upgrade_context("mail", None, "imap")


GOODBYE = b"421 4.4.2 mx.test Error: timeout exceeded\r\n"


def test_the_goodbye_is_written_at_once_and_counted_by_the_caller() -> None:
    transport = MemoryTransport()
    assert say_goodbye(transport, GOODBYE) == len(GOODBYE)
    assert transport.take() == GOODBYE
    assert not transport.closed  # closing is the caller's


def test_no_goodbye_to_say_writes_nothing() -> None:
    transport = MemoryTransport()
    assert say_goodbye(transport, None) == 0
    assert say_goodbye(transport, b"") == 0
    assert transport.take() == b""


def test_no_goodbye_once_the_connection_is_closing() -> None:
    transport = MemoryTransport()
    transport.closed = True  # a drain's 421, a QUIT's 221: closing already
    assert say_goodbye(transport, GOODBYE) == 0
    assert transport.buffer == b""


@pytest.mark.parametrize("pending", [b"+OK 10 octets\r\n", b"x" * (64 * 1024 + 1)])
def test_no_goodbye_behind_output_the_client_has_not_read(pending: bytes) -> None:
    # Full (the kernel took no more) or paused past the high-water mark: the goodbye would wait
    # behind the unread bytes, inside a reply perhaps, and never block the caller.
    transport = MemoryTransport()
    transport.write(pending)
    assert say_goodbye(transport, GOODBYE) == 0
    assert transport.take() == pending
