"""The FTP jail, path by path, and the FTP options (no FTP session involved; the passive-port
pool they use is core: tests/unit/test_passive.py)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
import structlog

from aionet.core.handler import Services
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
