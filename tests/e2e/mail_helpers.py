"""Shared pieces of the mail tests: users, configs, Maildir readers (certificates: the
``pki`` fixture of conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher

from aionet.auth.users import UserStore

if TYPE_CHECKING:
    from .conftest import Pki

CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
RECEIVED = re.compile(rb"^Received: .*?\r\n(?=[^\t ])", re.DOTALL)


def make_users(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    store = UserStore(path, hasher=CHEAP)
    store.add("alice", "alice-pw")
    store.add("bob", "bob-pw")
    store.add("relayer", "relay-pw", ("relay",))
    return path


def mail_config(
    tmp_path: Path,
    pki: Pki | None = None,
    smtp: dict[str, Any] | None = None,
    pop3: dict[str, Any] | None = None,
    *,
    imap: dict[str, Any] | None = None,
    implicit: bool = False,
    **server: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {"auth": {"users_file": str(make_users(tmp_path))}, "listeners": []}
    if server:
        config["server"] = server
    if pki is not None:
        config["tls"] = {"certificates": [pki.certificate("mail")]}
    tls = {"tls": "mail"} if implicit else {}
    config["listeners"] = [
        {"name": "smtp", "protocol": "smtp", "bind": "127.0.0.1:0", **tls,
         "options": {"hostname": "mx.test", **(smtp or {})}},
        {"name": "pop3", "protocol": "pop3", "bind": "127.0.0.1:0", **tls,
         "options": pop3 or {}},
    ]  # fmt: skip
    if imap is not None:
        config["listeners"].append(
            {"name": "imap", "protocol": "imap", "bind": "127.0.0.1:0", **tls, "options": imap}
        )
    return config


def without_received(data: bytes) -> bytes:
    """The message minus the Received: header we prepended (with its folded lines)."""
    stripped, n = RECEIVED.subn(b"", data, count=1)
    assert n == 1, data[:300]
    return stripped


def delivered(data_dir: Path, user: str = "alice", domain: str = "localhost") -> list[bytes]:
    new = data_dir / "mail" / domain / user / "new"
    if not new.is_dir():
        return []
    return [p.read_bytes() for p in sorted(new.iterdir())]


def tmp_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "mail").rglob("tmp/*") if p.is_file()]
