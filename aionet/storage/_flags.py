"""IMAP flags ↔ Maildir ``:2,`` letters, and a mailbox's keyword letters (``aionet-keywords``).

System flags are the Maildir spec's capital letters; keywords take the lower-case letters
``a``..``z`` through the per-mailbox keywords file, as Dovecot does with ``dovecot-keywords``
(so at most 26 keywords per mailbox). Keywords are case-insensitive (RFC 3501 §2.3.2): the
first spelling seen is kept. Letters this store does not know (Maildir's ``P``, a letter
whose keyword is not in the file) are never reported as IMAP flags and never removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._errors import KeywordLimit
from ._records import KEYWORDS, MAX_KEYWORDS, parse_keywords, render_keywords
from .durable import replace_synced

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SYSTEM_FLAGS", "Keywords", "Mode", "apply_mode", "parse_flags", "sorted_letters"]

SYSTEM_FLAGS = {
    "\\Seen": "S",
    "\\Answered": "R",
    "\\Flagged": "F",
    "\\Deleted": "T",
    "\\Draft": "D",
}
_SYSTEM_BY_LOWER = {name.lower(): name for name in SYSTEM_FLAGS}
_SYSTEM_BY_LETTER = {letter: name for name, letter in SYSTEM_FLAGS.items()}
_SYSTEM_LETTERS = frozenset(SYSTEM_FLAGS.values())
_ATOM_SPECIALS = frozenset('(){%*"\\]')

Mode = Literal["set", "add", "remove"]


def sorted_letters(letters: Iterable[str]) -> str:
    """The Maildir spelling: each letter once, in ASCII order."""
    return "".join(sorted(set(letters)))


def parse_flags(flags: Iterable[str]) -> tuple[str, list[str]]:
    """IMAP flags → (system letters, keywords); ``\\Recent`` is dropped (never stored).

    Raises:
        ValueError: a flag that is neither a system flag nor a keyword atom.
    """
    letters: set[str] = set()
    keywords: dict[str, str] = {}
    for flag in flags:
        if flag.startswith("\\"):
            lowered = flag.lower()
            if lowered == "\\recent":
                continue
            name = _SYSTEM_BY_LOWER.get(lowered)
            if name is None:
                raise ValueError(f"unknown system flag {flag!r}")
            letters.add(SYSTEM_FLAGS[name])
        elif not flag or any(c <= " " or c > "~" or c in _ATOM_SPECIALS for c in flag):
            raise ValueError(f"bad keyword {flag!r}")
        else:
            keywords.setdefault(flag.lower(), flag)
    return sorted_letters(letters), list(keywords.values())


class Keywords:
    """The keyword letters of one mailbox. Not thread-safe: its owner's lock guards it."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, KEYWORDS)
        self.names: list[str] = []  # index → keyword ("" for a gap)
        self.version = 0  # bumped whenever the map changes
        self._by_lower: dict[str, int] = {}
        self._key: tuple[int, int, int] | None = None
        self._flag_cache: dict[str, frozenset[str]] = {}

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the map changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            key = None
        else:
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._key:
            return False
        self._key = key
        names: list[str] = []
        if key is not None:
            with open(self.path, "rb") as f:
                names = parse_keywords(f.read())
        if names == self.names:
            return False
        self._set(names)
        return True

    def _set(self, names: list[str]) -> None:
        self.names = names
        self._by_lower = {name.lower(): i for i, name in enumerate(names) if name}
        self._flag_cache = {}
        self.version += 1

    def letters(self, keywords: Iterable[str], *, allocate: bool) -> str:
        """The letters of ``keywords``; new ones get letters (persisted first) if ``allocate``.

        Unknown keywords are skipped when not allocating (removing a keyword nobody has).
        The caller holds the mailbox's index lock and has called ``refresh()``.

        Raises:
            KeywordLimit: a new keyword and all 26 letters taken (nothing was changed).
        """
        found: list[int] = []
        new: list[str] = []
        for keyword in keywords:
            index = self._by_lower.get(keyword.lower())
            if index is not None:
                found.append(index)
            elif allocate:
                new.append(keyword)
        if new:
            names = list(self.names)
            for keyword in new:
                try:
                    slot = names.index("")
                except ValueError:
                    slot = len(names)
                if slot >= MAX_KEYWORDS:
                    raise KeywordLimit(
                        f"this mailbox has {MAX_KEYWORDS} keywords already; {keyword!r} is one "
                        "too many"
                    )
                if slot == len(names):
                    names.append(keyword)
                else:
                    names[slot] = keyword
                found.append(slot)
            replace_synced(Path(self.path), render_keywords(names))
            self._set(names)
            st = os.stat(self.path)
            self._key = (st.st_ino, st.st_mtime_ns, st.st_size)
        return "".join(chr(ord("a") + i) for i in found)

    def known(self) -> frozenset[str]:
        """The letters this store manages: system letters and letters with a keyword."""
        return _SYSTEM_LETTERS | {chr(ord("a") + i) for i in self._by_lower.values()}

    def flags(self, letters: str) -> frozenset[str]:
        """The IMAP flags of a file's letters (cached per distinct letter string)."""
        cached = self._flag_cache.get(letters)
        if cached is not None:
            return cached
        out: set[str] = set()
        for letter in letters:
            if letter in _SYSTEM_BY_LETTER:
                out.add(_SYSTEM_BY_LETTER[letter])
            elif "a" <= letter <= "z":
                index = ord(letter) - ord("a")
                if index < len(self.names) and self.names[index]:
                    out.add(self.names[index])
        result = frozenset(out)
        self._flag_cache[letters] = result
        return result


def apply_mode(old: str, mode: Mode, wanted: str, known: frozenset[str]) -> str:
    """The letters after a STORE: ``wanted`` set, added or removed; unknown letters stay."""
    current = set(old)
    if mode == "set":
        return sorted_letters((current - known) | set(wanted))
    if mode == "add":
        return sorted_letters(current | set(wanted))
    return sorted_letters(current - set(wanted))
