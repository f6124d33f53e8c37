"""The daemon's user store follows the users file (Dovecot's passwd-file rule): an
``aionet users add`` takes effect at the next login, without a reload, and a corrupt rewrite
keeps the users it had."""

from __future__ import annotations

import poplib
from pathlib import Path
from typing import Any

from tests.conftest import run_aionet


def _login(addr: tuple[str, int], user: str, password: str) -> bool:
    client = poplib.POP3(*addr, timeout=10)
    try:
        client.user(user)
        client.pass_(password)
    except poplib.error_proto:
        return False
    finally:
        client.close()
    return True


def test_users_add_takes_effect_without_a_reload(daemon: Any, tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    add = ("users", "add", "--file", str(users))
    assert run_aionet(*add, "ann", input="ann-pw\n").returncode == 0
    config = f"""
auth: {{users_file: {users}}}
listeners:
  - {{name: pop3, protocol: pop3, bind: "127.0.0.1:0", options: {{auth_without_tls: true}}}}
"""
    d = daemon(config)
    addr = d.address("pop3")
    assert _login(addr, "ann", "ann-pw")
    assert not _login(addr, "cid", "cid-pw")
    assert run_aionet(*add, "cid", input="cid-pw\n").returncode == 0
    assert _login(addr, "cid", "cid-pw")  # no SIGHUP, no restart
    d.wait_for("users_file_reloaded", users=2)

    good = users.read_text()
    users.write_text(good.replace("cid:", "cid:\n    oops: 1\n  dud:", 1))  # a bad hand edit
    assert _login(addr, "cid", "cid-pw") and _login(addr, "ann", "ann-pw")  # kept
    assert d.wait_for("users_file_invalid")["kept"] == 2
