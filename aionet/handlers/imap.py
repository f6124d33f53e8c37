"""``protocol: imap`` — IMAP4rev1 + IMAP4rev2 over the Maildir store SMTP delivers into.

Options (``listener.options``)::

    domain: localhost          # whose mailboxes plain logins read: data_dir/mail/<domain>/<user>
    starttls: default          # offer STARTTLS with this shared certificate
    auth_without_tls: false    # LOGIN / AUTHENTICATE PLAIN on a plain connection: true, or
                               # "loopback" (127.0.0.0/8 and ::1 only, as Dovecot does);
                               # LOGINDISABLED is advertised whenever it is refused
    max_line: 8192             # longest command line, CRLF included (literals not counted)
    max_literal: 32MiB         # largest literal (an APPENDed message): [TOOBIG] beyond, before
                               # a byte of it is stored; advertised as APPENDLIMIT
    max_bad_commands: 10       # BAD commands before * BYE
    max_auth_failures: 3       # failed logins before * BYE
    idle_poll: 1s              # IDLE: how often changes by other processes are looked for
    idle_timeout: 30m          # IDLE autologout (RFC 9051 §5.4: at least 30 minutes), with
                               # "* BYE Autologout; idle for too long", as limits.idle_timeout
    special_use: true          # create Sent, Drafts, Trash, Junk at a user's first login

A login ``alice`` reads ``mail/<domain>/alice`` — the same Maildir SMTP delivers
``alice@<domain>`` into and POP3 reads. Folders are Maildir++ sub-folders (``.Sent``), the
hierarchy delimiter is ``/``. IMAP takes no lock on the mailbox: sessions share it and see each
other's changes (untagged EXISTS/EXPUNGE/FETCH at their next command, at once in IDLE); a
POP3 session holds its own exclusive lock against other POP3 sessions only (its deletions are
applied by unique name at QUIT, so an IMAP session's flag changes meanwhile do not hide a
message from it). Flags live in the Maildir file names, so other Maildir tools read them.

The engine lives in ``aionet.imap`` (session, command table, mailbox and message commands);
the codec in ``aionet.proto.imap``; the store in ``aionet.storage.index``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.handler import HandlerOptions, StreamHandler
from ..core.starttls import upgrade_context
from ..imap.options import ImapOptions
from ..imap.service import ImapService
from ..imap.session import Session

if TYPE_CHECKING:
    from ..core.handler import Connection, Services
    from ..core.samples import Sample

__all__ = ["ImapHandler", "ImapOptions"]


class ImapHandler(StreamHandler):
    """``protocol: imap``: IMAP4rev1/IMAP4rev2 with IDLE, UIDPLUS, MOVE, CONDSTORE, SPECIAL-USE."""

    Options = ImapOptions
    options: ImapOptions

    def __init__(self, options: HandlerOptions, services: Services) -> None:
        super().__init__(options, services)
        self.service = ImapService(
            self.options, data_dir=services.data_dir, log=self.log, portal=services.portal
        )

    async def start(self) -> None:
        self.service.tls_context = upgrade_context(self.options.starttls, self.services.tls, "imap")

    async def handle(self, conn: Connection) -> None:
        with self.service.sessions.track(Session(self.service, conn)) as session:
            await session.run()

    def refusal(self) -> bytes:
        return b"* BYE [UNAVAILABLE] Service not available, try again later\r\n"

    def idle_goodbye(self) -> bytes:
        """The autologout (RFC 9051 §7.1.5, in its own example's words): said before the idle
        sweep closes a silent session, and at IDLE's own autologout (``options.idle_timeout``)."""
        return b"* BYE Autologout; idle for too long\r\n"

    def metrics(self) -> list[Sample]:
        return self.service.samples()

    async def drain(self) -> None:
        self.service.sessions.drain()

    async def undrain(self) -> None:
        self.service.sessions.undrain()

    async def stop(self) -> None:
        self.service.close()
