"""The FTP command table's preconditions: argument, then login, then a secure control."""

from __future__ import annotations

from typing import Any

import pytest

from aionet.ftp.commands import COMMANDS, preconditions
from aionet.ftp.jail import Refused


class _Session:
    def __init__(self, *, user: Any = None, tls: Any = None) -> None:
        self.user = user
        self.tls_context = tls

    def logged_in(self) -> Any:
        if self.user is None:
            raise Refused("530", "Please login with USER and PASS.")
        return self.user


def _code(verb: str, arg: str, **session: Any) -> str | None:
    try:
        preconditions(_Session(**session), verb, COMMANDS[verb], arg)  # type: ignore[arg-type]
    except Refused as refused:
        return refused.code
    return None


@pytest.mark.parametrize(
    ("verb", "arg", "session", "code"),
    [
        ("DELE", " ", {}, "501"),  # the argument first, even before login
        ("DELE", "f", {}, "530"),
        ("DELE", "f", {"user": object()}, None),
        ("LIST", "", {}, "530"),
        ("LIST", "", {"user": object()}, None),
        ("PBSZ", "0", {}, "503"),
        ("PROT", "P", {"tls": object()}, None),
        ("USER", "", {}, None),  # USER answers its own 501
        ("QUIT", "", {}, None),
    ],
)
def test_preconditions_in_order(
    verb: str, arg: str, session: dict[str, Any], code: str | None
) -> None:
    assert _code(verb, arg, **session) == code


def test_every_verb_that_touches_files_needs_login() -> None:
    open_verbs = {"USER", "PASS", "QUIT", "NOOP", "SYST", "FEAT", "OPTS", "AUTH", "PBSZ", "PROT"}
    open_verbs |= {"MODE", "STRU"}
    assert {verb for verb, command in COMMANDS.items() if not command.login} == open_verbs
