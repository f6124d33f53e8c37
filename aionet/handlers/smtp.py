"""``protocol: smtp`` — aiosmtpd's ``SMTP`` protocol under aionet's listener, TLS and auth.

Options (``listener.options``)::

    hostname: mail.example.test     # greeting and Received: name (default: the host name)
    domains: [localhost]            # mail for these domains is delivered locally
    starttls: default               # offer STARTTLS with this shared certificate
    auth_without_tls: false         # offer AUTH on a plain connection: true, or "loopback"
                                    # (only to 127.0.0.0/8 and ::1 clients, as Dovecot does)
    require_auth: false             # MAIL FROM only after AUTH
    require_tls: false              # MAIL FROM only over TLS (STARTTLS or implicit)
    max_message_size: 32MiB         # SIZE; larger messages get 552
    max_recipients: 100             # RCPT beyond this gets 452
    rate_limit: {messages: 0, per: 1m}   # per client IP; 0 = off; over it: 450
    catch_all: null                 # a user name that gets mail for unknown local users
    postmaster: postmaster          # the mailbox (a user name) of postmaster@ each local domain
    on_message: null                # "pkg.module:callable", called after the message is on disk
    timeout: 5m                     # idle time between commands

Local recipients: ``local@domain`` with ``domain`` in ``domains`` is the user named
``local@domain`` or ``local`` in the shared user store (``auth.users_file``); the message goes
to ``data_dir/mail/<domain>/<local>/``. Anything else is relayed only for a session
authenticated as a user with the ``relay`` role, into the outbound Maildir
``data_dir/mail/.outbound`` (sending it on is out of scope). ``250`` is answered only after the
message is fsynced into every recipient's Maildir (``aionet.storage.maildir``).

``postmaster@domain`` for every local domain, and the bare ``<postmaster>`` (RFC 5321 4.1.1.3,
4.5.1; the local part in any case), is always accepted, with or without such a user: it goes to
``data_dir/mail/<domain>/<postmaster>/``, where ``postmaster`` names the mailbox (default
``postmaster``, which a user of that name reads; name an operator's user, e.g. ``alice``, to
have it read there). The mail is never dropped and never goes to someone nobody named.

This module is the face: ``SmtpOptions`` and ``SmtpHandler``. The engine lives in
``aionet.smtp``: ``AionetSMTP`` (``aionet.smtp.engine``) subclasses aiosmtpd's ``SMTP`` only
where aionet must differ (STARTTLS through ``core.starttls.upgrade``, implicit TLS, AUTH
PLAIN/LOGIN through ``proto.sasl`` and the shared portal, enhanced status codes, 421 on drain);
policy and delivery are the aiosmtpd hooks of ``SmtpHooks`` (``aionet.smtp.hooks``); every
access to aiosmtpd's private names is in ``aionet.smtp._aiosmtpd``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_validator

from ..config.types import Duration, Size
from ..core.handler import HandlerOptions, InBandTlsOptions, ProtocolHandler
from ..core.metrics import Sample
from ..core.registry import import_from_string
from ..errors import RegistryError
from ..smtp.engine import AionetSMTP
from ..smtp.hooks import AcceptedMessage, RateWindow, SmtpHooks
from ..storage.maildir import Maildir, MailStore

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from ..core.handler import Services

__all__ = ["AcceptedMessage", "AionetSMTP", "SmtpHandler", "SmtpHooks", "SmtpOptions"]


def _importable(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        obj = import_from_string(value)
    except RegistryError as exc:
        raise ValueError(str(exc)) from None
    if not callable(obj):
        raise ValueError(f"{value!r} is not callable")
    return value


class RateLimit(HandlerOptions):
    """At most ``messages`` accepted messages per client IP per ``per`` (0 = no limit)."""

    messages: int = Field(default=0, ge=0)
    per: Duration = Field(default=60.0, gt=0)


class SmtpOptions(InBandTlsOptions):
    """``listener.options`` of an ``smtp`` listener (see the module docstring)."""

    hostname: str = Field(default_factory=socket.gethostname, min_length=1)
    domains: list[str] = Field(default_factory=lambda: ["localhost"], min_length=1)
    require_auth: bool = False
    require_tls: bool = False
    max_message_size: Size = Field(default=32 * 1024 * 1024, gt=0)
    max_recipients: int = Field(default=100, ge=1)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    catch_all: str | None = None
    postmaster: str = "postmaster"
    on_message: str | None = None
    timeout: Duration = Field(default=300.0, gt=0)
    smtputf8: bool = True

    @field_validator("domains")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [d.lower().rstrip(".") for d in value]

    @field_validator("catch_all", "postmaster")
    @classmethod
    def _mailbox_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (not value or "/" in value or value.startswith(".")):
            raise ValueError(f"{info.field_name} must be a user name (no '/', no leading '.')")
        return value

    @field_validator("on_message")
    @classmethod
    def _callable(cls, value: str | None) -> str | None:
        return _importable(value)


class SmtpHandler(ProtocolHandler):
    """``protocol: smtp``: ESMTP into the durable Maildir store."""

    Options = SmtpOptions
    options: SmtpOptions

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        opts = self.options
        self.store = MailStore(services.data_dir / "mail")
        self.hooks = SmtpHooks(self)
        self.rate = RateWindow(opts.rate_limit)
        self.sessions: set[AionetSMTP] = set()
        self.draining = False
        #: For /metrics: messages accepted (and their bytes), refusals by reason.
        self.accepted = 0
        self.accepted_bytes = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self.on_message: Callable[[AcceptedMessage], Any] | None = None
        if opts.on_message is not None:
            self.on_message = import_from_string(opts.on_message)  # type: ignore[assignment]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._boxes: dict[tuple[str, str], Maildir] = {}
        self._tls_context: ssl.SSLContext | None = None

    def metrics(self) -> list[Sample]:
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
        if self.options.starttls is not None:
            if self.services.tls is None:
                raise RuntimeError(
                    f"starttls: {self.options.starttls!r} needs tls.certificates in the config"
                )
            self._tls_context = self.services.tls.context(self.options.starttls)
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

    def protocol_factory(self) -> asyncio.Protocol:
        return AionetSMTP(self, self._tls_context)

    def mailbox(self, domain: str, name: str) -> Maildir:
        """The Maildir of a local user (cached: names come from the user store, so few)."""
        key = (domain, name)
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = self.store.mailbox(domain, name)
        return box

    def refusal(self) -> bytes:
        return b"421 4.3.2 Service not available, closing transmission channel\r\n"

    async def drain(self) -> None:
        self.draining = True
        for session in list(self.sessions):
            session.drain()

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
