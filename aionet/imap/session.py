"""One IMAP connection: the read loop, dispatch through the command table, and catching up.

The loop feeds bytes to the codec's ``CommandReader`` and acts on what it hands out: a
continuation request for a synchronizing literal, a malformed command (``BAD``), or a whole
command, which ``parse_command`` turns into a typed command and ``COMMANDS`` (in
``aionet.imap.commands``) maps to its handler and the states it is allowed in. A handler
returns the tagged result (``Result``) or raises ``Refused``; before the tagged line, a session
with a selected mailbox catches up with changes others made (untagged EXPUNGE/EXISTS/FETCH,
``Selected.catch_up``). Every byte of protocol text comes from the codec or from here.

Rules, as in the other line services:

* unknown or malformed commands get ``BAD`` and count; ``max_bad_commands`` of them end the
  session with ``* BYE``; failed logins count separately (``max_auth_failures``);
* STARTTLS discards whatever was pipelined after it (``core.starttls``, through
  ``Connection.start_tls`` with the reader's buffer);
* a drain tells a session waiting for a command (or in IDLE) ``* BYE`` and closes it; a session
  inside a command finishes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.output import Corked
from ..core.starttls import clear_text_login_allowed
from ..proto.imap import (
    BadCommand,
    CommandReader,
    ImapSyntaxError,
    NeedContinuation,
    RawCommand,
    UnknownCharset,
    parse_command,
    tagged,
)
from ..proto.lines import TOO_LONG
from ..storage.index import (
    KeywordLimit,
    MailboxExists,
    MailboxNameError,
    NoSuchMailbox,
)

if TYPE_CHECKING:
    from ..core.handler import Connection
    from ..storage.index import Account
    from .selected import Selected
    from .service import ImapService

__all__ = ["Refused", "Result", "Session", "State"]

READ_SIZE = 64 * 1024
#: Untagged response bytes gathered before they are written out (FETCH of many messages).
FLUSH_AT = 256 * 1024


class State:
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class Result:
    """A command's tagged answer: ``tag OK [code] text``."""

    text: str = "completed"
    code: str | None = None
    status: str = "OK"
    #: The command wrote its own tagged line (STARTTLS answers before its handshake).
    answered: bool = False
    #: ``* BYE`` with this text after the tagged line, and the session ends.
    bye: str | None = None


class Refused(Exception):
    """``tag NO [code] text`` (or ``BAD``) from deep inside a command."""

    def __init__(
        self, text: str, code: str | None = None, status: str = "NO", *, bye: str | None = None
    ) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status
        self.bye = bye


class Closed(Exception):
    """The session ends (LOGOUT, BYE, the peer went away)."""


class Session:
    """One IMAP connection (see the module docstring)."""

    def __init__(self, service: ImapService, conn: Connection) -> None:
        self.service = service
        self.conn = conn
        opts = service.options
        self.reader = CommandReader(max_line=opts.max_line, max_literal=opts.max_literal)
        self.state = State.NOT_AUTHENTICATED
        self.tls = conn.tls is not None
        self.user: str | None = None
        self.inbox_key = ""  # the user's INBOX directory: with a name, what the hub knows
        self.account: Account | None = None
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self.bad = 0
        self.auth_failures = 0
        #: Waiting for the next command (or in IDLE): a drain may close us at once.
        self.waiting = False
        self.idling = False
        self.saved: list[int] = []  # SEARCHRES ``$``: UIDs of the last SEARCH ... SAVE
        self.out = Corked(FLUSH_AT)

    # -- capabilities ----------------------------------------------------------------------

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    def login_allowed(self) -> bool:
        return self.tls or clear_text_login_allowed(
            self.service.options.auth_without_tls, self.conn.peer
        )

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "IMAP4rev2"]
        if self.state == State.NOT_AUTHENTICATED:
            if self.service.tls_context is not None and not self.tls:
                caps.append("STARTTLS")
            if self.login_allowed():
                caps += ["AUTH=PLAIN", "SASL-IR"]
            else:
                caps.append("LOGINDISABLED")
        caps += [
            "LITERAL+",
            "ENABLE",
            "ID",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "UIDPLUS",
            "MOVE",
            "CONDSTORE",
            "ESEARCH",
            "SEARCHRES",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "STATUS=SIZE",
            "BINARY",
            f"APPENDLIMIT={self.service.options.max_literal}",
        ]
        return " ".join(caps)

    # -- output ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue untagged response bytes (written at the next ``flush``)."""
        self.out.add(data)

    async def flush(self) -> None:
        await self.out.flush(self.conn.writer)

    async def maybe_flush(self) -> None:
        """Write out once enough has gathered (a FETCH of many messages streams)."""
        if self.out.full:
            await self.flush()

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        service = self.service
        service.sessions_total += 1
        self.send(b"* OK [CAPABILITY %s] %s\r\n" % (
            self.capabilities().encode(), service.options.greeting.encode()
        ))  # fmt: skip
        try:
            await self.flush()
            await self._serve()
        except Closed:
            pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.unselect()

    async def _serve(self) -> None:
        reader = self.reader
        while True:
            event = reader.next_event()
            if event is None:
                if self.service.sessions.draining:
                    await self.bye("Server shutting down")
                await self.read_more()
                continue
            if isinstance(event, NeedContinuation):
                self.send(b"+ Ready for literal data\r\n")
                await self.flush()
            elif isinstance(event, BadCommand):
                await self.bad_command(event.tag, event.text)
            elif isinstance(event, RawCommand):
                await self.command(event)

    async def read_more(self) -> None:
        self.waiting = True
        try:
            data = await self.conn.reader.read(READ_SIZE)
        finally:
            self.waiting = False
        if not data:
            raise Closed
        self.reader.feed(data)

    async def read_line(self) -> bytes:
        """A raw line (an AUTHENTICATE response, IDLE's DONE)."""
        while True:
            line = self.reader.next_line()
            if line is TOO_LONG:
                raise Refused("line too long", status="BAD")
            if line is not None:
                return line
            await self.read_more()

    async def command(self, raw: RawCommand) -> None:
        from .commands import COMMANDS  # the table imports the command modules, which type us

        tag = raw.tag
        try:
            cmd = parse_command(raw, utf8=self.rev2)
        except UnknownCharset:
            self.send(tagged(tag, "NO", "Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)"))
            await self.flush()
            return
        except ImapSyntaxError as exc:
            await self.bad_command(tag, str(exc), name=raw.name)
            return
        spec = COMMANDS[type(cmd)]
        if self.state not in spec.states:
            await self.bad_command(tag, f"{raw.name} not allowed now", name=raw.name)
            return
        try:
            result = await spec.run(self, cmd)
        except Refused as exc:
            result = Result(exc.text, exc.code, exc.status, bye=exc.bye)
        except MailboxNameError as exc:
            result = Result(str(exc), "CANNOT", "NO")
        except NoSuchMailbox:
            result = Result("Mailbox doesn't exist", "NONEXISTENT", "NO")
        except MailboxExists:
            result = Result("Mailbox already exists", "ALREADYEXISTS", "NO")
        except KeywordLimit as exc:
            result = Result(str(exc) or "too many keywords", "LIMIT", "NO")
        except OSError as exc:
            self.conn.log.error("imap_store_error", command=raw.name, error=repr(exc))
            result = Result("Internal error, try again later", "SERVERBUG", "NO")
        if result.status == "BAD":
            await self.bad_command(tag, result.text, name=raw.name)
            return
        if self.selected is not None and spec.catch_up:
            await self.catch_up(expunge=spec.expunge_ok(cmd))
        self.service.commands[(raw.name, result.status.lower())] += 1
        if not result.answered:
            self.send(tagged(tag, result.status, result.text, result.code))
        if result.bye is not None:
            await self.bye(result.bye)
        await self.flush()
        if self.state == State.LOGOUT:
            raise Closed

    async def bad_command(self, tag: str | None, text: str, *, name: str = "?") -> None:
        self.bad += 1
        self.service.commands[(name, "bad")] += 1
        if tag is None:
            self.send(b"* BAD %s\r\n" % text.encode("utf-8", "replace"))
        else:
            self.send(tagged(tag, "BAD", text))
        if self.bad >= self.service.options.max_bad_commands:
            await self.bye("Too many invalid commands")
        await self.flush()

    async def bye(self, text: str) -> None:
        self.send(b"* BYE %s\r\n" % text.encode())
        await self.flush()
        raise Closed

    # -- the selected mailbox --------------------------------------------------------------

    async def catch_up(self, *, expunge: bool) -> None:
        """Tell the client what changed in its selected mailbox since it last heard."""
        sel = self.selected
        if sel is None or not sel.needs_sync():
            return
        sync = functools.partial(sel.index.sync, claim_recent=not sel.readonly)
        snapshot = await self.service.store.run(sync)
        for line in sel.catch_up(
            snapshot, expunge=expunge, rev1=not self.rev2, condstore=self.condstore
        ):
            self.send(line)

    def unselect(self) -> None:
        sel = self.selected
        if sel is not None:
            self.service.hub.unwatch(sel.key, sel.event)
            self.selected = None
            self.state = State.AUTHENTICATED

    def mailbox_key(self, name: str) -> tuple[str, str]:
        """What the hub knows mailbox ``name`` of this user by."""
        return (self.inbox_key, name)

    def changed(self, name: str) -> None:
        """Our own change to mailbox ``name``: wake the other sessions that have it selected."""
        sel = self.selected
        self.service.hub.changed(self.mailbox_key(name), sel.event if sel is not None else None)

    # -- drain -----------------------------------------------------------------------------

    def drain_now(self) -> None:
        """Drain: a session waiting for its next command (or idling) says BYE and closes."""
        if not (self.waiting or self.idling):
            return
        writer = self.conn.writer
        with contextlib.suppress(Exception):
            writer.write(b"* BYE Server shutting down\r\n")
            writer.close()

    # -- IDLE ------------------------------------------------------------------------------

    async def idle(self) -> None:
        """RFC 2177: report changes as they happen until the client sends DONE."""
        opts = self.service.options
        self.send(b"+ idling\r\n")
        await self.flush()
        deadline = time.monotonic() + opts.idle_timeout
        read: asyncio.Future[bytes] | None = None
        woken: asyncio.Future[Any] | None = None
        self.idling = True
        hub, watched = self.service.hub, self.selected
        if watched is not None:  # the hub looks for other processes' changes, and touches
            hub.idle(self)
        try:
            while True:
                line = self.reader.next_line()
                if line is TOO_LONG:
                    raise Refused("line too long", status="BAD")
                if line is not None:
                    if line.strip().upper() != b"DONE":
                        raise Refused("expected DONE", status="BAD")
                    return
                if self.service.sessions.draining:
                    await self.bye("Server shutting down")
                if read is None:
                    read = asyncio.ensure_future(self.conn.reader.read(READ_SIZE))
                waits: set[asyncio.Future[Any]] = {read}
                sel = self.selected
                if sel is not None:
                    if woken is None:
                        woken = asyncio.ensure_future(sel.event.wait())
                    waits.add(woken)
                # Selected: woken by the hub (a change) or the client; else by our own poll,
                # only to count as activity. Either way at the autologout at the latest.
                left = max(0.0, deadline - time.monotonic())
                timeout = left if watched is not None else min(left, opts.idle_poll)
                await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
                if read.done():
                    data = read.result()
                    read = None
                    if not data:
                        raise Closed
                    self.reader.feed(data)
                if woken is not None and woken.done():
                    woken = None
                if sel is not None:
                    await self.catch_up(expunge=True)
                    await self.flush()
                self.conn.touch()  # IDLE is activity: our own timer applies, not the idle sweep
                if time.monotonic() >= deadline:  # the autologout: the listener's idle goodbye
                    self.conn.close_idle()
                    raise Closed
        finally:
            self.idling = False
            if watched is not None:
                hub.unidle(self, watched.key)
            for fut in (read, woken):
                if fut is not None and not fut.done():
                    fut.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await fut

    # -- helpers for commands --------------------------------------------------------------

    def need_account(self) -> Account:
        if self.account is None:  # pragma: no cover - the table's states guarantee it
            raise Refused("not logged in", status="BAD")
        return self.account

    def need_selected(self) -> Selected:
        if self.selected is None:  # pragma: no cover - the table's states guarantee it
            raise Refused("no mailbox selected", status="BAD")
        return self.selected
