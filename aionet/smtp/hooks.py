"""Policy and delivery: the aiosmtpd hooks of one ``smtp`` listener.

``SmtpHooks`` answers MAIL (TLS/AUTH requirements, the per-IP rate limit), RCPT (local users,
postmaster, catch-all, relay for the ``relay`` role, the recipient cap) and DATA (durable
delivery into every recipient's Maildir, then ``on_message``).
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import TYPE_CHECKING, Any

from ..storage.maildir import DeliveryError
from ._aiosmtpd import quiet_aiosmtpd_logging
from .service import AcceptedMessage, SmtpService, TargetEnvelope, printable

if TYPE_CHECKING:
    from aiosmtpd.smtp import Envelope, Session

    from ..auth.users import User
    from .engine import AionetSMTP

__all__ = ["SmtpHooks"]

#: Queue ids in Received: and the log: a random prefix per process, then a counter.
_ID_PREFIX = secrets.token_hex(4)
_ids = itertools.count(1)


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    if not local:
        return domain, ""
    return local, domain.lower().rstrip(".")


class SmtpHooks:
    """The aiosmtpd hooks of one listener: policy checks and durable delivery."""

    def __init__(self, service: SmtpService) -> None:
        quiet_aiosmtpd_logging()
        self.service = service
        self.options = service.options
        self.domains = frozenset(service.options.domains)

    async def handle_EHLO(
        self,
        server: AionetSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        no_auth = self.service.services.portal is None
        bare = ("250-AUTH", "250-AUTH ")
        out = [r for r in responses if not (r.startswith("250-AUTH") and (no_auth or r in bare))]
        server.plain_next_reply = True  # RFC 2034 4: no enhanced code in EHLO/HELO replies
        return [*out[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", out[-1]]

    async def handle_HELO(
        self, server: AionetSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        server.plain_next_reply = True
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self,
        server: AionetSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        opts = self.options
        if opts.require_tls and not server.is_tls:
            self.service.rejected["tls_required"] += 1
            return "530 5.7.0 Must issue a STARTTLS command first"
        if opts.require_auth and not session.authenticated:
            self.service.rejected["auth_required"] += 1
            return "530 5.7.0 Authentication required"
        ip = server.peer_ip
        if ip is not None and not self.service.rate.allowed(ip, time.monotonic()):
            server.log.warning("smtp_rate_limited", ip=ip)
            self.service.rejected["rate_limited"] += 1
            return "450 4.7.1 Too many messages from your address, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: AionetSMTP,
        session: Session,
        envelope: TargetEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.options.max_recipients:
            self.service.rejected["too_many_recipients"] += 1
            return "452 4.5.3 Too many recipients"
        local, domain = _split(address)
        if not domain:
            domain = self.options.domains[0]
        store = self.service.store
        if domain in self.domains:
            if local.lower() == "postmaster":  # RFC 5321 4.5.1: always accepted
                name: str | None = self.options.postmaster
            else:
                name = self._local_user(local, domain)
            if name is None:
                server.log.info("smtp_recipient_unknown", rcpt=printable(address))
                self.service.rejected["user_unknown"] += 1
                return "550 5.1.1 Recipient address rejected: user unknown"
            box = self.service.mailbox(domain, name)
        else:
            user: User | None = (
                getattr(session, "auth_data", None) if session.authenticated else None
            )
            if user is None or not user.has_role("relay"):
                server.log.warning("smtp_relay_denied", rcpt=printable(address))
                self.service.rejected["relay_denied"] += 1
                return "550 5.7.1 Relay access denied"
            box = store.outbound()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.targets.setdefault(box.path, box)
        return "250 2.1.5 OK"

    def _local_user(self, local: str, domain: str) -> str | None:
        users = self.service.services.users
        if users is not None and "/" not in local and not local.startswith("."):
            found = users.find(f"{local}@{domain}", local, local.lower())
            if found is not None:
                return found[0].split("@", 1)[0]
        return self.options.catch_all

    async def handle_DATA(
        self, server: AionetSMTP, session: Session, envelope: TargetEnvelope
    ) -> str:
        assert envelope.original_content is not None
        msg_id = f"{_ID_PREFIX}{next(_ids):x}"  # unique per process; nothing secret about it
        data = server.received_header(envelope, msg_id) + envelope.original_content
        handler = self.service
        try:
            names = await handler.store.deliver(list(envelope.targets.values()), data)
        except DeliveryError as exc:
            server.log.error("smtp_delivery_failed", id=msg_id, error=str(exc))
            handler.rejected["storage_full" if exc.storage_full else "delivery_failed"] += 1
            if exc.storage_full:
                return "452 4.3.1 Insufficient system storage"
            return "451 4.3.0 Local error in processing, try again later"
        handler.accepted += 1
        handler.accepted_bytes += len(data)
        if server.peer_ip is not None:
            handler.rate.record(server.peer_ip, time.monotonic())
        auth: Any = session.auth_data
        user = auth.name if session.authenticated and auth is not None else None
        server.log.info(
            "smtp_message_accepted",
            id=msg_id,
            mail_from=printable(envelope.mail_from or ""),
            rcpts=len(envelope.rcpt_tos),
            size=len(data),
            user=user,
        )
        if handler.on_message is not None:
            paths = tuple(
                b.path / "new" / n for b, n in zip(envelope.targets.values(), names, strict=True)
            )
            info = AcceptedMessage(
                envelope.mail_from or "",
                tuple(envelope.rcpt_tos),
                paths,
                len(data),
                server.peer,
                user,
            )
            handler.notify(info)
        return f"250 2.0.0 OK: queued as {msg_id}"
