"""POP3 (RFC 1939, CAPA RFC 2449, SASL PLAIN RFC 5034/4616, STLS RFC 2595) as a sans-IO machine.

Bytes go in with ``receive_data``; ``next_event`` hands out what the driver must do, one event
at a time: ``Send`` bytes, ``Authenticate`` a user, ``StartTls``, ``Retrieve`` a message's
content, ``Commit`` the deletions (UPDATE state), ``Close``. While the driver works on an
``Authenticate``, ``StartTls``, ``Retrieve`` or ``Commit``, the machine answers ``PAUSED``; the
driver resumes it with the matching completion call (``auth_succeeded``/``auth_failed``/
``mailbox_busy``, ``tls_started``, ``message_content``, ``committed``). Nothing here does I/O.

Rules of this file (after h11's ``_state.py``):

1. What each command may do in each state lives in one table, ``COMMANDS``:
   ``(state, verb) -> method``. A verb known to POP3 but absent for the current state gets
   ``-ERR`` and counts as a bad command; an unknown verb too.
2. Every reply the machine makes is built here; the driver never writes protocol text.
3. Deletions are only marks until ``QUIT`` in TRANSACTION, which enters UPDATE and emits one
   ``Commit`` with every marked message: a dropped connection commits nothing.
4. Lines are bounded (``max_line``, RFC 2449's 255 by default): a longer line is discarded up to
   its CRLF and answered ``-ERR``; ``max_bad`` bad commands end the session.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .lines import TOO_LONG, LineBuffer
from .sasl import SaslError, decode_plain

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "COMMANDS",
    "NEED_DATA",
    "PAUSED",
    "Authenticate",
    "Close",
    "Commit",
    "Event",
    "Pop3Machine",
    "Retrieve",
    "Send",
    "StartTls",
    "State",
    "dot_stuff",
    "uidl_of",
]


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"
    CLOSED = "closed"


class _Sentinel(enum.Enum):
    NEED_DATA = "need_data"
    PAUSED = "paused"


NEED_DATA: Final = _Sentinel.NEED_DATA
PAUSED: Final = _Sentinel.PAUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticate:
    username: str
    password: str = ""

    def __repr__(self) -> str:  # the password never shows
        return f"Authenticate(username={self.username!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrieve:
    index: int  # 0-based position in the mailbox given to ``auth_succeeded``
    unique: str
    top: int | None  # TOP's line count, or None for RETR


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    delete: tuple[str, ...]  # unique names, all to be removed atomically


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    pass


Event = Send | Authenticate | StartTls | Retrieve | Commit | Close

OK = b"+OK"
ERR = b"-ERR"


def _line(status: bytes, text: str | bytes = b"") -> bytes:
    if isinstance(text, str):
        text = text.encode()
    return status + (b" " + text if text else b"") + b"\r\n"


def dot_stuff(content: bytes, top: int | None = None) -> bytes:
    """The multi-line body of RETR/TOP: lines with a leading dot doubled, CRLF ends, ``.``.

    ``top`` keeps the headers, the blank line and that many body lines. A message without a
    final line break gets one, so the terminating ``.`` is on a line of its own.
    """
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if top is not None:
        for i, line in enumerate(lines):
            if line in (b"", b"\r"):
                lines = lines[: i + 1 + top]
                break
    out = [b"." + ln if ln.startswith(b".") else ln for ln in lines]
    body = b"\n".join(ln if ln.endswith(b"\r") else ln + b"\r" for ln in out)
    return (body + b"\n" if out else b"") + b".\r\n"


def uidl_of(unique: str) -> str:
    """The UIDL of a Maildir unique name: itself when RFC 1939 allows it (1-70 characters in
    0x21..0x7E), else a stable digest of it."""
    if 0 < len(unique) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in unique):
        return unique
    return hashlib.sha256(unique.encode("utf-8", "surrogateescape")).hexdigest()[:64]


@dataclass(slots=True)
class _Message:
    unique: str
    size: int
    deleted: bool = False

    @property
    def uidl(self) -> str:
        return uidl_of(self.unique)


class Pop3Machine:
    """One POP3 session's protocol state.

    Args:
        greeting: the text after ``+OK`` in the greeting.
        tls: the session is already under TLS (implicit TLS).
        stls: STLS may be offered (a certificate is configured).
        plaintext_auth: USER/PASS and AUTH PLAIN are allowed without TLS.
        max_line: the longest command line accepted, CRLF included.
        max_bad: bad commands (unknown, out of state, malformed, over-long) before closing.
        max_auth_failures: failed logins before closing.
    """

    def __init__(
        self,
        *,
        greeting: str = "POP3 server ready",
        tls: bool = False,
        stls: bool = False,
        plaintext_auth: bool = False,
        max_line: int = 255,
        max_bad: int = 10,
        max_auth_failures: int = 3,
    ) -> None:
        self.state = State.AUTHORIZATION
        self.tls = tls
        self.stls = stls
        self.plaintext_auth = plaintext_auth
        self.max_line = max_line
        self.max_bad = max_bad
        self.max_auth_failures = max_auth_failures
        self.bad = 0
        self.auth_failures = 0
        self.username: str | None = None
        self.messages: list[_Message] = []
        self._lines = LineBuffer(max_line)
        self._events: list[Event] = [Send(data=_line(OK, greeting))]
        self._waiting: str | None = None  # the completion the machine waits for
        self._sasl = False  # the next line is a SASL PLAIN response
        self._pending_retrieve: Retrieve | None = None

    # -- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client (b"" is ignored: the driver handles EOF)."""
        if self.state is not State.CLOSED:
            self._lines.feed(data)

    def next_event(self) -> Event | _Sentinel:
        """The next thing to do, ``PAUSED`` while a completion is awaited, or ``NEED_DATA``."""
        while True:
            if self._events:
                return self._events.pop(0)
            if self._waiting is not None:
                return PAUSED
            if self.state is State.CLOSED:
                return NEED_DATA
            before = len(self._lines)
            line = self._next_line()
            if line is not None:
                self._handle_line(line)
            elif len(self._lines) == before and not self._events:
                return NEED_DATA

    def _next_line(self) -> bytes | None:
        line = self._lines.next_line()
        if line is TOO_LONG:
            self._bad("line too long")
            return None
        return line

    # -- commands ------------------------------------------------------------------------------

    def _handle_line(self, line: bytes) -> None:
        if self._sasl:
            self._sasl = False
            self._sasl_response(line)
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._bad("invalid UTF-8")
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        method = COMMANDS.get((self.state, verb))
        if method is None:
            known = any(v == verb for _, v in COMMANDS)
            self._bad("command not valid in this state" if known else "unknown command")
            return
        method(self, arg)

    def _send(self, status: bytes, text: str | bytes = b"") -> None:
        self._events.append(Send(data=_line(status, text)))

    def _bad(self, why: str) -> None:
        self.bad += 1
        if self.bad >= self.max_bad:
            self._send(ERR, "too many bad commands, closing")
            self._close()
            return
        self._send(ERR, why)

    def _close(self) -> None:
        self.state = State.CLOSED
        self._lines.discard_input()
        self._events.append(Close())

    def _auth_allowed(self) -> bool:
        return self.tls or self.plaintext_auth

    # AUTHORIZATION

    def _capa(self, arg: str) -> None:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self._auth_allowed():
                caps += ["USER", "SASL PLAIN"]
            if self.stls and not self.tls:
                caps.append("STLS")
        caps.append("IMPLEMENTATION aionet")
        body = "".join(f"{c}\r\n" for c in caps)
        self._events.append(
            Send(data=b"+OK Capability list follows\r\n" + body.encode() + b".\r\n")
        )

    def _user(self, arg: str) -> None:
        if not self._auth_allowed():
            self._send(ERR, "[AUTH] plaintext authentication disallowed without TLS (use STLS)")
            return
        if not arg or " " in arg.strip():
            self._bad("syntax: USER name")
            return
        self.username = arg.strip()
        self._send(OK, "send PASS")

    def _pass(self, arg: str) -> None:
        if self.username is None:
            self._bad("USER first")
            return
        if not self._auth_allowed():
            self._send(ERR, "[AUTH] plaintext authentication disallowed without TLS")
            return
        username, self.username = self.username, None
        self._authenticate(username, arg)

    def _authenticate(self, username: str, password: str) -> None:
        self._events.append(Authenticate(username=username, password=password))
        self._waiting = "auth"

    def _auth(self, arg: str) -> None:
        mechanism, _, initial = arg.strip().partition(" ")
        if not mechanism:
            self._events.append(Send(data=b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"))
            return
        if mechanism.upper() != "PLAIN":
            self._send(ERR, "unsupported SASL mechanism")
            return
        if not self._auth_allowed():
            self._send(ERR, "[AUTH] plaintext authentication disallowed without TLS")
            return
        if not initial:
            self._sasl = True
            self._events.append(Send(data=b"+ \r\n"))
            return
        self._sasl_response(initial.encode())

    def _sasl_response(self, line: bytes) -> None:
        try:
            plain = decode_plain(line)
        except SaslError as exc:
            if exc.reason == "aborted":
                self._send(ERR, "authentication aborted")
            elif exc.reason == "authzid":
                self._send(ERR, "[AUTH] authorization identity not allowed")
            else:  # bad base64, wrong part count, bad UTF-8
                self._bad("malformed SASL PLAIN response")
            return
        self._authenticate(plain.authcid, plain.password)

    def _stls(self, arg: str) -> None:
        if not self.stls or self.tls:
            self._send(ERR, "STLS not available")
            return
        self._send(OK, "Begin TLS negotiation")
        # RFC 2595 4: nothing sent before the handshake is kept. The driver's upgrade path
        # discards (and logs) the buffer through discard_input(); tls_started() clears it too.
        self._events.append(StartTls())
        self._waiting = "tls"

    def _quit_authorization(self, arg: str) -> None:
        self._send(OK, "bye")
        self._close()

    # TRANSACTION

    def _number(self, arg: str) -> _Message | None:
        """The undeleted message numbered ``arg`` (1-based), or None after replying -ERR."""
        if not arg.strip().isdigit():
            self._bad("syntax: message number expected")
            return None
        n = int(arg.strip())
        if not 1 <= n <= len(self.messages) or self.messages[n - 1].deleted:
            self._send(ERR, "no such message")
            return None
        return self.messages[n - 1]

    def _live(self) -> list[tuple[int, _Message]]:
        return [(i + 1, m) for i, m in enumerate(self.messages) if not m.deleted]

    def _stat(self, arg: str) -> None:
        live = self._live()
        self._send(OK, f"{len(live)} {sum(m.size for _, m in live)}")

    def _listing(self, arg: str, what: Callable[[_Message], object], title: str) -> None:
        if arg.strip():
            msg = self._number(arg)
            if msg is not None:
                self._send(OK, f"{arg.strip()} {what(msg)}")
            return
        body = "".join(f"{n} {what(m)}\r\n" for n, m in self._live())
        self._events.append(Send(data=f"+OK {title}\r\n{body}.\r\n".encode()))

    def _list(self, arg: str) -> None:
        self._listing(arg, lambda m: m.size, "scan listing follows")

    def _uidl(self, arg: str) -> None:
        self._listing(arg, lambda m: m.uidl, "unique-id listing follows")

    def _retr(self, arg: str) -> None:
        msg = self._number(arg)
        if msg is not None:
            self._retrieve(msg, None)

    def _top(self, arg: str) -> None:
        number, _, lines = arg.strip().partition(" ")
        if not lines.strip().isdigit():
            self._bad("syntax: TOP msg n")
            return
        msg = self._number(number)
        if msg is not None:
            self._retrieve(msg, int(lines))

    def _retrieve(self, msg: _Message, top: int | None) -> None:
        event = Retrieve(index=self.messages.index(msg), unique=msg.unique, top=top)
        self._pending_retrieve = event
        self._events.append(event)
        self._waiting = "retrieve"

    def _dele(self, arg: str) -> None:
        msg = self._number(arg)
        if msg is not None:
            msg.deleted = True
            self._send(OK, "message deleted")

    def _rset(self, arg: str) -> None:
        for msg in self.messages:
            msg.deleted = False
        self._stat_reply("maildrop has")

    def _stat_reply(self, prefix: str) -> None:
        live = self._live()
        self._send(OK, f"{prefix} {len(live)} messages ({sum(m.size for _, m in live)} octets)")

    def _noop(self, arg: str) -> None:
        self._send(OK)

    def _quit_transaction(self, arg: str) -> None:
        self.state = State.UPDATE
        self._events.append(Commit(delete=tuple(m.unique for m in self.messages if m.deleted)))
        self._waiting = "commit"

    # -- completions ---------------------------------------------------------------------------

    def _resume(self, expected: str) -> None:
        if self._waiting != expected:
            raise RuntimeError(f"not waiting for {expected!r} (waiting for {self._waiting!r})")
        self._waiting = None

    def auth_succeeded(self, messages: Sequence[tuple[str, int]]) -> None:
        """The login worked and the mailbox (unique name, size per message) is locked."""
        self._resume("auth")
        self.messages = [_Message(u, s) for u, s in messages]
        self.state = State.TRANSACTION
        self._stat_reply("maildrop locked and ready,")

    def auth_failed(self) -> None:
        self._resume("auth")
        self.auth_failures += 1
        self._send(ERR, "[AUTH] authentication failed")
        if self.auth_failures >= self.max_auth_failures:
            self._close()

    def mailbox_busy(self) -> None:
        self._resume("auth")
        self._send(ERR, "[IN-USE] mailbox is locked by another session")
        self._close()

    def discard_input(self) -> int:
        """Drop every received byte not yet processed (plaintext before a TLS handshake)."""
        return self._lines.discard_input()

    def tls_started(self) -> None:
        self._resume("tls")
        self.discard_input()
        self.tls = True
        self.username = None

    def message_content(self, content: bytes | None) -> None:
        """The content of the ``Retrieve``d message (None: it vanished from the store)."""
        self._resume("retrieve")
        event, self._pending_retrieve = self._pending_retrieve, None
        assert event is not None
        if content is None:
            self._send(ERR, "[SYS/TEMP] message is no longer available")
            return
        head = f"+OK {len(content)} octets\r\n" if event.top is None else "+OK top of message\r\n"
        self._events.append(Send(data=head.encode() + dot_stuff(content, event.top)))

    def committed(self, ok: bool) -> None:
        """The UPDATE state's deletions were applied (``ok``) or none were."""
        self._resume("commit")
        if ok:
            self._send(OK, "bye")
        else:
            self._send(ERR, "[SYS/TEMP] deletions could not be applied; nothing was removed")
        self._close()

    def shutdown(self) -> None:
        """The server is going away: say so and close (nothing is committed)."""
        if self.state is State.CLOSED:
            return
        self._events.append(Send(data=b"-ERR [SYS/TEMP] server shutting down\r\n"))
        self._close()


#: The whole command table: (state, verb) -> the method that handles it (rule 1).
COMMANDS: Final[dict[tuple[State, str], Callable[[Pop3Machine, str], None]]] = {
    (State.AUTHORIZATION, "CAPA"): Pop3Machine._capa,
    (State.AUTHORIZATION, "USER"): Pop3Machine._user,
    (State.AUTHORIZATION, "PASS"): Pop3Machine._pass,
    (State.AUTHORIZATION, "AUTH"): Pop3Machine._auth,
    (State.AUTHORIZATION, "STLS"): Pop3Machine._stls,
    (State.AUTHORIZATION, "QUIT"): Pop3Machine._quit_authorization,
    (State.TRANSACTION, "CAPA"): Pop3Machine._capa,
    (State.TRANSACTION, "STAT"): Pop3Machine._stat,
    (State.TRANSACTION, "LIST"): Pop3Machine._list,
    (State.TRANSACTION, "UIDL"): Pop3Machine._uidl,
    (State.TRANSACTION, "RETR"): Pop3Machine._retr,
    (State.TRANSACTION, "TOP"): Pop3Machine._top,
    (State.TRANSACTION, "DELE"): Pop3Machine._dele,
    (State.TRANSACTION, "RSET"): Pop3Machine._rset,
    (State.TRANSACTION, "NOOP"): Pop3Machine._noop,
    (State.TRANSACTION, "QUIT"): Pop3Machine._quit_transaction,
}
