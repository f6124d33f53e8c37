"""``AionetSMTP``: aiosmtpd's ``SMTP`` engine where aionet must differ.

STARTTLS goes through the core's one upgrade path, ``core.starttls.upgrade`` (plaintext
pipelined after the verb is discarded; the connection manager keeps tracking the upgraded
transport), implicit TLS counts as TLS, AUTH PLAIN/LOGIN are decoded by ``proto.sasl`` and
checked against the shared portal asynchronously, every reply carries an enhanced status code,
a draining server answers ``421`` at the next command, and a session aiosmtpd's ``timeout``
closes hears the idle goodbye first (``timeout_reply``, as the idle sweep says it). Every touch
of aiosmtpd's private names goes through ``EngineBase`` (``aionet.smtp._aiosmtpd``).
"""

from __future__ import annotations

import asyncio
import re
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, cast

from aiosmtpd.smtp import MISSING, AuthResult, Envelope

from ..auth.portal import Credentials
from ..core.sessions import say_goodbye
from ..core.starttls import clear_text_login_allowed, upgrade
from ..proto.sasl import SaslError, decode_plain, decode_response, parse_plain
from ._aiosmtpd import EngineBase
from .service import TargetEnvelope, printable

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from .service import SmtpService

__all__ = ["CLOSING", "AionetSMTP", "timeout_reply"]

CLOSING = b"421 4.3.2 Service shutting down, closing transmission channel\r\n"


def timeout_reply(hostname: str) -> bytes:
    """The idle goodbye: what a session closed for inactivity hears (Postfix's words; RFC 3463
    4.4.2, bad connection), from the idle sweep (``SmtpHandler.idle_goodbye``) and from
    aiosmtpd's own ``timeout`` (``AionetSMTP.timed_out``) alike."""
    return f"421 4.4.2 {hostname} Error: timeout exceeded\r\n".encode("ascii", "replace")


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
#: RFC 2920 3.1: the replies to RSET, MAIL and RCPT are held while the client's next command
#: is already here, and go out with the reply to the first command that is not one of them
#: (the DATA's 354, say): one write, one segment for a pipelined transaction's envelope, as
#: Postfix does. Any other reply, and a drain's 421, take what is held out first.
_GROUPED = frozenset({"smtp_RSET", "smtp_MAIL", "smtp_RCPT"})
#: Held replies go out at this size whatever follows: a client streaming RSETs without
#: reading must meet the transport's back-pressure, not grow a buffer here.
HOLD_LIMIT = 4096
_HAS_ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


_date_cache: tuple[int, str] = (0, "")


def _now() -> str:
    """The RFC 5322 date of this second (formatted once per second)."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, localtime=True))
    return _date_cache[1]


class AionetSMTP(EngineBase):
    """aiosmtpd's ``SMTP`` with aionet's STARTTLS, portal AUTH, status codes and drain."""

    def __init__(
        self, service: SmtpService, hooks: object, tls_context: ssl.SSLContext | None
    ) -> None:
        """``hooks``: aiosmtpd's "handler", whose ``handle_*`` it awaits (``SmtpHooks``)."""
        opts = service.options
        super().__init__(
            hooks,
            data_size_limit=opts.max_message_size,
            enable_SMTPUTF8=opts.smtputf8,
            hostname=opts.hostname,
            ident="aionet ESMTP",
            tls_context=tls_context,
            timeout=opts.timeout,
            auth_require_tls=opts.auth_without_tls is not True,
            loop=asyncio.get_running_loop(),
        )
        self._aionet = service
        self._busy = False
        #: Replies held while the client pipelines (RFC 2920), and whether the command being
        #: answered is one whose reply may be held.
        self._held = bytearray()
        self._grouped = False
        #: The next final reply goes out without an enhanced status code (EHLO/HELO's).
        self.plain_next_reply = False
        self.log = service.log
        self.wrap_commands(self._command)

    def new_envelope(self) -> TargetEnvelope:
        return TargetEnvelope()

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        rec = getattr(self, "_aionet_rec", None)
        if rec is not None:
            self.log = rec.bind_log()
        self._aionet.sessions.add(self)
        self.set_auth_require_tls(
            not clear_text_login_allowed(self._aionet.options.auth_without_tls, self.peer)
        )
        if transport.get_extra_info("ssl_object") is not None:  # implicit TLS (listener tls:)
            self.mark_implicit_tls(transport)
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

    def timed_out(self) -> None:
        """aiosmtpd's ``timeout`` ran out (it runs from the greeting and from each valid
        command). While the client's bytes still arrive (a DATA longer than ``timeout``, on a
        slow link) the session is not idle: the timer runs again from the last byte, as
        Postfix's ``smtpd_timeout`` bounds each read, not the whole DATA. Otherwise close as
        the idle sweep does, after the same goodbye, ``timeout_reply``
        (``ConnectionRecord.close_idle``: not during the STARTTLS handshake, not after a
        drain's 421, not behind unread output; counted in ``idle_closed``)."""
        rec = getattr(self, "_aionet_rec", None)
        if rec is not None:
            now = rec.clock.tick()
            # ``last_active`` is stamped from the sweep's coarse clock: up to one sweep
            # interval early. Silence is counted from the latest the last byte may have come.
            quiet = now - rec.last_active - rec.slot.manager.sweep_interval()
            if quiet < self.timeout_seconds:  # bytes still arrive (a long DATA): not idle
                self.restart_timeout(self.timeout_seconds - max(quiet, 0.0))
                return
            rec.close_idle(now)
        elif self.transport is not None:  # not under a connection manager (in-memory tests)
            transport = cast("asyncio.WriteTransport", self.transport)
            say_goodbye(transport, timeout_reply(self.hostname))
            transport.close()

    @property
    def is_tls(self) -> bool:
        return self.tls_transport is not None

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
        line += b"\r\n"
        if self._held or self._grouped:
            held = self._held
            held += line
            if self._grouped and len(held) < HOLD_LIMIT and self.command_waiting():
                return  # RFC 2920 3.1: goes out with the reply to the next command
            line, self._held = bytes(held), bytearray()
        await self.write_reply(line)

    def write_now(self, data: bytes) -> None:
        """Write ``data`` (after any held replies) without waiting."""
        if self._held:
            data, self._held = bytes(self._held + data), bytearray()
        super().write_now(data)

    async def _command(self, method: Callable[[str | None], Any], arg: str | None) -> None:
        if self._aionet.sessions.draining:
            self._close_for_drain()
            return
        self._busy = True
        self._grouped = method.__name__ in _GROUPED
        try:
            await method(arg)
        finally:
            self._busy = self._grouped = False

    def _close_for_drain(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.write_now(CLOSING)
            self.transport.close()

    def drain_now(self) -> None:
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
        helo = printable(self.session.host_name or "unknown")
        ip = self.peer_ip or "local"
        rcpt = (
            f"\r\n\tfor <{printable(envelope.rcpt_tos[0])}>" if len(envelope.rcpt_tos) == 1 else ""
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
        if self.tls_transport is not None:
            await self.push("503 5.5.1 Already under TLS")
            return
        await self.push("220 2.0.0 Ready to start TLS")
        assert self.transport is not None
        try:
            new = await upgrade(
                self.transport,
                self,
                self.tls_context,
                buffers=self.plaintext_buffers(),
                timeout=10.0,
                log=self.log,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.log.info("smtp_starttls_failed", error=repr(exc))
            if self.transport is not None:
                self.transport.abort()  # type: ignore[attr-defined]
            return
        self.swap_transport(new)
        assert self.session is not None
        # RFC 3207 4.2: forget everything learned before the upgrade.
        self.session.ssl = {"ssl_object": new.get_extra_info("ssl_object")}
        self.session.host_name = None
        self.session.extended_smtp = False
        self.reset_transaction()

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
