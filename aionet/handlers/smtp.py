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
    timeout: 5m                     # aiosmtpd's timer from the last command; then, as after
                                    # limits.idle_timeout: "421 4.4.2 <hostname> Error:
                                    # timeout exceeded" and the close

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

This module is the face: ``SmtpHandler`` and the options it registers (``SmtpOptions``,
defined beside the engine that reads them, ``aionet.smtp.options``). The engine lives in
``aionet.smtp``: ``SmtpService`` (``aionet.smtp.service``) is the state every session of a
listener shares; ``AionetSMTP`` (``aionet.smtp.engine``) subclasses aiosmtpd's ``SMTP`` only
where aionet must differ (STARTTLS through ``core.starttls.upgrade``, implicit TLS, AUTH
PLAIN/LOGIN through ``proto.sasl`` and the shared portal, enhanced status codes, 421 on drain);
policy and delivery are the aiosmtpd hooks of ``SmtpHooks`` (``aionet.smtp.hooks``); every
access to aiosmtpd's private names is in ``aionet.smtp._aiosmtpd``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.handler import ProtocolHandler
from ..core.starttls import upgrade_context
from ..smtp.engine import AionetSMTP, timeout_reply
from ..smtp.hooks import SmtpHooks
from ..smtp.options import RateLimit, SmtpOptions
from ..smtp.service import AcceptedMessage, SmtpService

if TYPE_CHECKING:
    import asyncio
    import ssl

    from ..core.handler import HandlerOptions, Services
    from ..core.samples import Sample

__all__ = [
    "AcceptedMessage",
    "AionetSMTP",
    "RateLimit",
    "SmtpHandler",
    "SmtpHooks",
    "SmtpOptions",
    "SmtpService",
]


class SmtpHandler(ProtocolHandler):
    """``protocol: smtp``: ESMTP into the durable Maildir store."""

    Options = SmtpOptions
    options: SmtpOptions

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        self.smtp = SmtpService(self.options, services, self.log)
        self.hooks = SmtpHooks(self.smtp)
        self._tls_context: ssl.SSLContext | None = None

    def metrics(self) -> list[Sample]:
        return self.smtp.samples()

    async def start(self) -> None:
        self._tls_context = upgrade_context(self.options.starttls, self.services.tls, "smtp")
        await self.smtp.start()

    def protocol_factory(self) -> asyncio.Protocol:
        return AionetSMTP(self.smtp, self.hooks, self._tls_context)

    def refusal(self) -> bytes:
        return b"421 4.3.2 Service not available, closing transmission channel\r\n"

    def idle_goodbye(self) -> bytes:
        return timeout_reply(self.options.hostname)

    async def drain(self) -> None:
        self.smtp.sessions.drain()

    async def undrain(self) -> None:
        self.smtp.sessions.undrain()

    async def stop(self) -> None:
        await self.smtp.stop()
