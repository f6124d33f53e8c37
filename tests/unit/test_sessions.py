"""``core.sessions``: the sessions set and drain every line service shares."""

from __future__ import annotations

import pytest

from aionet.core.sessions import Sessions
from aionet.core.starttls import upgrade_context
from aionet.errors import StartupError


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
