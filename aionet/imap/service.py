"""The state one ``imap`` listener shares across its sessions: ``ImapService``.

The sessions (``aionet.imap.session``) read it; they never see the handler that owns it (the
face, ``aionet.handlers.imap``). It holds the options, the Maildir store and its thread pool,
the STARTTLS context, the auth portal, the live sessions and their drain (``core.sessions``),
the change hub (``Hub``: sessions of this process on one mailbox wake each other), the cache of
parsed message structures, and the counters ``/metrics`` shows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..core.samples import Sample
from ..core.sessions import Sessions
from ..storage.index import Account
from ..storage.maildir import MailStore

if TYPE_CHECKING:
    import ssl
    from collections.abc import Hashable
    from pathlib import Path

    from structlog.typing import FilteringBoundLogger

    from ..auth.portal import Portal
    from ..storage.maildir import Maildir
    from .fetch import Structure
    from .options import ImapOptions
    from .session import Session

__all__ = ["Hub", "ImapService", "InfoCache"]

#: Mailboxes probed in one turn of the event loop (five ``stat()`` calls each): with many
#: users in IDLE, a poll is spread over several turns instead of stalling the loop for all.
LOOK_SLICE = 128


class Hub:
    """In-process change notification per mailbox directory, and the one poll for IDLE.

    A session that changes a mailbox (STORE, EXPUNGE, APPEND, COPY/MOVE into it) calls
    ``changed(path)``; every other session that has it selected gets its event set and
    re-syncs at its next command, or at once while in IDLE. Changes from other processes (an
    SMTP worker's delivery) are found by polling: every ``poll`` seconds while any session is
    in IDLE (``idle``), one ``MailboxIndex.probe`` per mailbox is compared with the stamp of
    each session idling on it, and the sessions behind get their event set. So 10,000
    sessions idling on one mailbox cost one probe a poll, not 10,000 probes and wake-ups; on
    10,000 mailboxes, one probe each and no wake-up of a session with nothing new, spread
    over turns of the event loop (``LOOK_SLICE`` mailboxes a turn).
    """

    __slots__ = ("_idlers", "_poller", "_watchers", "poll")

    def __init__(self, poll: float = 1.0) -> None:
        self._watchers: dict[Hashable, set[asyncio.Event]] = {}
        #: The sessions in IDLE, by the key of their selected mailbox.
        self._idlers: dict[Hashable, set[Session]] = {}
        self._poller: asyncio.Task[None] | None = None
        #: Seconds between two looks for other processes' changes (``idle_poll``).
        self.poll = poll

    def idle(self, session: Session) -> None:
        """``session`` entered IDLE with a mailbox selected: look for changes to it from now
        until ``unidle``; each look is also activity for the session (its connection's
        ``touch``: IDLE has its own autologout, not the idle sweep)."""
        selected = session.selected
        assert selected is not None
        self._idlers.setdefault(selected.key, set()).add(session)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._polling())

    def unidle(self, session: Session, key: Hashable) -> None:
        members = self._idlers.get(key)
        if members is not None:
            members.discard(session)
            if not members:
                del self._idlers[key]

    async def _polling(self) -> None:
        while self._idlers:
            await asyncio.sleep(self.poll)
            keys = list(self._idlers)
            for start in range(0, len(keys), LOOK_SLICE):
                if start:
                    await asyncio.sleep(0)  # the other connections run between two slices
                self.look(keys[start : start + LOOK_SLICE])

    def look(self, keys: list[Hashable] | None = None) -> None:
        """One poll of the mailboxes ``keys`` (default: every one with sessions in IDLE): per
        mailbox one probe, compared with each idling session's stamp; a session behind (or
        a probe that failed) gets its event set."""
        for key in list(self._idlers) if keys is None else keys:
            members = self._idlers.get(key)
            if members is None:
                continue  # its last idler left since the poll began
            probe: object = None
            failed = False
            for session in list(members):
                session.conn.touch()
                selected = session.selected
                if selected is None or selected.event.is_set():
                    continue
                index = selected.index
                if probe is None and not failed:
                    try:
                        probe = index.probe()
                    except OSError:
                        failed = True  # the session's own sync meets the error and says so
                if failed or index.changed(selected.stamp, probe):
                    selected.event.set()

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()

    def watch(self, path: Hashable) -> asyncio.Event:
        event = asyncio.Event()
        self._watchers.setdefault(path, set()).add(event)
        return event

    def unwatch(self, path: Hashable, event: asyncio.Event) -> None:
        watchers = self._watchers.get(path)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self._watchers[path]

    def changed(self, path: Hashable, source: asyncio.Event | None = None) -> None:
        for event in self._watchers.get(path, ()):
            if event is not source:
                event.set()


class InfoCache:
    """The structure answers of messages (``Structure``: ENVELOPE, BODY, BODYSTRUCTURE) by
    Maildir unique name and size, least recently used dropped first.

    Maildir files never change content (flags live in the name), so a unique name + size is
    a safe key: a FETCH of a thousand ENVELOPEs after the first parses nothing again. Used from
    the store's worker threads; every operation is a single dict step (atomic under the GIL).
    """

    __slots__ = ("_entries", "capacity")

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, int], Structure] = OrderedDict()

    def get(self, unique: str, size: int) -> Structure | None:
        info = self._entries.get((unique, size))
        if info is not None:
            with contextlib.suppress(KeyError):  # trimmed by another thread meanwhile
                self._entries.move_to_end((unique, size))
        return info

    def put(self, unique: str, size: int, info: Structure) -> None:
        entries = self._entries
        entries[(unique, size)] = info
        while len(entries) > self.capacity:
            try:
                entries.popitem(last=False)
            except KeyError:
                break


class ImapService:
    """What the sessions of one ``imap`` listener share."""

    def __init__(
        self,
        options: ImapOptions,
        *,
        data_dir: Path,
        log: FilteringBoundLogger,
        portal: Portal | None,
    ) -> None:
        self.options = options
        self.log = log
        self.portal = portal
        self.store = MailStore(data_dir / "mail")
        self.tls_context: ssl.SSLContext | None = None
        self.sessions: Sessions[Session] = Sessions()
        self.hub = Hub(options.idle_poll)
        self.infos = InfoCache()
        self.logins: collections.Counter[str] = collections.Counter()
        self.commands: collections.Counter[tuple[str, str]] = collections.Counter()
        self.sessions_total = 0

    def mailbox_of(self, name: str) -> Maildir:
        """The INBOX Maildir of user ``name`` (``bob@example.test`` → example.test/bob)."""
        local, _, domain = name.partition("@")
        return self.store.mailbox(domain or self.options.domain, local)

    def account(self, name: str) -> Account:
        return Account(self.mailbox_of(name))

    def samples(self) -> list[Sample]:
        out = [
            Sample(
                "aionet_imap_sessions",
                "gauge",
                "IMAP sessions open now.",
                (),
                len(self.sessions),
            ),
            Sample(
                "aionet_imap_sessions_total",
                "counter",
                "IMAP sessions opened.",
                (),
                self.sessions_total,
            ),
        ]
        out += [
            Sample(
                "aionet_imap_logins", "counter", "IMAP logins, by outcome.", (("outcome", k),), n
            )
            for k, n in sorted(self.logins.items())
        ]
        out += [
            Sample(
                "aionet_imap_commands",
                "counter",
                "IMAP commands answered, by command and result (ok, no, bad).",
                (("command", name), ("result", result)),
                n,
            )
            for (name, result), n in sorted(self.commands.items())
        ]
        return out

    def close(self) -> None:
        self.hub.close()
        self.store.close()
