"""Auth lock-outs cannot be turned against an account, and operators see and clear them
(admin endpoint and ``aionet lockouts``) without a restart (issue 13.7)."""

from __future__ import annotations

import asyncio
import json
import poplib
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from aionet.admin.app import hash_token
from aionet.auth.users import UserStore
from aionet.testing import serve

from .mail_helpers import CHEAP

ADMIN = "admin-token-0123456789abcdef"


def _config(tmp_path: Path) -> dict[str, Any]:
    users = tmp_path / "users.yaml"
    store = UserStore(users, hasher=CHEAP)
    store.add("alice", "alice-pw")
    store.close()
    return {
        "logging": {"level": "warning"},
        "auth": {
            "users_file": str(users),
            "throttle": {"base_delay": "10ms", "max_delay": "20ms"},  # quick replies in tests
        },
        "listeners": [
            {"name": "pop3", "protocol": "pop3", "bind": "127.0.0.1:0",
             "options": {"auth_without_tls": True}},
            {"name": "pop3v6", "protocol": "pop3", "bind": "[::1]:0",
             "options": {"auth_without_tls": True}},
            {"name": "admin", "protocol": "admin", "bind": "127.0.0.1:0",
             "options": {"tokens": [{"name": "ops", "role": "admin",
                                     "sha256": hash_token(ADMIN)}]}},
        ],
    }  # fmt: skip


def _login(addr: tuple[str, int], password: str) -> bool:
    box = poplib.POP3(addr[0], addr[1], timeout=10)
    try:
        box.user("alice")
        box.pass_(password)
        return True
    except poplib.error_proto:
        return False
    finally:
        box.close()


async def test_a_name_wide_guess_never_locks_the_owner_out(tmp_path: Path) -> None:
    async with serve(_config(tmp_path), data_dir=tmp_path / "data") as server:
        v4, v6 = server.address("pop3")[:2], server.address("pop3v6")[:2]
        for _ in range(6):  # the attacker's network is locked out...
            assert not await asyncio.to_thread(_login, v4, "guess")
        assert not await asyncio.to_thread(_login, v4, "alice-pw")
        # ...but the owner, from a network that has not been failing, gets in.
        assert await asyncio.to_thread(_login, v6, "alice-pw")


async def test_lockouts_are_listed_and_cleared_over_http_and_the_cli(tmp_path: Path) -> None:
    async with serve(_config(tmp_path), data_dir=tmp_path / "data") as server:
        v4 = server.address("pop3")[:2]
        admin = "http://{}:{}".format(*server.address("admin")[:2])
        for _ in range(5):
            assert not await asyncio.to_thread(_login, v4, "guess")
        async with httpx.AsyncClient(
            base_url=admin, headers={"Authorization": f"Bearer {ADMIN}"}
        ) as client:
            listed = (await client.get("/lockouts")).json()
            assert [(x["scope"], x["key"]) for x in listed["lockouts"]] == [
                ("network", "127.0.0.1")
            ]

            def cli(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [sys.executable, "-m", "aionet", "lockouts", *args, "--admin", admin],
                    capture_output=True, text=True, timeout=30,
                    env={"AIONET_TOKEN": ADMIN, "PATH": "/usr/bin:/bin"},
                )  # fmt: skip

            shown = await asyncio.to_thread(cli, "list")
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["lockouts"][0]["key"] == "127.0.0.1"
            cleared = await asyncio.to_thread(cli, "clear", "--network", "127.0.0.1")
            assert cleared.returncode == 0, cleared.stderr
            assert json.loads(cleared.stdout)["cleared"] == 1
            assert (await client.get("/lockouts")).json()["lockouts"] == []
        assert await asyncio.to_thread(_login, v4, "alice-pw")


async def test_the_cli_says_why_it_failed(tmp_path: Path) -> None:
    async with serve(_config(tmp_path), data_dir=tmp_path / "data") as server:
        admin = "http://{}:{}".format(*server.address("admin")[:2])
        denied = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "aionet", "lockouts", "clear", "--admin", admin,
             "--token", "wrong"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert denied.returncode == 1
    assert "401" in denied.stderr
