"""The state one ``smtp`` listener shares across its sessions: ``SmtpService``.

The engine (``AionetSMTP``) and the hooks (``SmtpHooks``) read it; neither knows the handler
that owns it (the face, ``aionet.handlers.smtp``). It holds the options, the Maildir store,
the live sessions and their drain (``core.sessions``), the per-IP rate window, the counters
``/metrics`` shows, and the ``on_message`` callback, run after a message is safe on disk.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import Envelope

from ..core.registry import import_from_string
from ..core.samples import Sample
from ..core.sessions import DrainingSession, Sessions
from ..storage.maildir import Maildir, MailStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from structlog.typing import FilteringBoundLogger

    from ..core.handler import Services
    from .options import RateLimit, SmtpOptions

__all__ = ["AcceptedMessage", "RateWindow", "SmtpService", "TargetEnvelope", "printable"]


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """What ``on_message`` receives: a message already fsynced into every Maildir."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    paths: tuple[Path, ...]  # the message file in each recipient's ``new/``
    size: int
    peer: Any
    user: str | None


class TargetEnvelope(Envelope):
    """aiosmtpd's envelope plus the Maildirs the accepted recipients resolve to."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: dict[Path, Maildir] = {}


class RateWindow:
    """Accepted messages per client IP in a sliding window, for at most ``max_clients`` IPs."""

    def __init__(self, limit: RateLimit, max_clients: int = 100_000) -> None:
        self.limit = limit
        self.max_clients = max_clients
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allowed(self, ip: str, now: float) -> bool:
        if not self.limit.messages:
            return True
        times = self._seen.get(ip)
        if times is None:
            return True
        while times and times[0] <= now - self.limit.per:
            times.popleft()
        return len(times) < self.limit.messages

    def record(self, ip: str, now: float) -> None:
        if not self.limit.messages:
            return
        times = self._seen.pop(ip, None) or deque()
        times.append(now)
        self._seen[ip] = times
        while len(self._seen) > self.max_clients:
            self._seen.popitem(last=False)


def printable(text: str, limit: int = 255) -> str:
    """``text`` cut at ``limit``, every unprintable character and parenthesis (a comment in a
    header) as ``?``."""
    text = text[:limit]
    if text.isprintable() and "(" not in text and ")" not in text:
        return text  # as nearly every name is: no per-character pass
    return "".join(c if c.isprintable() and c not in "()" else "?" for c in text)


class SmtpService:
    """What every session of one ``smtp`` listener shares."""

    def __init__(self, options: SmtpOptions, services: Services, log: FilteringBoundLogger) -> None:
        self.options = options
        self.services = services
        self.log = log
        self.store = MailStore(services.data_dir / "mail")
        self.rate = RateWindow(options.rate_limit)
        self.sessions: Sessions[DrainingSession] = Sessions()
        #: For /metrics: messages accepted (and their bytes), refusals by reason.
        self.accepted = 0
        self.accepted_bytes = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self.on_message: Callable[[AcceptedMessage], Any] | None = None
        if options.on_message is not None:
            self.on_message = import_from_string(options.on_message)  # type: ignore[assignment]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._boxes: dict[tuple[str, str], Maildir] = {}

    def samples(self) -> list[Sample]:
        out = [
            Sample(
                "aionet_smtp_messages_accepted",
                "counter",
                "Messages acknowledged with 250 (safe on disk).",
                (),
                self.accepted,
            ),
            Sample(
                "aionet_smtp_accepted_bytes",
                "counter",
                "Bytes of the messages acknowledged.",
                (),
                self.accepted_bytes,
            ),
        ]
        out += [
            Sample(
                "aionet_smtp_rejected",
                "counter",
                "Commands refused by policy, by reason.",
                (("reason", reason),),
                n,
            )
            for reason, n in sorted(self.rejected.items())
        ]
        return out

    async def start(self) -> None:
        """Remove what a crash left in the store's ``tmp/``; warn when postmaster has no user."""
        removed = await self.store.run(self.store.cleanup_tmp)
        self.log.info("smtp_store_ready", root=str(self.store.root), stale_tmp_removed=removed)
        users = self.services.users
        postmaster = self.options.postmaster
        if users is None or users.get(postmaster) is None:
            self.log.warning(
                "smtp_postmaster_without_user",
                mailbox=postmaster,
                hint="mail to postmaster@ is kept in that Maildir; add the user, or set "
                "options.postmaster to a user who reads it",
            )

    def mailbox(self, domain: str, name: str) -> Maildir:
        """The Maildir of a local user (cached: names come from the user store, so few)."""
        key = (domain, name)
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = self.store.mailbox(domain, name)
        return box

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.store.close()

    def notify(self, message: AcceptedMessage) -> None:
        """Run ``on_message`` for a message already safe on disk; failures are only logged."""
        hook = self.on_message
        assert hook is not None
        try:
            result = hook(message)
        except Exception as exc:
            self.log.error("smtp_on_message_failed", error=repr(exc), exc_info=exc)
            return
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        with contextlib.suppress(asyncio.CancelledError):
            exc = task.exception()
            if exc is not None:
                self.log.error("smtp_on_message_failed", error=repr(exc), exc_info=exc)
