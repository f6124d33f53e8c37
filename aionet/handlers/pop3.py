"""``protocol: pop3`` — the thin asyncio driver of ``aionet.proto.pop3`` over the Maildir store.

Options (``listener.options``)::

    domain: localhost          # whose mailboxes plain logins read: data_dir/mail/<domain>/<user>
    starttls: default          # offer STLS with this shared certificate
    auth_without_tls: false    # USER/PASS and AUTH PLAIN on a plain connection: true, or
                               # "loopback" (only from 127.0.0.0/8 and ::1, as Dovecot does)
    max_line: 255              # longest command line (RFC 2449), CRLF included
    max_bad_commands: 10       # bad commands before the session is closed
    max_auth_failures: 3       # failed logins before the session is closed

A login ``alice`` (checked by the shared portal) reads ``mail/<domain>/alice``; a user named
``bob@example.test`` reads ``mail/example.test/bob``. The mailbox is locked for the session
(``-ERR [IN-USE]`` for a second one); DELE only marks, and the marks are applied atomically when
QUIT ends the TRANSACTION state. The driver does only I/O: every reply comes from the machine.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pydantic import Field

from ..auth.portal import Credentials
from ..core.handler import HandlerOptions, InBandTlsOptions, StreamHandler
from ..core.output import Corked
from ..core.sessions import Sessions
from ..core.starttls import clear_text_login_allowed, upgrade_context
from ..proto.pop3 import (
    NEED_DATA,
    PAUSED,
    Authenticate,
    Close,
    Commit,
    Pop3Machine,
    Retrieve,
    Send,
    StartTls,
)
from ..storage.index import MailboxIndex
from ..storage.maildir import MailboxBusy, MailStore

if TYPE_CHECKING:
    import ssl

    from ..auth.users import User
    from ..core.handler import Connection, Services
    from ..storage.maildir import Maildir, MaildirMessage

__all__ = ["Pop3Handler", "Pop3Options"]

READ_SIZE = 64 * 1024


class Pop3Options(InBandTlsOptions):
    """``listener.options`` of a ``pop3`` listener (see the module docstring)."""

    domain: str = "localhost"
    max_line: int = Field(default=255, ge=64, le=64 * 1024)
    max_bad_commands: int = Field(default=10, ge=1)
    max_auth_failures: int = Field(default=3, ge=1)
    greeting: str = "aionet POP3 server ready"


def _read(box: Maildir, message: MaildirMessage) -> bytes | None:
    """The message's bytes; None once it is gone. An IMAP session may have renamed the file
    (a flag change) since the listing: the index follows the rename by UID."""
    try:
        return message.path.read_bytes()
    except FileNotFoundError:
        return MailboxIndex(box).read(message.uid)


class _Session:
    """One connection: the machine, the locked mailbox, and the I/O the machine asks for."""

    def __init__(self, handler: Pop3Handler, conn: Connection) -> None:
        self.handler = handler
        self.conn = conn
        opts = handler.options
        self.machine = Pop3Machine(
            greeting=opts.greeting,
            tls=conn.tls is not None,
            stls=handler.tls_context is not None,
            plaintext_auth=clear_text_login_allowed(opts.auth_without_tls, conn.peer),
            max_line=opts.max_line,
            max_bad=opts.max_bad_commands,
            max_auth_failures=opts.max_auth_failures,
        )
        self.box: Maildir | None = None
        self.messages: list[MaildirMessage] = []
        self.locks = contextlib.ExitStack()
        self.reading = False
        #: Replies gathered while the machine works through the input it has (a pipelining
        #: client's batch, RETRs included), written before the session waits for anything else.
        self.out = Corked(READ_SIZE)

    async def run(self) -> None:
        machine, writer, out = self.machine, self.conn.writer, self.out
        try:
            while True:
                event = machine.next_event()
                if isinstance(event, Send):
                    if out.add(event.data):
                        await out.flush(writer)
                    continue
                if not isinstance(event, Retrieve):  # about to wait (client, TLS, login): write
                    await out.flush(writer)
                if event is NEED_DATA:
                    if self.handler.sessions.draining:
                        machine.shutdown()
                        continue
                    self.reading = True
                    try:
                        data = await self.conn.reader.read(READ_SIZE)
                    finally:
                        self.reading = False
                    if not data:
                        return  # dropped: nothing is committed
                    machine.receive_data(data)
                elif event is PAUSED:  # pragma: no cover - every pause is resumed below
                    raise RuntimeError("POP3 machine paused with no completion pending")
                elif isinstance(event, Close) or not await self._act(event):
                    return
        finally:
            self.locks.close()

    async def _act(self, event: Authenticate | StartTls | Retrieve | Commit) -> bool:
        """Do what ``event`` asks and resume the machine; False ends the session."""
        machine, store = self.machine, self.handler.store
        if isinstance(event, Authenticate):
            await self._login(event)
        elif isinstance(event, StartTls):
            assert self.handler.tls_context is not None
            try:
                await self.conn.start_tls(self.handler.tls_context, buffers=(machine,))
            except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
                self.conn.log.info("pop3_stls_failed", error=repr(exc))
                return False
            machine.tls_started()
        elif isinstance(event, Retrieve):
            assert self.box is not None
            content = await store.run(_read, self.box, self.messages[event.index])
            machine.message_content(content)
        else:
            ok = True
            if event.delete:
                assert self.box is not None
                try:
                    await store.run(self.box.expunge, event.delete)
                except OSError as exc:
                    ok = False
                    self.conn.log.error("pop3_expunge_failed", error=repr(exc))
                else:
                    self.conn.log.info("pop3_messages_deleted", count=len(event.delete))
            self.locks.close()  # unlocked before "+OK bye", so the client may log in again at once
            machine.committed(ok)
        return True

    async def _login(self, event: Authenticate) -> None:
        portal = self.handler.services.portal
        peer = self.conn.peer
        ip = peer[0] if isinstance(peer, tuple) else None
        user: User | None = None
        if portal is not None:
            user = await portal.authenticate(
                Credentials(event.username, event.password), "pop3", ip
            )
        if user is None:
            self.machine.auth_failed()
            return
        box = self.handler.mailbox_of(user.name)
        try:
            await self.handler.store.run(self._lock, box)
            messages = await self.handler.store.run(box.sync)
        except MailboxBusy:
            self.conn.log.info("pop3_mailbox_in_use", user=user.name)
            self.machine.mailbox_busy()
            return
        self.box, self.messages = box, messages
        self.conn.user = user
        self.conn.log.info("pop3_login", user=user.name, messages=len(self.messages))
        self.machine.auth_succeeded([(m.unique, m.size) for m in self.messages])

    def _lock(self, box: Maildir) -> None:
        self.locks.enter_context(box.exclusive())

    def drain_now(self) -> None:
        """Drain: a session waiting for its next command is told so and closed."""
        if not self.reading:
            return
        self.machine.shutdown()
        while True:
            event = self.machine.next_event()
            if isinstance(event, Send):
                self.conn.writer.write(event.data)
            elif not isinstance(event, Close):
                break
        self.conn.writer.close()


class Pop3Handler(StreamHandler):
    """``protocol: pop3``: RFC 1939 + CAPA + STLS + SASL PLAIN over the Maildir store."""

    Options = Pop3Options
    options: Pop3Options

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        self.store = MailStore(services.data_dir / "mail")
        self.tls_context: ssl.SSLContext | None = None
        self.sessions: Sessions[_Session] = Sessions()

    async def start(self) -> None:
        self.tls_context = upgrade_context(self.options.starttls, self.services.tls, "pop3")

    def mailbox_of(self, name: str) -> Maildir:
        local, _, domain = name.partition("@")
        return self.store.mailbox(domain or self.options.domain, local)

    async def handle(self, conn: Connection) -> None:
        with self.sessions.track(_Session(self, conn)) as session:
            await session.run()

    def refusal(self) -> bytes:
        return b"-ERR [SYS/TEMP] service not available, try again later\r\n"

    def idle_goodbye(self) -> bytes:
        """Said before the idle sweep closes a silent session (Dovecot's words)."""
        return b"-ERR Disconnected for inactivity.\r\n"

    async def drain(self) -> None:
        self.sessions.drain()

    async def undrain(self) -> None:
        self.sessions.undrain()

    async def stop(self) -> None:
        self.store.close()
