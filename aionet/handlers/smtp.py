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

The wrapping: ``AionetSMTP`` subclasses aiosmtpd's ``SMTP`` only where aionet must differ —
STARTTLS goes through the core's one upgrade path, ``core.starttls.upgrade`` (plaintext
pipelined after the verb is discarded; the connection manager keeps tracking the upgraded
transport), implicit TLS counts as TLS, AUTH PLAIN/LOGIN check the
shared portal asynchronously, every reply carries an enhanced status code, and a draining
server answers ``421`` at the next command. Policy and delivery are the aiosmtpd hooks of
``SmtpHooks``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import re
import secrets
import socket
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session
from pydantic import Field, ValidationInfo, field_validator

from ..auth.portal import Credentials
from ..config.types import Duration, Size
from ..core.handler import HandlerOptions, InBandTlsOptions, ProtocolHandler
from ..core.metrics import Sample
from ..core.registry import import_from_string
from ..core.starttls import clear_text_login_allowed, upgrade
from ..errors import RegistryError
from ..proto.sasl import SaslError, decode_plain, decode_response, parse_plain
from ..storage.maildir import DeliveryError, Maildir, MailStore

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable
    from pathlib import Path

    from ..auth.users import User
    from ..core.handler import Services

__all__ = ["AcceptedMessage", "AionetSMTP", "SmtpHandler", "SmtpHooks", "SmtpOptions"]

#: aiosmtpd's per-connection and per-line log formats. Its ``%r >> %r`` logs every command line at
#: INFO — AUTH PLAIN's initial response (the password) included — so these records are dropped;
#: aionet's own events say what happened, and aiosmtpd's other records still reach the log.
_AIOSMTPD_CHATTER = frozenset(
    {
        "%r >> %r",
        "%r << %r",
        "%r << challenge: %r",
        "_handle_client readline: %r",
        "DATA readline: %s",
        "Peer: %r",
        "%r handling connection",
        "%r connection lost",
        "%r EOF received",
        "%r sender: %s",
        "%r recip: %s",
        "%r Connection lost during _handle_client()",
        "Connection lost during DATA",
        "%r connection timeout",
        "%r can't decode base64: %s",
    }
)


class _QuietAiosmtpd(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        return not (
            isinstance(msg, str) and (msg in _AIOSMTPD_CHATTER or msg.startswith("Available AUTH"))
        )


_QUIET = _QuietAiosmtpd()

CLOSING = b"421 4.3.2 Service shutting down, closing transmission channel\r\n"

#: Enhanced status codes (RFC 3463) for aiosmtpd's own replies, which carry none.
_ENHANCED = {
    "221": "2.0.0",
    "250": "2.0.0",
    "421": "4.3.0",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
_HAS_ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


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


#: Queue ids in Received: and the log: a random prefix per process, then a counter.
_ID_PREFIX = secrets.token_hex(4)
_ids = itertools.count(1)


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


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """What ``on_message`` receives: a message already fsynced into every Maildir."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    paths: tuple[Path, ...]  # the message file in each recipient's ``new/``
    size: int
    peer: Any
    user: str | None


class _Envelope(Envelope):
    """aiosmtpd's envelope plus the Maildirs the accepted recipients resolve to."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: dict[Path, Maildir] = {}


class _Session(Session):
    """aiosmtpd's session without the deprecation warning it logs on every AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _RateWindow:
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


_date_cache: tuple[int, str] = (0, "")


def _now() -> str:
    """The RFC 5322 date of this second (formatted once per second)."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, localtime=True))
    return _date_cache[1]


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    if not local:
        return domain, ""
    return local, domain.lower().rstrip(".")


def _printable(text: str, limit: int = 255) -> str:
    return "".join(c if c.isprintable() and c not in "()" else "?" for c in text[:limit])


class SmtpHooks:
    """The aiosmtpd hooks of one listener: policy checks and durable delivery."""

    def __init__(self, handler: SmtpHandler) -> None:
        logging.getLogger("mail.log").addFilter(_QUIET)  # idempotent: one filter object
        self.handler = handler
        self.options = handler.options
        self.domains = frozenset(handler.options.domains)

    async def handle_EHLO(
        self,
        server: AionetSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        no_auth = self.handler.services.portal is None
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
            self.handler.rejected["tls_required"] += 1
            return "530 5.7.0 Must issue a STARTTLS command first"
        if opts.require_auth and not session.authenticated:
            self.handler.rejected["auth_required"] += 1
            return "530 5.7.0 Authentication required"
        ip = server.peer_ip
        if ip is not None and not self.handler.rate.allowed(ip, time.monotonic()):
            server.log.warning("smtp_rate_limited", ip=ip)
            self.handler.rejected["rate_limited"] += 1
            return "450 4.7.1 Too many messages from your address, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: AionetSMTP,
        session: Session,
        envelope: _Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.options.max_recipients:
            self.handler.rejected["too_many_recipients"] += 1
            return "452 4.5.3 Too many recipients"
        local, domain = _split(address)
        if not domain:
            domain = self.options.domains[0]
        store = self.handler.store
        if domain in self.domains:
            if local.lower() == "postmaster":  # RFC 5321 4.5.1: always accepted
                name: str | None = self.options.postmaster
            else:
                name = self._local_user(local, domain)
            if name is None:
                server.log.info("smtp_recipient_unknown", rcpt=_printable(address))
                self.handler.rejected["user_unknown"] += 1
                return "550 5.1.1 Recipient address rejected: user unknown"
            box = self.handler.mailbox(domain, name)
        else:
            user: User | None = (
                getattr(session, "auth_data", None) if session.authenticated else None
            )
            if user is None or not user.has_role("relay"):
                server.log.warning("smtp_relay_denied", rcpt=_printable(address))
                self.handler.rejected["relay_denied"] += 1
                return "550 5.7.1 Relay access denied"
            box = store.outbound()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.targets.setdefault(box.path, box)
        return "250 2.1.5 OK"

    def _local_user(self, local: str, domain: str) -> str | None:
        users = self.handler.services.users
        if users is not None and "/" not in local and not local.startswith("."):
            for name in (f"{local}@{domain}", local, local.lower()):
                if users.get(name) is not None:
                    return name.split("@", 1)[0]
        return self.options.catch_all

    async def handle_DATA(self, server: AionetSMTP, session: Session, envelope: _Envelope) -> str:
        assert envelope.original_content is not None
        msg_id = f"{_ID_PREFIX}{next(_ids):x}"  # unique per process; nothing secret about it
        data = server.received_header(envelope, msg_id) + envelope.original_content
        handler = self.handler
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
            mail_from=_printable(envelope.mail_from or ""),
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


class AionetSMTP(SMTP):
    """aiosmtpd's ``SMTP`` with aionet's STARTTLS, portal AUTH, status codes and drain."""

    def __init__(self, handler: SmtpHandler, tls_context: ssl.SSLContext | None) -> None:
        opts = handler.options
        super().__init__(
            handler.hooks,
            data_size_limit=opts.max_message_size,
            enable_SMTPUTF8=opts.smtputf8,
            hostname=opts.hostname,
            ident="aionet ESMTP",
            tls_context=tls_context,
            timeout=opts.timeout,
            auth_require_tls=opts.auth_without_tls is not True,
            loop=asyncio.get_running_loop(),
        )
        self._aionet = handler
        self._busy = False
        #: The next final reply goes out without an enhanced status code (EHLO/HELO's).
        self.plain_next_reply = False
        self.log = handler.log
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = partial(self._command, method)

    def _create_envelope(self) -> _Envelope:
        return _Envelope()

    def _create_session(self) -> Session:
        return _Session(self.loop)

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        rec = getattr(self, "_aionet_rec", None)
        if rec is not None:
            self.log = rec.bind_log()
        self._aionet.sessions.add(self)
        self._auth_require_tls = not clear_text_login_allowed(
            self._aionet.options.auth_without_tls, self.peer
        )
        if transport.get_extra_info("ssl_object") is not None:  # implicit TLS (listener tls:)
            self._tls_protocol = transport  # type: ignore[assignment]
            assert self.session is not None
            self.session.ssl = {"ssl_object": transport.get_extra_info("ssl_object")}

    def eof_received(self) -> bool | None:
        """The client sent EOF: aiosmtpd cancels the session task; the transport closes too.

        aiosmtpd returns True (keep the half-open connection, as ``StreamReaderProtocol``
        does) and leaves closing to the session task's ``except CancelledError``. A task
        cancelled before its first step never runs that: on uvloop the EOF of a client that
        closed at once arrives before the task has written the greeting, and the socket then
        sat in CLOSE-WAIT until the idle sweep. Nothing is said after a client's EOF, so
        returning False lets the transport close itself (flushing what is pending).
        """
        super().eof_received()
        return False

    def connection_lost(self, error: Exception | None) -> None:
        self._aionet.sessions.discard(self)
        super().connection_lost(error)

    @property
    def is_tls(self) -> bool:
        return self._tls_protocol is not None

    @property
    def peer(self) -> Any:
        rec = getattr(self, "_aionet_rec", None)
        if rec is not None:
            return rec.peer
        return self.session.peer if self.session is not None else None

    @property
    def peer_ip(self) -> str | None:
        peer = self.peer
        return peer[0] if isinstance(peer, tuple) else None

    # -- replies and commands ------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        line = (
            status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
            if isinstance(status, str)
            else status
        )
        code = line[:3].decode("ascii", "replace")
        enhanced = _ENHANCED.get(code)
        if self.plain_next_reply and line[3:4] == b" ":
            self.plain_next_reply = False
        elif (
            enhanced and line[3:4] == b" " and not (line[5:6] == b"." and _HAS_ENHANCED.match(line))
        ):
            line = line[:4] + enhanced.encode() + b" " + line[4:]
        await super().push(line)

    async def _command(self, method: Callable[[str | None], Any], arg: str | None) -> None:
        if self._aionet.draining:
            self._close_for_drain()
            return
        self._busy = True
        try:
            await method(arg)
        finally:
            self._busy = False

    def _close_for_drain(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(CLOSING)
            self.transport.close()

    def drain(self) -> None:
        """Answer 421 and close now if idle between commands; else at the next command."""
        if not self._busy:
            self._close_for_drain()

    def received_header(self, envelope: Envelope, msg_id: str) -> bytes:
        """``Received:`` (RFC 5321 4.4) with RFC 3848's ESMTP/ESMTPS/ESMTPA/ESMTPSA."""
        assert self.session is not None
        with_ = "ESMTP" if self.session.extended_smtp else "SMTP"
        if self.is_tls:
            with_ += "S"
        if self.session.authenticated:
            with_ += "A"
        helo = _printable(self.session.host_name or "unknown")
        ip = self.peer_ip or "local"
        rcpt = (
            f"\r\n\tfor <{_printable(envelope.rcpt_tos[0])}>" if len(envelope.rcpt_tos) == 1 else ""
        )
        text = (
            f"Received: from {helo} ([{ip}])\r\n\tby {self.hostname} (aionet) with {with_} "
            f"id {msg_id}{rcpt};\r\n\t{_now()}\r\n"
        )
        return text.encode("utf-8", "replace")

    # -- STARTTLS through the core -------------------------------------------------------------

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            await self.push("501 5.5.4 Syntax: STARTTLS")
            return
        if not self.tls_context:
            await self.push("454 4.7.0 TLS not available")
            return
        if self._tls_protocol is not None:
            await self.push("503 5.5.1 Already under TLS")
            return
        await self.push("220 2.0.0 Ready to start TLS")
        assert self.transport is not None
        try:
            new = await upgrade(
                self.transport,
                self,
                self.tls_context,
                buffers=(self._reader,),
                timeout=10.0,
                log=self.log,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.log.info("smtp_starttls_failed", error=repr(exc))
            if self.transport is not None:
                self.transport.abort()  # type: ignore[attr-defined]
            return
        self.transport = new
        self._reader._transport = new  # type: ignore[attr-defined]
        self._writer._transport = new  # type: ignore[attr-defined]
        self._replace_writer(self._writer)  # type: ignore[attr-defined]
        self._tls_protocol = new  # type: ignore[assignment]
        assert self.session is not None
        # RFC 3207 4.2: forget everything learned before the upgrade.
        self.session.ssl = {"ssl_object": new.get_extra_info("ssl_object")}
        self.session.host_name = None
        self.session.extended_smtp = False
        self._set_rset_state()  # type: ignore[no-untyped-call]

    # -- AUTH through the portal ---------------------------------------------------------------

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        try:
            if len(args) == 1:  # aiosmtpd decodes the answer to its challenge itself
                blob = await self.challenge_auth("")
                if not isinstance(blob, bytes):  # MISSING: aborted or undecodable
                    return AuthResult(success=False, handled=True)
                plain = parse_plain(blob)
            else:
                plain = decode_plain(args[1])
        except SaslError as exc:
            reply = "Can't decode base64" if exc.reason == "base64" else "Can't split auth value"
            await self.push(f"501 5.5.2 {reply}")
            return AuthResult(success=False, handled=True)
        return await self._check(plain.authcid, plain.password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
        else:
            try:
                login = decode_response(args[1])
            except SaslError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        if login is MISSING:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(login, bytes)
        assert isinstance(password, bytes)
        return await self._check(login, password)

    async def _check(self, login: bytes | str, password: bytes | str) -> AuthResult:
        portal = self._aionet.services.portal
        try:  # LOGIN's answers come as bytes (aiosmtpd decodes them); PLAIN's as text
            name = login.decode() if isinstance(login, bytes) else login
            secret = password.decode() if isinstance(password, bytes) else password
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        if portal is None:
            return AuthResult(success=False, handled=False)
        user = await portal.authenticate(Credentials(name, secret), "smtp", self.peer_ip)
        if user is None:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)


class SmtpHandler(ProtocolHandler):
    """``protocol: smtp``: ESMTP into the durable Maildir store."""

    Options = SmtpOptions
    options: SmtpOptions

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        opts = self.options
        self.store = MailStore(services.data_dir / "mail")
        self.hooks = SmtpHooks(self)
        self.rate = _RateWindow(opts.rate_limit)
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
