"""The options of an ``imap`` listener (``listener.options``; see ``aionet.handlers.imap``).

They live in the engine package because the engine reads them; the face re-exports them.
"""

from __future__ import annotations

from pydantic import Field

from ..config.types import Duration, Size
from ..core.handler import InBandTlsOptions

__all__ = ["ImapOptions"]


class ImapOptions(InBandTlsOptions):
    """``listener.options`` of an ``imap`` listener (see ``aionet.handlers.imap``)."""

    #: Whose mailboxes plain logins read: ``data_dir/mail/<domain>/<user>`` (as POP3).
    domain: str = "localhost"
    #: Longest command line (a literal's bytes do not count), CRLF included.
    max_line: int = Field(default=8192, ge=1024, le=1024 * 1024)
    #: Largest literal (an APPENDed message): bigger ones get ``[TOOBIG]`` before any byte of
    #: them is stored. Advertised as ``APPENDLIMIT`` (RFC 7889).
    max_literal: Size = Field(default=32 * 1024 * 1024, ge=1024)
    max_bad_commands: int = Field(default=10, ge=1)
    max_auth_failures: int = Field(default=3, ge=1)
    #: How often an IDLE session looks for changes other processes made (SMTP deliveries in
    #: another worker); changes in this process wake it at once.
    idle_poll: Duration = Field(default=1.0, gt=0, le=60)
    #: The IMAP autologout timer for IDLE (RFC 9051 §5.4: at least 30 minutes).
    idle_timeout: Duration = Field(default=1800.0, ge=60)
    #: Create Sent, Drafts, Trash and Junk (RFC 6154) at a user's first login.
    special_use: bool = True
    greeting: str = "aionet IMAP4rev2 server ready"
