"""The IMAP store: a Maildir's index (UIDs, modseqs, flags, keywords) and a user's folders.

Public names for the IMAP engine (``aionet/imap``); everything blocks, so the engine runs it on
``MailStore.run``'s thread pool. The pieces live in private modules: ``_records`` (the files
on disk), ``_flags`` (flags ↔ Maildir letters), ``_core`` (the cached, shared state),
``_mailbox`` (``MailboxIndex``), ``_names`` and ``_account`` (the folder tree), ``_errors``.
"""

from __future__ import annotations

from ._account import Account as Account
from ._account import MailboxEntry as MailboxEntry
from ._core import IndexedMessage as IndexedMessage
from ._core import Snapshot as Snapshot
from ._core import StoreResult as StoreResult
from ._errors import KeywordLimit as KeywordLimit
from ._errors import MailboxExists as MailboxExists
from ._errors import MailboxHasChildren as MailboxHasChildren
from ._errors import MailboxNameError as MailboxNameError
from ._errors import NoSuchMailbox as NoSuchMailbox
from ._errors import StoreError as StoreError
from ._errors import UnsupportedSpecialUse as UnsupportedSpecialUse
from ._flags import SYSTEM_FLAGS as SYSTEM_FLAGS
from ._mailbox import MailboxIndex as MailboxIndex
from ._names import canonical as canonical

__all__ = [
    "SYSTEM_FLAGS",
    "Account",
    "IndexedMessage",
    "KeywordLimit",
    "MailboxEntry",
    "MailboxExists",
    "MailboxHasChildren",
    "MailboxIndex",
    "MailboxNameError",
    "NoSuchMailbox",
    "Snapshot",
    "StoreError",
    "StoreResult",
    "UnsupportedSpecialUse",
    "canonical",
]
