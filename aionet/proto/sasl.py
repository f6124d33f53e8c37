"""SASL decoding every protocol shares: base64 responses, PLAIN (RFC 4616) and LOGIN.

Sans-IO: bytes in, values out. SMTP AUTH, POP3 AUTH and (next) IMAP AUTHENTICATE decode their
client responses here, so the rules below hold everywhere with one meaning:

* A response is strict base64 (RFC 4648 alphabet, padding required); ``*`` alone aborts the
  exchange (RFC 4954 §4, RFC 5034 §4, RFC 9051 §6.2.2).
* PLAIN is ``[authzid] NUL authcid NUL passwd``, each UTF-8; an empty authcid is malformed.
  An authorization identity other than the authentication identity is refused: aionet has no
  proxy-authorization (logging in as one user to act as another).
* LOGIN is two base64 responses, the user name then the password, each UTF-8.

Errors carry a ``reason`` the protocol maps to its own reply (SMTP ``501 5.5.2``, POP3
``-ERR``): ``"base64"``, ``"malformed"``, ``"authzid"``, ``"aborted"``.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from dataclasses import dataclass
from typing import Literal

from ..errors import ProtocolError

__all__ = [
    "PlainCredentials",
    "SaslError",
    "decode_login",
    "decode_plain",
    "decode_response",
    "parse_plain",
]

Reason = Literal["base64", "malformed", "authzid", "aborted"]


class SaslError(ProtocolError):
    """A SASL response that cannot be used; ``reason`` says why (see the module docstring)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class PlainCredentials:
    """A decoded PLAIN response. The password never shows in repr."""

    authcid: str
    password: str = ""
    authzid: str = ""

    def __repr__(self) -> str:
        return f"PlainCredentials(authcid={self.authcid!r}, authzid={self.authzid!r})"


def decode_response(response: str | bytes) -> bytes:
    """The bytes of one base64 client response (an initial response or a continuation).

    Raises:
        SaslError: ``aborted`` for ``*``, ``base64`` when it is not strict base64.
    """
    data = response.encode("ascii", "replace") if isinstance(response, str) else response
    data = data.strip()
    if data == b"*":
        raise SaslError("aborted", "authentication aborted by the client")
    try:
        return b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("base64", "cannot decode base64") from None


def decode_plain(response: str | bytes) -> PlainCredentials:
    """Decode a base64 PLAIN response (RFC 4616 §2).

    Raises:
        SaslError: ``aborted``, ``base64``, ``malformed`` (not three NUL-separated UTF-8 parts,
            or an empty authcid), or ``authzid`` (an authorization identity other than the
            authentication identity).
    """
    return parse_plain(decode_response(response))


def parse_plain(message: bytes) -> PlainCredentials:
    """Parse a PLAIN message already base64-decoded (by an engine that decodes challenges).

    Raises:
        SaslError: ``malformed`` or ``authzid`` (see ``decode_plain``).
    """
    parts = message.split(b"\x00")
    if len(parts) != 3 or not parts[1]:
        raise SaslError("malformed", "a PLAIN response is authzid NUL authcid NUL passwd")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise SaslError("malformed", "a PLAIN response is UTF-8") from None
    if authzid and authzid != authcid:
        raise SaslError("authzid", "authorization identity not allowed")
    return PlainCredentials(authcid, password, authzid)


def decode_login(response: str | bytes) -> str:
    """Decode one LOGIN response (the user name or the password).

    Raises:
        SaslError: ``aborted``, ``base64``, or ``malformed`` (not UTF-8).
    """
    try:
        return decode_response(response).decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("malformed", "a LOGIN response is UTF-8") from None
