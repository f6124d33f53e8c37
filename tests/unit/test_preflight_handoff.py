"""What the pre-bind check loads is what the server serves (issue 14): ``preflight`` hands the
config, the TLS store (with each listener's contexts) and the user store to ``Server``, which
loads none of them again; ``Server(config)`` on its own loads each once; a reload re-reads.

These start a Server on loopback port 0 (no client connects)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from argon2 import PasswordHasher

from aionet.auth.users import UserStore
from aionet.core import tls as tls_module
from aionet.core.certgen import generate_self_signed
from aionet.core.preflight import load_config, preflight
from aionet.core.server import Server
from aionet.core.tls import TlsStore
from aionet.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from aionet.config.models import CertificateConfig, ListenerTlsConfig

CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


def write_config(tmp_path: Path) -> Path:
    cert, key = generate_self_signed(tmp_path / "certs")
    UserStore(tmp_path / "users.yaml", hasher=CHEAP).add("ann", "pw")
    path = tmp_path / "aionet.yaml"
    path.write_text(
        f"server: {{data_dir: '{tmp_path / 'var'}'}}\n"
        "tls:\n"
        f"  certificates: [{{name: main, cert: '{cert}', key: '{key}'}}]\n"
        f"auth: {{users_file: '{tmp_path / 'users.yaml'}'}}\n"
        "listeners:\n"
        "  - {name: e, protocol: echo, bind: '127.0.0.1:0', tls: main}\n"
    )
    return path


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often anything reads the users file, a certificate pair, or builds a TLS context."""
    counts: Counter[str] = Counter()
    load = UserStore.load.__func__  # type: ignore[attr-defined]
    check_pair = tls_module._check_pair
    context = TlsStore._context

    def counted_load(cls: type[UserStore], *args: Any, **kwargs: Any) -> UserStore:
        counts["users"] += 1
        return load(cls, *args, **kwargs)  # type: ignore[no-any-return]

    def counted_check_pair(config: CertificateConfig) -> tuple[str, ...]:
        counts["certificates"] += 1
        return check_pair(config)

    def counted_context(self: TlsStore, name: str, settings: ListenerTlsConfig) -> Any:
        counts["contexts"] += 1
        return context(self, name, settings)

    monkeypatch.setattr(UserStore, "load", classmethod(counted_load))
    monkeypatch.setattr(tls_module, "_check_pair", counted_check_pair)
    monkeypatch.setattr(TlsStore, "_context", counted_context)
    return counts


ONCE = {"users": 1, "certificates": 1, "contexts": 1}


async def test_run_serves_what_preflight_loaded(tmp_path: Path, loads: Counter[str]) -> None:
    path = write_config(tmp_path)
    checked = preflight(path)
    assert checked.tls is not None and checked.users is not None
    assert loads == ONCE
    server = Server(checked.config, str(path), tls=checked.tls, users=checked.users)
    await server.start()
    try:
        assert server.tls is checked.tls and server.users is checked.users
        assert server.portal is not None
        (listener,) = server.listeners["e"]
        lc = checked.config.listeners[0]
        assert lc.tls is not None
        assert listener.security.tls is checked.tls.listener(lc.tls)  # the one preflight built
        assert loads == ONCE  # nothing loaded again
    finally:
        await server.shutdown()


async def test_a_server_from_a_config_loads_its_stores_once(
    tmp_path: Path, loads: Counter[str]
) -> None:
    config = load_config(write_config(tmp_path))
    assert not loads
    async with Server(config) as server:
        assert server.tls is not None and server.users is not None
        assert server.portal is not None
        assert loads == ONCE


async def test_a_reload_reads_the_handed_stores_again(tmp_path: Path, loads: Counter[str]) -> None:
    path = write_config(tmp_path)
    checked = preflight(path)
    async with Server(checked.config, str(path), tls=checked.tls, users=checked.users) as server:
        UserStore(tmp_path / "users.yaml", hasher=CHEAP).add("ben", "pw")
        # The snapshot, not get(): a lookup would re-read the changed file by itself.
        assert server.users is not None and "ben" not in server.users.snapshot
        assert await server.reload() is True
        assert "ben" in server.users.snapshot  # the users file, re-read
        assert loads["certificates"] == 2  # the certificates, re-read
        assert server.users is checked.users  # into the same store


def test_logging_can_be_set_up_before_any_file_loads(tmp_path: Path, loads: Counter[str]) -> None:
    seen: list[Counter[str]] = []
    checked = preflight(write_config(tmp_path), before_files=lambda _: seen.append(loads.copy()))
    checked.close()
    assert seen == [Counter()]  # called once, with the config valid and nothing loaded yet
    assert loads == ONCE


def test_a_failed_check_releases_what_it_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    path.write_text(
        path.read_text()
        + "  - {name: w, protocol: http, bind: '127.0.0.1:0', options: {static_dir: ./nope}}\n"
    )
    closed: list[UserStore] = []
    monkeypatch.setattr(UserStore, "close", lambda store: closed.append(store))
    with pytest.raises(ConfigError, match="static_dir"):
        preflight(path)
    assert len(closed) == 1  # the user store had loaded; the failed check let it go
