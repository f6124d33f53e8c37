"""The IMAP ``Hub``'s one poll for every session in IDLE: a probe per mailbox, not per session;
only the sessions behind are woken; every idler counts as active."""

from __future__ import annotations

import asyncio
from typing import Any

from aionet.imap.service import Hub


class Index:
    """``MailboxIndex``'s ``probe``/``changed`` pair over a version number."""

    def __init__(self) -> None:
        self.version = 0
        self.probes = 0
        self.broken = False

    def probe(self) -> object:
        self.probes += 1
        if self.broken:
            raise OSError("gone")
        return self.version

    def changed(self, stamp: object, probe: object = None) -> bool:
        return stamp != (self.probe() if probe is None else probe)


class Conn:
    def __init__(self) -> None:
        self.touched = 0

    def touch(self) -> None:
        self.touched += 1


class Selected:
    def __init__(self, key: str, index: Index) -> None:
        self.key, self.index, self.stamp = key, index, index.version
        self.event = asyncio.Event()


class Session:
    def __init__(self, key: str, index: Index) -> None:
        self.selected = Selected(key, index)
        self.conn = Conn()


def idling(hub: Hub, key: str, index: Index, count: int) -> list[Any]:
    sessions = [Session(key, index) for _ in range(count)]
    for session in sessions:
        hub.idle(session)  # type: ignore[arg-type]
    return sessions


async def test_one_probe_per_mailbox_wakes_only_the_sessions_behind() -> None:
    hub = Hub(poll=3600)  # looks driven by hand
    inbox, other = Index(), Index()
    many = idling(hub, "alice/INBOX", inbox, 1000)
    few = idling(hub, "bob/INBOX", other, 3)
    hub.look()
    assert (inbox.probes, other.probes) == (1, 1)
    assert not any(s.selected.event.is_set() for s in many + few)  # nothing new
    assert all(s.conn.touched == 1 for s in many + few)  # IDLE is activity

    inbox.version += 1  # another process delivered to alice's INBOX
    many[0].selected.stamp = inbox.version  # this one had synced already
    hub.look()
    assert inbox.probes == 2
    assert [s.selected.event.is_set() for s in many].count(True) == 999
    assert not any(s.selected.event.is_set() for s in few)

    hub.unidle(many[1], "alice/INBOX")  # left IDLE (DONE)
    other.broken = True  # bob's mailbox cannot be looked at: his sessions sync, and see why
    hub.look()
    assert all(s.selected.event.is_set() for s in few) and other.probes == 3
    assert many[1].conn.touched == 2 and many[2].conn.touched == 3
    hub.close()


async def test_the_poll_runs_while_someone_idles_and_stops_after() -> None:
    hub = Hub(poll=0.01)
    index = Index()
    [session] = idling(hub, "alice/INBOX", index, 1)
    index.version += 1
    await asyncio.wait_for(session.selected.event.wait(), 5)
    hub.unidle(session, "alice/INBOX")
    await asyncio.sleep(0.05)
    probes = index.probes
    await asyncio.sleep(0.05)
    assert index.probes == probes  # nobody idles: no more looks
    hub.close()


async def test_a_poll_of_many_mailboxes_is_spread_over_turns_of_the_loop(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr("aionet.imap.service.LOOK_SLICE", 10)
    hub = Hub(poll=0.01)
    indexes = [Index() for _ in range(35)]
    for i, index in enumerate(indexes):
        idling(hub, f"user{i}/INBOX", index, 2)
    turns: list[int] = []  # mailboxes probed so far, seen between turns of the loop

    async def watch() -> None:
        while sum(i.probes for i in indexes) < 35:
            turns.append(sum(i.probes for i in indexes))
            await asyncio.sleep(0)

    await asyncio.wait_for(watch(), 5)
    probed = sorted(set(turns))
    assert {0, 10, 20, 30} <= set(probed) and all(n % 10 == 0 for n in probed)
    hub.look(["user3/INBOX", "gone/INBOX"])  # a slice: only its mailboxes; a vanished key
    assert indexes[3].probes == 2 and indexes[4].probes == 1
    hub.close()
