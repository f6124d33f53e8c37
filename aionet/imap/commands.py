"""The IMAP command table, and the commands that concern the session rather than mail.

``COMMANDS`` maps each parsed command type (``aionet.proto.imap``) to a ``Command``: the
coroutine that runs it, the states it is allowed in (anything else is ``BAD``, RFC 9051 §6),
whether the session catches up with others' changes before its tagged answer, and whether
EXPUNGE news may be told then (not while answering FETCH, STORE or SEARCH by sequence number,
RFC 9051 §7.5.1). Mailbox commands live in ``mailboxes``, message commands in ``messages``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..auth.portal import Credentials
from ..proto import imap as p
from ..proto.sasl import SaslError, decode_plain
from . import mailboxes, messages
from .session import Closed, Refused, Result, State

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .session import Session

__all__ = ["COMMANDS", "Command"]

ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
#: What ENABLE can turn on (RFC 5161): the rest of the argument is ignored, as the RFC asks.
ENABLEABLE = ("IMAP4REV2", "CONDSTORE")


def _always(cmd: Any) -> bool:
    return True


def _uid_only(cmd: Any) -> bool:
    return bool(cmd.uid)


@dataclass(frozen=True, slots=True)
class Command:
    run: Callable[[Session, Any], Awaitable[Result]]
    states: frozenset[str]
    catch_up: bool = True
    expunge_ok: Callable[[Any], bool] = _always


# -- any state ---------------------------------------------------------------------------------


async def capability(s: Session, cmd: p.Capability) -> Result:
    s.send(b"* CAPABILITY %s\r\n" % s.capabilities().encode())
    return Result("CAPABILITY completed")


async def noop(s: Session, cmd: p.Noop) -> Result:
    return Result("NOOP completed")


async def logout(s: Session, cmd: p.Logout) -> Result:
    s.send(b"* BYE Logging out\r\n")
    s.state = State.LOGOUT
    return Result("LOGOUT completed")


async def id_(s: Session, cmd: p.Id) -> Result:
    s.send(b'* ID ("name" "aionet" "version" %s)\r\n' % p.quoted(__version__))
    return Result("ID completed")


# -- not authenticated ---------------------------------------------------------------------


async def starttls(s: Session, cmd: p.StartTls) -> Result:
    context = s.service.tls_context
    if context is None or s.tls:
        raise Refused("STARTTLS not available", status="BAD")
    s.send(p.tagged(cmd.tag, "OK", "Begin TLS negotiation now"))
    await s.flush()
    try:
        # Whatever was pipelined after STARTTLS is discarded (reader and codec buffers).
        await s.conn.start_tls(context, buffers=(s.reader,))
    except (OSError, TimeoutError) as exc:
        s.conn.log.info("imap_starttls_failed", error=repr(exc))
        raise Closed from None
    s.tls = True
    return Result(answered=True)  # the tagged OK went out before the handshake


async def login(s: Session, cmd: p.Login) -> Result:
    if not s.login_allowed():
        raise Refused("Plaintext authentication disallowed without TLS", "PRIVACYREQUIRED")
    return await _log_in(s, cmd.username, cmd.password)


async def authenticate(s: Session, cmd: p.Authenticate) -> Result:
    if cmd.mechanism != "PLAIN":
        raise Refused("Unsupported authentication mechanism", "CANNOT")
    if not s.login_allowed():
        raise Refused("Plaintext authentication disallowed without TLS", "PRIVACYREQUIRED")
    response = cmd.initial
    if response is None:
        s.send(b"+ \r\n")
        await s.flush()
        response = await s.read_line()
    try:
        plain = decode_plain(response)
    except SaslError as exc:
        if exc.reason == "aborted":
            raise Refused("Authentication aborted", status="BAD") from None
        if exc.reason == "authzid":
            raise Refused("Authorization identity not allowed", "AUTHORIZATIONFAILED") from None
        raise Refused("Malformed SASL PLAIN response", status="BAD") from None
    return await _log_in(s, plain.authcid, plain.password)


async def _log_in(s: Session, username: str, password: str) -> Result:
    service = s.service
    peer = s.conn.peer
    ip = peer[0] if isinstance(peer, tuple) else None
    user = None
    if service.portal is not None:
        user = await service.portal.authenticate(Credentials(username, password), "imap", ip)
    if user is None:
        service.logins["failed"] += 1
        s.auth_failures += 1
        bye = None
        if s.auth_failures >= service.options.max_auth_failures:
            bye = "Too many authentication failures"
        raise Refused("Authentication failed", "AUTHENTICATIONFAILED", bye=bye)
    account = service.account(user.name)
    if service.options.special_use:
        await service.store.run(account.ensure_special_use)
    else:
        await service.store.run(account.index("INBOX").status)
    s.user = user.name
    s.inbox_key = str(service.mailbox_of(user.name).path)
    s.account = account
    s.conn.user = user
    s.state = State.AUTHENTICATED
    service.logins["succeeded"] += 1
    s.conn.log.info("imap_login", user=user.name)
    return Result("Logged in", "CAPABILITY " + s.capabilities())


# -- authenticated -----------------------------------------------------------------------------


async def enable(s: Session, cmd: p.Enable) -> Result:
    turned = [c for c in cmd.capabilities if c in ENABLEABLE and c not in s.enabled]
    s.enabled.update(turned)
    if "IMAP4REV2" in turned:
        turned[turned.index("IMAP4REV2")] = "IMAP4rev2"
    s.send(b"* ENABLED%s\r\n" % b"".join(b" " + c.encode() for c in turned))
    return Result("ENABLE completed")


async def namespace(s: Session, cmd: p.Namespace) -> Result:
    s.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return Result("NAMESPACE completed")


async def idle(s: Session, cmd: p.Idle) -> Result:
    await s.idle()
    return Result("IDLE terminated")


COMMANDS: dict[type, Command] = {
    p.Capability: Command(capability, ANY),
    p.Noop: Command(noop, ANY),
    p.Logout: Command(logout, ANY, catch_up=False),
    p.Id: Command(id_, ANY),
    p.StartTls: Command(starttls, NOT_AUTH),
    p.Login: Command(login, NOT_AUTH),
    p.Authenticate: Command(authenticate, NOT_AUTH),
    p.Enable: Command(enable, AUTH),
    p.Namespace: Command(namespace, AUTH),
    p.Idle: Command(idle, AUTH),
    p.Select: Command(mailboxes.select, AUTH, catch_up=False),
    p.Create: Command(mailboxes.create, AUTH),
    p.Delete: Command(mailboxes.delete, AUTH),
    p.Rename: Command(mailboxes.rename, AUTH),
    p.Subscribe: Command(mailboxes.subscribe, AUTH),
    p.Unsubscribe: Command(mailboxes.unsubscribe, AUTH),
    p.List: Command(mailboxes.list_, AUTH),
    p.Lsub: Command(mailboxes.lsub, AUTH),
    p.Status: Command(mailboxes.status, AUTH),
    p.Append: Command(mailboxes.append, AUTH),
    p.Check: Command(messages.check, SELECTED),
    p.Close: Command(messages.close, SELECTED, catch_up=False),
    p.Unselect: Command(messages.unselect, SELECTED, catch_up=False),
    p.Expunge: Command(messages.expunge, SELECTED),
    p.Search: Command(messages.search, SELECTED, expunge_ok=_uid_only),
    p.Fetch: Command(messages.fetch, SELECTED, expunge_ok=_uid_only),
    p.Store: Command(messages.store, SELECTED, expunge_ok=_uid_only),
    p.Copy: Command(messages.copy, SELECTED),
    p.Move: Command(messages.move, SELECTED),
}
