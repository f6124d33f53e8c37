"""Mailbox names ↔ Maildir++ directories, validated so that no name reaches outside the Maildir.

A folder ``A/B`` is the directory ``.A.B`` directly under the user's Maildir, its name stored
as **UTF-8** (Dovecot's ``maildir:...:UTF-8`` layout). There is no modified UTF-7 on disk: the
codec decodes it before a name gets here, and encodes it again for clients that need it.
"INBOX" in any (ASCII) case is the Maildir itself.

A name is refused (``MailboxNameError``, the text says why) when it is empty or has an empty
level (``//``, a leading or trailing ``/``); when a level is ``.`` or ``..`` or contains ``.``
(the Maildir++ separator); when it contains NUL, a control character, ``%`` or ``*``; when a
level is ``tmp``, ``new`` or ``cur``; when a level only looks different from those
rules (its NFKC form contains ``.`` or ``/``, as FULLWIDTH FULL STOP or ONE DOT LEADER do);
when ``INBOX`` has children; when the directory name would be over 255 bytes. Names are
NFC-normalised first, so one visible name is one mailbox whichever form the client sent.
Whatever passes is checked once more as a path: one component, a direct child of the Maildir.
"""

from __future__ import annotations

import os
import unicodedata

from ._errors import MailboxNameError

__all__ = ["DELIMITER", "INBOX", "canonical", "folder_dir", "name_of_dir"]

INBOX = "INBOX"
DELIMITER = "/"
NAME_MAX = 255
_RESERVED = frozenset({"tmp", "new", "cur"})
_WILDCARDS = frozenset("%*")


def _is_inbox(level: str) -> bool:
    return level.isascii() and level.upper() == INBOX


def _check_level(level: str, name: str) -> None:
    if not level:
        raise MailboxNameError(f"{name!r} has an empty level (leading, trailing or double '/')")
    if level in (".", ".."):
        raise MailboxNameError(f"{name!r}: a level may not be {level!r}")
    if "." in level:
        raise MailboxNameError(f"{name!r}: '.' is the folder separator on disk, not allowed")
    for char in level:
        if char in _WILDCARDS:
            raise MailboxNameError(f"{name!r}: '%' and '*' are LIST wildcards, not allowed")
        if unicodedata.category(char) in ("Cc", "Cs"):  # C0, DEL, C1; lone surrogates
            raise MailboxNameError(f"{name!r} contains a control character")
    if level in _RESERVED:  # ".new" would not collide, but Maildir tools may get it wrong
        raise MailboxNameError(f"{name!r}: {level!r} is a Maildir directory name")
    folded = unicodedata.normalize("NFKC", level)
    if "." in folded or "/" in folded:
        raise MailboxNameError(f"{name!r} has a character that stands for '.' or '/'")


def _levels(name: str) -> list[str] | None:
    """The name's levels (NFC), or None for INBOX. Raises ``MailboxNameError``."""
    if not isinstance(name, str):
        raise MailboxNameError(f"a mailbox name is text, not {type(name).__name__}")
    name = unicodedata.normalize("NFC", name)
    if _is_inbox(name):
        return None
    if not name:
        raise MailboxNameError("empty mailbox name")
    levels = name.split(DELIMITER)
    if _is_inbox(levels[0]) and len(levels) > 1:
        raise MailboxNameError(f"{name!r}: INBOX cannot have child mailboxes here")
    for level in levels:
        _check_level(level, name)
    return levels


def canonical(name: str) -> str:
    """The name as the store spells it: NFC, and ``INBOX`` for any case of it.

    Raises:
        MailboxNameError: the name is not acceptable (every rule, the length included).
    """
    levels = _levels(name)
    if levels is None:
        return INBOX
    _dirname(levels, name)
    return DELIMITER.join(levels)


def folder_dir(name: str) -> str | None:
    """The Maildir++ directory name of a folder (``A/B`` → ``.A.B``); None for INBOX.

    Raises:
        MailboxNameError: the name is not acceptable.
    """
    levels = _levels(name)
    return None if levels is None else _dirname(levels, name)


def _dirname(levels: list[str], name: str) -> str:
    dirname = "." + ".".join(levels)
    size = len(dirname.encode("utf-8"))
    if size > NAME_MAX:
        raise MailboxNameError(f"mailbox name too long ({size} bytes on disk, {NAME_MAX} at most)")
    # Belt and braces: whatever passed must be one plain component.
    if (
        os.sep in dirname
        or (os.altsep and os.altsep in dirname)
        or "\x00" in dirname
        or dirname in (".", "..")
        or os.path.basename(dirname) != dirname
        or os.path.normpath(dirname) != dirname
    ):
        raise MailboxNameError(f"{name!r} does not map to a single folder directory")
    return dirname


def name_of_dir(dirname: str) -> str | None:
    """The mailbox name of a Maildir++ directory (``.A.B`` → ``A/B``), None when the
    directory is not one this store would have made (so it is never listed)."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    name = DELIMITER.join(dirname[1:].split("."))
    try:
        if folder_dir(name) != dirname:
            return None
    except MailboxNameError:
        return None
    return name
