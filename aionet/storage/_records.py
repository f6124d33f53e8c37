"""The IMAP index of one Maildir on disk: ``aionet-uidlist``, its change log, its keywords.

Three small files beside ``tmp/ new/ cur/``, all written under the Maildir's uidlist ``flock``:

``aionet-uidlist`` (the checkpoint; replaced whole with ``replace_synced``)::

    V<uidvalidity> N<next uid> M<highest modseq>
    <uid> <modseq> <size> <internal date> <flag letters> <unique>

  one line per message in ascending UID order; ``<flag letters>`` are the ``:2,`` letters last
  seen on the file, sorted (empty between two spaces when there are none); ``<unique>`` is last,
  so it may hold spaces. A file without ``M`` in its header is the POP3-era format
  (``<uid> <unique>`` lines): it loads, and the next write upgrades it.

``aionet-uidlist.log`` (append-only; fsynced before the lock is released)::

    L<token>                                     the log's identity (random)
    +<uid> <modseq> <size> <date> <letters> <unique>    a message was indexed
    =<uid> <modseq> <letters>                    its flags changed
    -<uid> <modseq>                              it was expunged

  Every record carries a modseq greater than every earlier one (one linear history under the
  lock), so a record is applied when its modseq is above the state's ``highest`` and skipped
  otherwise: replaying a log onto a checkpoint that already contains it is harmless. A torn
  last line (a crash mid-append) is ignored and cut by the next writer. When the log grows past
  an eighth of the mailbox, a writer folds it into a new checkpoint and unlinks it.

``aionet-keywords`` (Dovecot's ``dovecot-keywords`` format, replaced whole)::

    <index> <keyword>

  index 0 is the flag letter ``a``, 25 is ``z``; letters are never reassigned.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from dataclasses import dataclass

__all__ = [
    "CHANGES",
    "KEYWORDS",
    "UIDLIST",
    "Entry",
    "IndexState",
    "LogTail",
    "parse_keywords",
    "read_log",
    "render_keywords",
]

UIDLIST = "aionet-uidlist"
CHANGES = "aionet-uidlist.log"
KEYWORDS = "aionet-keywords"
MAX_KEYWORDS = 26


@dataclass(slots=True)
class Entry:
    """One indexed message as the index files record it."""

    uid: int
    unique: str
    modseq: int
    size: int  # -1: not known yet (an old-format line)
    idate: float
    letters: str | None  # sorted ``:2,`` letters last seen; None: not known yet


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _fmt_date(value: float) -> str:
    return repr(value) if math.isfinite(value) else "0.0"


def render_entry(e: Entry) -> str:
    return f"{e.uid} {e.modseq} {e.size} {_fmt_date(e.idate)} {e.letters or ''} {e.unique}\n"


def _parse_entry(line: str) -> Entry:
    uid, modseq, size, idate, letters, unique = line.split(" ", 5)
    if not unique:
        raise ValueError("empty unique name")
    return Entry(int(uid), unique, int(modseq), int(size), float(idate), letters)


class IndexState:
    """The whole index in memory: header values and the entries by unique name and by UID.

    ``by_uid`` keeps ascending UID order (entries are loaded in order and new UIDs are always
    larger), which is the order snapshots list messages in.
    """

    __slots__ = ("by_uid", "by_unique", "highest", "next_uid", "uidvalidity", "upgraded")

    def __init__(self, uidvalidity: int, next_uid: int = 1, highest: int = 1) -> None:
        self.uidvalidity = uidvalidity
        self.next_uid = next_uid
        self.highest = highest
        self.by_unique: dict[str, Entry] = {}
        self.by_uid: dict[int, Entry] = {}
        self.upgraded = False  # loaded from an old-format file: the next write is a checkpoint

    @classmethod
    def fresh(cls, previous_validity: int = 0) -> IndexState:
        """A new, empty index; its UIDVALIDITY differs from ``previous_validity``."""
        return cls(max(int(time.time()), previous_validity + 1))

    @classmethod
    def parse(cls, data: bytes) -> IndexState:
        """Parse a checkpoint (either format).

        Raises:
            ValueError: the file is not a uidlist (truncated by hand, garbage).
        """
        text = _decode(data)
        lines = text.split("\n")
        head = {part[0]: part[1:] for part in lines[0].split() if part}
        if "V" not in head:
            raise ValueError("uidlist without a V header")
        state = cls(int(head["V"]), int(head.get("N", "1")), int(head.get("M", "1")))
        add = state.add
        if "M" in head:
            for line in lines[1:]:
                if line:
                    add(_parse_entry(line))
        else:  # the POP3-era format: "<uid> <unique>"
            state.upgraded = True
            for line in lines[1:]:
                uid, _, unique = line.partition(" ")
                if unique:
                    add(Entry(int(uid), unique, 0, -1, 0.0, None))
        if any(a > b for a, b in zip(state.by_uid, list(state.by_uid)[1:], strict=False)):
            state._resort()
        state.next_uid = max(state.next_uid, max(state.by_uid, default=0) + 1)
        state.highest = max(state.highest, 1)
        return state

    def render(self) -> bytes:
        header = f"V{self.uidvalidity} N{self.next_uid} M{self.highest}\n"
        return _encode(header + "".join(map(render_entry, self.by_uid.values())))

    def add(self, entry: Entry) -> None:
        old = self.by_unique.pop(entry.unique, None)
        if old is not None:
            self.by_uid.pop(old.uid, None)
        self.by_unique[entry.unique] = entry
        self.by_uid[entry.uid] = entry

    def remove(self, entry: Entry) -> None:
        self.by_unique.pop(entry.unique, None)
        self.by_uid.pop(entry.uid, None)

    def bump(self) -> int:
        self.highest += 1
        return self.highest

    def _resort(self) -> None:
        ordered = sorted(self.by_uid.values(), key=lambda e: e.uid)
        self.by_uid = {e.uid: e for e in ordered}

    def apply(self, line: str) -> int | None:
        """Apply one log record; the UID it touched, or None when it was already applied.

        Raises:
            ValueError: the line is not a record.
        """
        kind, body = line[:1], line[1:]
        if kind == "+":
            entry = _parse_entry(body)
            modseq = entry.modseq
        elif kind == "=":
            uid_s, modseq_s, letters = body.split(" ", 2)
            modseq = int(modseq_s)
        elif kind == "-":
            uid_s, modseq_s = body.split(" ")
            modseq = int(modseq_s)
        else:
            raise ValueError(f"unknown record {kind!r}")
        if modseq <= self.highest:
            return None
        self.highest = modseq
        if kind == "+":
            self.add(entry)
            self.next_uid = max(self.next_uid, entry.uid + 1)
            return entry.uid
        old = self.by_uid.get(int(uid_s))
        if old is None:
            return None
        if kind == "=":
            old.letters, old.modseq = letters, modseq
        else:
            self.remove(old)
        return old.uid


def record_add(e: Entry) -> str:
    return "+" + render_entry(e)


def record_flags(e: Entry) -> str:
    return f"={e.uid} {e.modseq} {e.letters or ''}\n"


def record_expunge(uid: int, modseq: int) -> str:
    return f"-{uid} {modseq}\n"


@dataclass(slots=True)
class LogTail:
    """How much of which log this process has applied."""

    token: str | None = None  # None: no valid log (absent, empty, or garbage)
    offset: int = 0  # bytes of complete, applied records (header included)
    records: int = 0  # records in the log so far (for the compaction threshold)

    @staticmethod
    def header() -> tuple[str, bytes]:
        token = secrets.token_hex(8)
        return token, _encode(f"L{token}\n")


def read_log(path: str, state: IndexState, tail: LogTail) -> tuple[LogTail, set[int]]:
    """Apply the records of ``path`` that ``state`` lacks; the new tail and the UIDs touched.

    Reads from ``tail.offset`` when the log is still the one ``tail`` describes, else from the
    start (records already in ``state`` are skipped by modseq either way).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return LogTail(), set()
    newline = data.find(b"\n")
    if newline < 1 or data[:1] != b"L":
        return LogTail(), set()
    token = _decode(data[1:newline])
    if token == tail.token and tail.offset <= len(data):
        start, records = tail.offset, tail.records
    else:
        start, records = newline + 1, 0
    end = data.rfind(b"\n") + 1
    touched: set[int] = set()
    pos = start
    for line in _decode(data[start:end]).split("\n")[:-1] if end > start else []:
        try:
            uid = state.apply(line)
        except (ValueError, IndexError):
            break  # a damaged record: stop here; the next writer cuts the log back to `pos`
        if uid is not None:
            touched.add(uid)
        pos += len(_encode(line)) + 1
        records += 1
    return LogTail(token, pos, records), touched


def append_log(path: str, tail: LogTail, lines: list[str]) -> LogTail:
    """Append ``lines`` durably (one write, fsync); starts a log when there is none.

    A torn tail (bytes past ``tail.offset``) is cut first, so records never follow garbage.
    Returns the new tail. The caller fsyncs the directory when ``tail.token`` was None (the
    log file may be new).
    """
    data = _encode("".join(lines))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if tail.token is None:
            token, header = LogTail.header()
            os.ftruncate(fd, 0)
            data = header + data
            offset = len(header)
            tail = LogTail(token, offset, 0)
        elif os.fstat(fd).st_size != tail.offset:
            os.ftruncate(fd, tail.offset)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    written = len(_encode("".join(lines)))
    return LogTail(tail.token, tail.offset + written, tail.records + len(lines))


def parse_keywords(data: bytes) -> list[str]:
    """``aionet-keywords`` → the keyword of each letter index (gaps as empty strings)."""
    names: list[str] = []
    for line in _decode(data).split("\n"):
        index, _, name = line.partition(" ")
        if not index.isdigit() or not name or int(index) >= MAX_KEYWORDS:
            continue
        i = int(index)
        names.extend([""] * (i + 1 - len(names)))
        names[i] = name
    return names


def render_keywords(names: list[str]) -> bytes:
    return _encode("".join(f"{i} {name}\n" for i, name in enumerate(names) if name))
