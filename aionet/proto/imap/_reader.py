"""IMAP command framing: bytes in, whole commands (their literals included) out.

Sans-IO, on ``aionet.proto.lines.LineBuffer``. ``feed`` takes what the client sent;
``next_event`` hands out, one at a time:

* ``NeedContinuation(tag)``: a synchronizing literal ``{n}`` was announced and will be
  accepted; the engine sends ``+ Ready for literal data`` and keeps calling ``next_event``.
* ``RawCommand``: one whole command, ready for ``parse_command``.
* ``BadCommand(tag, text)``: a command that cannot be read; ``tag`` is None when the line
  had no valid tag (answer ``* BAD``), else answer ``tag BAD text``.
* ``None``: more bytes are needed.

Rules this file keeps whatever the client sends:

1. **Memory is bounded.** A line holds at most ``max_line`` bytes (longer ones are dropped as
   they arrive and reported once, at their end); a literal is stored only when it is at most
   ``max_literal`` bytes and the command's literals stay within ``max_literal`` in all; the
   command's text stays within ``4 * max_line``; a command has at most ``MAX_LITERALS``
   literals. A refused non-synchronizing literal (``{n+}``, RFC 7888) is counted down, never
   stored, so ``{2147483648+}`` costs nothing; the rest of its command is skipped the same
   way and answered with one ``BadCommand``.
2. **A refused synchronizing literal ends its command at once** (``[TOOBIG]``): the client
   waits for ``+``, gets the tagged BAD instead, and sends nothing more for that command.
3. **Every command ends in exactly one RawCommand or BadCommand** (one tagged or untagged
   answer), whatever its errors; nesting deeper than ``max_depth`` is one of them.
4. Lines end at LF, a CR before it is dropped (LineBuffer). Literal markers are recognised
   only at the end of a line and outside a quoted string: ``{n}``, ``{n+}``, and the
   literal8 forms ``~{n}``, ``~{n+}`` (RFC 3516, for APPEND).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..lines import TOO_LONG, LineBuffer

if TYPE_CHECKING:
    from ..lines import _TooLong

__all__ = [
    "MAX_LITERALS",
    "BadCommand",
    "CommandReader",
    "NeedContinuation",
    "RawCommand",
    "ReaderEvent",
]

#: Literals one command may carry (MULTIAPPEND of that many messages is plenty).
MAX_LITERALS: Final = 1000
#: Digits a literal size may have: beyond this the marker is refused as it stands.
_MAX_SIZE_DIGITS: Final = 20
#: Bytes of a line kept to name the tag of an over-long line.
_HEAD: Final = 64

# tag = 1*<any ASTRING-CHAR except "+">; the command word is an atom
_TAG = re.compile(rb'[^(){ %*"\\+\x00-\x1f\x7f-\xff]+')
_NAME = re.compile(rb'[^(){ %*"\\\]\x00-\x1f\x7f-\xff]+')
# quoted strings (skipped: their parentheses do not count) and parentheses
_NESTING = re.compile(rb'"(?:[^"\\]|\\.)*"?|[()]', re.DOTALL)
_MARKER = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """Send ``+ Ready for literal data`` (a synchronizing literal will be read)."""

    tag: str


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A command that cannot be read: answer ``tag BAD text`` (``* BAD text`` without a tag)."""

    tag: str | None
    text: str


@dataclass(frozen=True, slots=True)
class RawCommand:
    """One whole command, literals included, for ``parse_command``.

    ``name`` is the command word upper-cased (``UID`` for ``UID FETCH``). ``pieces`` holds
    the arguments after the command word: ``(text, literal, text, ..., text)``, each text but
    the last ending with the marker of the literal that follows it.
    """

    tag: str
    name: str
    pieces: tuple[bytes, ...] = (b"",)

    def __repr__(self) -> str:  # literals (passwords, messages) never show
        sizes = [len(p) for p in self.pieces[1::2]]
        return f"RawCommand(tag={self.tag!r}, name={self.name!r}, literals={sizes})"


ReaderEvent = NeedContinuation | RawCommand | BadCommand


class CommandReader:
    """Frames one connection's commands. See the module docstring for the rules.

    Args:
        max_line: the longest line accepted, LF included.
        max_literal: the largest literal, and the most literal data one command may carry.
        max_depth: the deepest parenthesis nesting accepted.
    """

    __slots__ = (
        "_depth",
        "_error",
        "_head",
        "_in_literal",
        "_left",
        "_lines",
        "_literal",
        "_literal_total",
        "_literals",
        "_long_head",
        "_name",
        "_pending",
        "_pieces",
        "_tag",
        "_text_size",
        "max_depth",
        "max_line",
        "max_literal",
    )

    def __init__(
        self, max_line: int = 8192, max_literal: int = 25 * 1024 * 1024, max_depth: int = 32
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_depth = max_depth
        self._lines = LineBuffer(max_line)
        self._pending = bytearray()  # received, not yet given to the line buffer or a literal
        self._head = bytearray()  # the first bytes of the line being received
        self._long_head = b""  # those of the last over-long line
        self._reset()

    def _reset(self) -> None:
        self._tag: str | None = None
        self._name = ""
        self._pieces: list[bytes] | None = None  # None: between commands
        self._text_size = 0
        self._literals = 0
        self._literal_total = 0
        self._depth = 0
        self._error: str | None = None  # the command is refused; this is the reply text
        self._in_literal = False
        self._left = 0  # literal bytes still to come
        self._literal: bytearray | None = None  # None while a refused literal is skipped

    def __len__(self) -> int:
        """Bytes held: received and not yet handed out (bounded, see the module docstring)."""
        held = len(self._literal) if self._literal is not None else 0
        if self._pieces:
            held += sum(len(p) for p in self._pieces)
        return len(self._pending) + len(self._lines) + held

    # -- input -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client."""
        self._pending += data

    def discard_input(self) -> int:
        """Drop every byte received and not yet handed out (STARTTLS: plaintext pipelined
        before the handshake); return how many."""
        dropped = len(self._pending) + self._lines.discard_input()
        if self._literal is not None:
            dropped += len(self._literal)
        self._pending.clear()
        self._head.clear()
        self._reset()
        return dropped

    def next_line(self) -> bytes | _TooLong | None:
        """Raw line mode (IDLE's ``DONE``, AUTHENTICATE responses): the next line without
        its CRLF, ``TOO_LONG`` for an over-long one, or None. Call it only between commands."""
        return self._read_line()

    def _read_line(self) -> bytes | _TooLong | None:
        pending = self._pending
        end = pending.find(b"\n")
        if end < 0:
            if pending:
                self._note_head(pending, len(pending))
                self._lines.feed(bytes(pending))
                pending.clear()
            return self._lines.next_line()  # None: no LF yet (an over-long line is dropped)
        self._note_head(pending, end + 1)
        self._lines.feed(bytes(pending[: end + 1]))
        del pending[: end + 1]
        line = self._lines.next_line()
        if line is TOO_LONG:
            self._long_head = bytes(self._head)
        self._head.clear()
        return line

    def _note_head(self, data: bytearray, end: int) -> None:
        room = _HEAD - len(self._head)
        if room > 0:
            self._head += data[: min(room, end)]

    # -- events ------------------------------------------------------------------------------

    def next_event(self) -> ReaderEvent | None:
        """The next command event, or None until more bytes arrive."""
        while True:
            if self._in_literal:
                if not self._take_literal():
                    return None
                continue
            line = self._read_line()
            if line is None:
                return None
            event = self._line(line) if line is not TOO_LONG else self._too_long()
            if event is not None:
                return event

    def _take_literal(self) -> bool:
        """Move literal bytes from the input; True once the literal is complete."""
        pending = self._pending
        take = min(self._left, len(pending))
        if take:
            if self._literal is not None:
                self._literal += pending if take == len(pending) else pending[:take]
            if take == len(pending):
                pending.clear()
            else:
                del pending[:take]
            self._left -= take
        if self._left:
            return False
        if self._literal is not None and self._pieces is not None:
            self._pieces.append(bytes(self._literal))
        self._literal = None
        self._in_literal = False
        return True

    def _too_long(self) -> BadCommand:
        tag = self._tag
        if self._pieces is None:  # the command's first line: its tag, if it came whole
            first, sep, _ = self._long_head.partition(b" ")
            tag = first.decode("ascii") if sep and _TAG.fullmatch(first) else None
        self._reset()
        return BadCommand(tag, "line too long")

    def _line(self, line: bytes) -> ReaderEvent | None:
        if self._pieces is None:  # a command begins: tag SP name
            self._pieces = []
            m = _TAG.match(line)
            if m is None or line[m.end() : m.end() + 1] not in (b" ", b""):
                self._error = "missing or invalid tag" if line else "empty command line"
                return self._segment(line)
            self._tag = m.group(0).decode("ascii")
            name = _NAME.match(line, m.end() + 1)
            if name is None:
                self._error = "missing command"
                return self._segment(line[m.end() :])
            self._name = name.group(0).decode("ascii").upper()
            line = line[name.end() :]
        return self._segment(line)

    def _segment(self, text: bytes) -> ReaderEvent | None:
        """One line of the command (its first after the command word, or one after a
        literal): the command ends here, or a literal follows."""
        assert self._pieces is not None
        tag = self._tag
        self._text_size += len(text)
        if self._error is None and self._text_size > 4 * self.max_line:
            self._error = "command too long"
        in_quote = self._scan_nesting(text)
        marker = None if in_quote else _MARKER.search(text)
        if marker is None:
            event: ReaderEvent
            if self._error is not None or tag is None:
                event = BadCommand(tag, self._error or "missing or invalid tag")
            else:
                event = RawCommand(tag, self._name, (*self._pieces, text))
            self._reset()
            return event
        digits, nonsync = marker.group(2), bool(marker.group(3))
        if len(digits) > _MAX_SIZE_DIGITS:
            self._reset()
            return BadCommand(tag, "invalid literal size")
        size = int(digits)
        self._literals += 1
        if self._error is None:
            if self._literals > MAX_LITERALS:
                self._error = "too many literals"
            elif self._literal_total + size > self.max_literal:
                self._error = "[TOOBIG] literal too big"
        if self._error is not None:
            self._pieces.clear()  # a refused command keeps nothing
            if not nonsync:  # the client waits for "+": the tagged BAD ends the command
                error = self._error
                self._reset()
                return BadCommand(tag, error)
            self._in_literal, self._left, self._literal = True, size, None  # count down
            return None
        self._pieces.append(text)
        self._literal_total += size
        self._in_literal, self._left, self._literal = True, size, bytearray()
        return None if nonsync else NeedContinuation(tag or "")

    def _scan_nesting(self, text: bytes) -> bool:
        """Track parenthesis depth; True when the text ends inside a quoted string."""
        depth = self._depth
        in_quote = False
        for m in _NESTING.finditer(text):
            token = m.group(0)
            if token == b"(":
                depth += 1
                if depth > self.max_depth and self._error is None:
                    self._error = "too deeply nested"
            elif token == b")":
                depth = max(depth - 1, 0)
            else:
                in_quote = len(token) < 2 or not token.endswith(b'"') or _escaped_end(token)
        self._depth = depth
        return in_quote


def _escaped_end(token: bytes) -> bool:
    """A quoted token ending in ``\\"`` whose quote is escaped (the regex stopped at the
    end of the text): count the backslashes before the final quote."""
    body = token[1:-1]
    backslashes = len(body) - len(body.rstrip(b"\\"))
    return backslashes % 2 == 1
