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

from ._message import (
    MAX_MIME_DEPTH,
    MAX_PARTS,
    MessageInfo,
)
from ._reader import (
    MAX_LITERALS,
    BadCommand,
    CommandReader,
    NeedContinuation,
    RawCommand,
    ReaderEvent,
)
from ._response import (
    astring,
    continuation,
    format_date_time,
    literal,
    nstring,
    plist,
    quoted,
    tagged,
    untagged,
)
from ._syntax import (
    MAX_NUMBER,
    MAX_NUMBER64,
    ImapSyntaxError,
    Scanner,
    Section,
    SequenceSet,
    UnknownCharset,
    decode_mailbox,
    encode_mailbox,
    normalize_flag,
)

__all__ = [
    "MAX_LITERALS",
    "MAX_MIME_DEPTH",
    "MAX_NUMBER",
    "MAX_NUMBER64",
    "MAX_PARTS",
    "BadCommand",
    "CommandReader",
    "ImapSyntaxError",
    "MessageInfo",
    "NeedContinuation",
    "RawCommand",
    "ReaderEvent",
    "Scanner",
    "Section",
    "SequenceSet",
    "UnknownCharset",
    "astring",
    "continuation",
    "decode_mailbox",
    "encode_mailbox",
    "format_date_time",
    "literal",
    "normalize_flag",
    "nstring",
    "plist",
    "quoted",
    "tagged",
    "untagged",
]
