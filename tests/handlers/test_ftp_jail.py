"""The FTP jail, path by path, and the passive-port pool (no FTP session involved)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path, PurePosixPath

import pytest
import structlog

from aionet.core.handler import Services
from aionet.core.passive import (
    PassiveCapped,
    PassiveExhausted,
    PassivePorts,
    fair_share,
    parse_port_range,
)
from aionet.core.preflight import load_config_text
from aionet.errors import ConfigError
from aionet.ftp.accounts import FtpUser, PathRule, PortalUserManager, permission_of
from aionet.ftp.jail import Jail, Refused
from aionet.handlers.ftp import FtpHandler, FtpOptions

ROOT = PurePosixPath("/")


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "file").write_text("x")
    (tmp_path / "secret").write_text("s")
    (root / "out").symlink_to(tmp_path)  # a directory symlink out of the root
    (root / "outfile").symlink_to(tmp_path / "secret")
    (root / "dangling").symlink_to(tmp_path / "nothing-yet")
    (root / "inside").symlink_to(root / "sub")
    return Jail.at(root)


@pytest.mark.parametrize(
    ("cwd", "arg"),
    [
        ("/", ".."),
        ("/", "../secret"),
        ("/sub", "../../secret"),
        ("/", "/../secret"),
        ("/", "sub/../../secret"),
        ("/", "..%2fsecret"),
        ("/", "%2e%2e/secret"),
        ("/", "..%5csecret"),
        ("/", "..\\secret"),
        ("/", "sub\x00/x"),
        ("/", "out"),
        ("/", "out/secret"),
        ("/", "outfile"),
        ("/", "dangling"),
        ("/", "out/new-file"),
    ],
)
def test_escapes_are_refused_with_550(jail: Jail, cwd: str, arg: str) -> None:
    with pytest.raises(Refused) as info:
        jail.resolve(PurePosixPath(cwd), arg)
    assert info.value.code == "550"


@pytest.mark.parametrize(
    ("cwd", "arg", "virtual"),
    [
        ("/", "file", "/file"),
        ("/sub", "..", "/"),
        ("/sub", "../file", "/file"),
        ("/sub", "/file", "/file"),
        ("/", "/etc/passwd", "/etc/passwd"),  # absolute = from the user's root
        ("/", "./sub/./", "/sub"),
        ("/", "inside", "/inside"),  # a symlink that stays inside is fine
        ("/", "new-name", "/new-name"),
    ],
)
def test_paths_inside_resolve(jail: Jail, cwd: str, arg: str, virtual: str) -> None:
    real, v = jail.resolve(PurePosixPath(cwd), arg)
    assert v == PurePosixPath(virtual)
    assert real == jail.root.joinpath(*v.parts[1:])
    assert jail.contains(Path(os.path.realpath(real)))


def test_permissions_nearest_rule_and_roles_first(tmp_path: Path) -> None:
    manager = PortalUserManager(
        None,
        tmp_path,
        permissions=[PathRule("/pub", True, False), PathRule("/incoming", False, True)],
        roles={"staff": [PathRule("/pub", True, True)]},
    )

    class Account:
        name = "bob"
        roles: tuple[str, ...] = ()

        def setting(self, key: str, default: object = None) -> object:
            return default

    user = FtpUser("bob", None)
    manager._bind(user, Account())  # type: ignore[arg-type]
    assert (tmp_path / "ftp" / "bob").is_dir()
    pub = permission_of(user, PurePosixPath("/pub/a/b"))
    assert pub.readable and not pub.writable
    inc = permission_of(user, PurePosixPath("/incoming/x"))
    assert inc.writable and not inc.readable
    assert permission_of(user, PurePosixPath("/other")).writable
    Account.roles = ("staff",)
    staff = FtpUser("bob", None)
    manager._bind(staff, Account())  # type: ignore[arg-type]
    assert permission_of(staff, PurePosixPath("/pub/a")).writable


def test_home_outside_data_dir_is_refused_unless_allowed(tmp_path: Path) -> None:
    class Account:
        name = "carol"
        roles: tuple[str, ...] = ()

        def setting(self, key: str, default: object = None) -> object:
            return str(tmp_path / "elsewhere") if key == "home" else default

    data = tmp_path / "data"
    with pytest.raises(ValueError, match="outside data_dir"):
        PortalUserManager(None, data)._bind(FtpUser("carol", None), Account())  # type: ignore[arg-type]
    user = FtpUser("carol", None)
    PortalUserManager(None, data, homes_outside_data_dir=True)._bind(user, Account())  # type: ignore[arg-type]
    assert user.base_path == (tmp_path / "elsewhere").resolve()


def test_port_range_parsing() -> None:
    assert parse_port_range("30000-30100") == (30000, 30100)
    assert parse_port_range("0") == (0, 0)
    assert parse_port_range("40000") == (40000, 40000)
    for bad in ("x", "10-5", "0-10", "70000"):
        with pytest.raises(ValueError, match="port"):
            parse_port_range(bad)


def _free_range(n: int) -> tuple[int, int]:
    """n consecutive ports that are free right now (best effort)."""
    for base in range(47000, 60000, 97):
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + n - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


async def test_pool_is_bounded_and_recovers() -> None:
    pool = PassivePorts(_free_range(2))
    a = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    b = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    assert {a.port, b.port} == {pool.low, pool.high}
    with pytest.raises(PassiveExhausted):
        pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    a.close()
    a.close()  # idempotent
    c = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    assert c.port == a.port
    pool.close_all()
    assert len(pool) == 0 and pool.stats()["exhausted"] == 1


def test_default_caps_are_a_quarter_of_the_pool_at_least_2() -> None:
    assert [fair_share(n) for n in (1, 2, 8, 20, 100, 1024)] == [1, 2, 2, 5, 25, 256]
    pool = PassivePorts((30000, 30019))  # nothing bound: the caps are arithmetic
    assert (pool.per_ip, pool.per_user) == (5, 5)
    pool = PassivePorts((30000, 30002), per_ip=10, per_user=1)  # never more than the pool
    assert (pool.per_ip, pool.per_user) == (3, 1)
    assert PassivePorts(limit=1024).per_ip == 256


async def test_pool_caps_each_address_and_user_and_counts_them_back() -> None:
    pool = PassivePorts(per_ip=2, per_user=3)
    a = pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="alice")
    b = pool.open("127.0.0.1", "::ffff:127.0.0.1", timeout=5, user="alice")  # the same host
    with pytest.raises(PassiveCapped):
        pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="bob")  # address at its cap
    c = pool.open("127.0.0.1", "127.0.0.2", timeout=5, user="alice")
    with pytest.raises(PassiveCapped):
        pool.open("127.0.0.1", "127.0.0.3", timeout=5, user="alice")  # user at its cap
    anonymous = [pool.open("127.0.0.1", "127.0.0.4", timeout=5) for _ in range(2)]
    d = pool.open("127.0.0.1", "127.0.0.3", timeout=5, user="bob")  # others are served
    assert pool.stats()["capped"] == 2 and pool.stats()["exhausted"] == 0 and len(pool) == 6
    waiting = asyncio.create_task(a.accept())
    await asyncio.sleep(0.01)
    a.close()  # counted back at once, while the cancelled accept() still holds the socket
    e = pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="alice")
    with pytest.raises(asyncio.CancelledError):
        await waiting
    b.close()
    b.close()  # idempotent: counted back once
    f = pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="bob")
    with pytest.raises(PassiveCapped):
        pool.open("127.0.0.1", "127.0.0.1", timeout=5, user="bob")
    pool.close_all()
    assert len(pool) == 0 and not pool._by_ip and not pool._by_user
    del c, d, e, f, anonymous


async def test_accept_only_the_control_peer_and_time_out() -> None:
    pool = PassivePorts()
    passive = pool.open("127.0.0.1", "127.0.0.2", timeout=0.5)  # expects another address
    loop = asyncio.get_running_loop()
    intruder = socket.socket()
    intruder.setblocking(False)
    accept = asyncio.create_task(passive.accept())
    await loop.sock_connect(intruder, ("127.0.0.1", passive.port))
    with pytest.raises(TimeoutError):
        await accept
    intruder.close()
    assert pool.stats()["rejected_peers"] == 1 and pool.stats()["timeouts"] == 1
    assert passive.closed and len(pool) == 0


async def test_accept_takes_the_peer_and_closing_cancels_a_wait() -> None:
    pool = PassivePorts()
    passive = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setblocking(False)
    accept = asyncio.create_task(passive.accept())
    await loop.sock_connect(client, ("127.0.0.1", passive.port))
    conn = await accept
    assert conn.getpeername() == client.getsockname()
    conn.close()
    client.close()
    waiting = pool.open("127.0.0.1", "127.0.0.1", timeout=5)
    task = asyncio.create_task(waiting.accept())
    await asyncio.sleep(0.01)
    waiting.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert waiting.closed and len(pool) == 0


def test_ftp_option_errors_are_positioned_in_the_file() -> None:
    text = (
        "listeners:\n"
        "  - name: ftp\n"
        "    protocol: ftp\n"
        "    bind: 127.0.0.1:0\n"
        "    options:\n"
        "      passive_ports: 9000-8000\n"
        "      permissions: [{path: pub, read: true}]\n"
        "      quota: lots\n"
        "      anonymus: true\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "f.yaml")
    issues = [str(i) for i in info.value.issues]
    assert issues[0].startswith("f.yaml:6:22: listeners[0].options.passive_ports:")
    assert issues[1].startswith("f.yaml:7:28: listeners[0].options.permissions[0].path:")
    assert issues[2].startswith("f.yaml:8:14: listeners[0].options.quota: expected a size")
    assert issues[3].startswith("f.yaml:9:7: listeners[0].options.anonymus:")
    assert len(issues) == 4


def test_ftp_refusal_is_421() -> None:
    handler = FtpHandler(FtpOptions(), Services("ftp", Path("."), structlog.get_logger()))
    assert handler.refusal() == b"421 Too many connections, try again later.\r\n"


def test_starttls_must_name_a_certificate() -> None:
    text = (
        "listeners:\n"
        "  - name: ftp\n"
        "    protocol: ftp\n"
        "    bind: 127.0.0.1:0\n"
        "    options: {starttls: nope}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "s.yaml")
    assert [str(i) for i in info.value.issues] == [
        "s.yaml:5:25: listeners[0].options.starttls: unknown certificate 'nope' "
        "(tls.certificates: none are defined)"
    ]


def test_workers_split_the_passive_range_without_overlap() -> None:
    from aionet.core.passive import worker_share

    for low, high, count in ((30000, 30100, 2), (50000, 50099, 3), (40000, 40006, 7)):
        shares = [worker_share((low, high), i, count) for i in range(count)]
        ports = [p for a, b in shares for p in range(a, b + 1)]
        assert sorted(ports) == list(range(low, high + 1))  # covered, no port twice
        assert all(a <= b for a, b in shares)
    assert worker_share((30000, 30100), 0, 1) == (30000, 30100)
    assert worker_share((0, 0), 1, 4) == (0, 0)  # ephemeral: the kernel keeps them apart
    with pytest.raises(ValueError, match="fewer ports than the 3 workers"):
        worker_share((30000, 30001), 0, 3)
