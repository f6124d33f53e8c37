"""The errors of the IMAP store (re-exported by ``aionet.storage.index``).

``OSError`` is never wrapped: a failing disk reaches the engine as itself (``NO [SERVERBUG]`` or
``[UNAVAILABLE]``). These are the refusals the engine answers with ``NO`` and the text.
"""

from __future__ import annotations

__all__ = [
    "KeywordLimit",
    "MailboxExists",
    "MailboxHasChildren",
    "MailboxNameError",
    "NoSuchMailbox",
    "StoreError",
    "UnsupportedSpecialUse",
]


class StoreError(Exception):
    """Base of the store's refusals (never raised itself)."""


class KeywordLimit(StoreError, ValueError):
    """A mailbox already has 26 keywords, the most Maildir flag letters can carry."""


class MailboxNameError(StoreError, ValueError):
    """The mailbox name is not acceptable (the text says why)."""


class UnsupportedSpecialUse(MailboxNameError):
    """CREATE asked for a special use this store cannot give (``NO [USEATTR]``)."""


class MailboxExists(StoreError):
    """CREATE or RENAME onto a name that exists (``NO [ALREADYEXISTS]``)."""


class NoSuchMailbox(StoreError):
    """The mailbox does not exist, or no longer does (``NO [NONEXISTENT]``)."""


class MailboxHasChildren(StoreError):
    """DELETE of a name that exists only as the parent of others (``NO [HASCHILDREN]``)."""
