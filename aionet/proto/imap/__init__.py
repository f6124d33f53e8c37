"""IMAP4rev1 (RFC 3501) / IMAP4rev2 (RFC 9051) as a sans-IO codec: every byte of IMAP syntax
the server reads or writes is parsed or built here; the engine (``aionet.imap``) does no
protocol text parsing. No I/O, no asyncio, no file access.

Layout (private modules, public names re-exported here):

* ``_reader``   ``CommandReader``: bytes in, whole commands (literals included) out, bounded.
* ``_syntax``   tokens and grammar pieces, ``SequenceSet``, modified UTF-7 mailbox names.
* ``_commands`` one frozen dataclass per command, ``parse_command``.
* ``_search``   the SEARCH key AST and ``matches``.
* ``_response`` building responses: strings, lists, status lines, dates.
* ``_message``  ``MessageInfo``: ENVELOPE, BODYSTRUCTURE, sections, search texts.
"""

from __future__ import annotations

from ._reader import (
    MAX_LITERALS,
    BadCommand,
    CommandReader,
    NeedContinuation,
    RawCommand,
    ReaderEvent,
)
from ._syntax import (
    MAX_NUMBER,
    MAX_NUMBER64,
    ImapSyntaxError,
    Scanner,
    SequenceSet,
    UnknownCharset,
    decode_mailbox,
    encode_mailbox,
    normalize_flag,
)

__all__ = [
    "MAX_LITERALS",
    "MAX_NUMBER",
    "MAX_NUMBER64",
    "BadCommand",
    "CommandReader",
    "ImapSyntaxError",
    "NeedContinuation",
    "RawCommand",
    "ReaderEvent",
    "Scanner",
    "SequenceSet",
    "UnknownCharset",
    "decode_mailbox",
    "encode_mailbox",
    "normalize_flag",
]
