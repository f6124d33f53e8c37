"""Every access aionet makes to aiosmtpd's private names, behind small functions.

aiosmtpd's ``SMTP`` has no public way to swap the transport after STARTTLS, to say a
connection is already under (implicit) TLS, to wrap every command, to decide per connection
whether AUTH needs TLS, to pick the envelope and session classes, or to act when its
``timeout`` runs out (it closes without a word). aionet does all of that
here and nowhere else: ``EngineBase`` turns each private access into a public method the engine
(``aionet.smtp.engine``) calls, ``QuietSession`` reads ``_login_data`` without the deprecation
warning aiosmtpd logs on every AUTH, and ``quiet_aiosmtpd_logging`` drops the log records whose
format strings would carry credentials.

``PRIVATE_NAMES`` lists every private name used below, by owner. ``pyproject.toml`` pins
aiosmtpd to the minor series tested (1.4.x); ``tests/handlers/test_aiosmtpd_internals.py`` checks
each name still exists and fails naming the ones an upgrade moved.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Coroutine

__all__ = ["PRIVATE_NAMES", "EngineBase", "QuietSession", "quiet_aiosmtpd_logging"]

#: Every private name this module touches, by the class that owns it (instance attributes
#: included: the test looks them up on a constructed object). Keep in step with the code below;
#: the test also checks that no private name is used here without being listed.
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "SMTP": (
        "_auth_require_tls",
        "_create_envelope",
        "_create_session",
        "_getaddr",
        "_reader",
        "_replace_writer",
        "_reset_timeout",
        "_set_rset_state",
        "_smtp_methods",
        "_timeout_cb",
        "_timeout_duration",
        "_tls_protocol",
        "_writer",
    ),
    "Session": ("_login_data",),
    "StreamReader": ("_buffer", "_transport"),
    "StreamWriter": ("_transport",),
}

#: aiosmtpd's per-connection and per-line log formats. Its ``%r >> %r`` logs every command line at
#: INFO — AUTH PLAIN's initial response (the password) included — so these records are dropped;
#: aionet's own events say what happened, and aiosmtpd's other records still reach the log.
_AIOSMTPD_CHATTER = frozenset(
    {
        "%r >> %r",
        "%r << %r",
        "%r << challenge: %r",
        "_handle_client readline: %r",
        "DATA readline: %s",
        "Peer: %r",
        "%r handling connection",
        "%r connection lost",
        "%r EOF received",
        "%r sender: %s",
        "%r recip: %s",
        "%r Connection lost during _handle_client()",
        "Connection lost during DATA",
        "%r connection timeout",
        "%r can't decode base64: %s",
    }
)


class _QuietAiosmtpd(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        return not (
            isinstance(msg, str) and (msg in _AIOSMTPD_CHATTER or msg.startswith("Available AUTH"))
        )


_QUIET = _QuietAiosmtpd()


def quiet_aiosmtpd_logging() -> None:
    """Drop aiosmtpd's chatter records from its ``mail.log`` logger (idempotent)."""
    logging.getLogger("mail.log").addFilter(_QUIET)


class QuietSession(Session):
    """aiosmtpd's session without the deprecation warning it logs on every AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


#: ``<local@domain>`` at its simplest, as nearly every MAIL and RCPT carries it: a dot-atom
#: local part (RFC 5322 atext) and an LDH domain, in angle brackets at the start of the
#: argument. Anything else (spaces, quoting, domain literals, source routes, UTF-8, ``<>``) is
#: left to aiosmtpd's parser.
_SIMPLE_PATH = re.compile(
    r"<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
)


class EngineBase(SMTP):
    """aiosmtpd's ``SMTP`` with its private state behind public methods."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path parser (``email``'s header parser, and a ``Protocol`` class built
        per call), short-cut for the simple ``<local@domain>``: the same address and rest."""
        match = _SIMPLE_PATH.match(arg)
        if match is None:
            return super()._getaddr(arg)
        rest = arg[match.end() :]
        if rest:
            stripped = rest.lstrip(" \t")  # the parser takes the whitespace after ``>`` ...
            if stripped == rest or stripped[:1] == "(":  # ... and comments (CFWS): its call
                return super()._getaddr(arg)
            rest = stripped
        addr = match.group(1)
        if self.local_part_limit and addr.index("@") > self.local_part_limit:
            return None, None
        return addr, rest

    def new_envelope(self) -> Envelope:
        """The envelope of the next transaction (override to add fields)."""
        return Envelope()

    def _create_envelope(self) -> Envelope:
        return self.new_envelope()

    def _create_session(self) -> Session:
        return QuietSession(self.loop)

    def wrap_commands(self, wrapper: Callable[..., Coroutine[Any, Any, None]]) -> None:
        """Route every ``smtp_VERB(arg)`` through ``wrapper(method, arg)``."""
        methods = self._smtp_methods
        for name, method in list(methods.items()):
            methods[name] = partial(wrapper, method)

    def set_auth_require_tls(self, value: bool) -> None:
        """Whether AUTH is offered only under TLS, for this connection."""
        self._auth_require_tls = value

    @property
    def tls_transport(self) -> asyncio.BaseTransport | None:
        """The TLS transport of this connection, or None on plaintext."""
        return self._tls_protocol  # type: ignore[return-value]

    def mark_implicit_tls(self, transport: asyncio.BaseTransport) -> None:
        """The listener's ``tls:`` already wrapped ``transport``: count it as TLS."""
        self._tls_protocol = transport  # type: ignore[assignment]

    def write_now(self, data: bytes) -> None:
        """Write ``data`` without waiting (no ``drain``)."""
        self._writer.write(data)

    async def write_reply(self, data: bytes) -> None:
        """Write ``data`` and wait while the client is slow to read (aiosmtpd's ``push``
        without its encoding and its per-line debug record)."""
        self._writer.write(data)
        await self._writer.drain()

    def command_waiting(self) -> bool:
        """A whole line from the client is already read and waits for its turn (the client
        pipelines, RFC 2920)."""
        return b"\n" in self._reader._buffer  # type: ignore[attr-defined]

    def plaintext_buffers(self) -> tuple[asyncio.StreamReader]:
        """The buffers whose plaintext a STARTTLS upgrade must discard."""
        return (self._reader,)

    def swap_transport(self, new: asyncio.Transport) -> None:
        """After STARTTLS: read, write and count TLS on ``new`` from now on."""
        self.transport = new
        self._reader._transport = new  # type: ignore[attr-defined]
        self._writer._transport = new  # type: ignore[attr-defined]
        self._replace_writer(self._writer)  # type: ignore[attr-defined]
        self._tls_protocol = new  # type: ignore[assignment]

    def reset_transaction(self) -> None:
        """Forget the current transaction, as RSET does."""
        self._set_rset_state()  # type: ignore[no-untyped-call]

    def _timeout_cb(self) -> None:
        self.timed_out()

    def timed_out(self) -> None:
        """aiosmtpd's ``timeout`` ran out (it runs from the greeting and from each valid
        command). By default: close without a word, as aiosmtpd does."""
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    @property
    def timeout_seconds(self) -> float:
        """aiosmtpd's ``timeout``: how long a session may go without a valid command."""
        return float(self._timeout_duration)

    def restart_timeout(self, delay: float) -> None:
        """Run out aiosmtpd's ``timeout`` ``delay`` seconds from now instead."""
        self._reset_timeout(delay)
