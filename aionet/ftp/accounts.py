"""FTP accounts: the shared auth portal behind the FTP session's USER/PASS.

There is no FTP user list: ``PortalUserManager.authenticate`` asks the one ``Portal`` (the same
accounts as SMTP/POP3) and turns the aionet ``User`` into an ``FtpUser``: its jail root
(``base_path``), its per-path ``Permission`` list and an optional quota.

* root: ``data_dir/ftp/<name>``, or the user's ``settings.home`` (relative to ``data_dir``,
  or absolute); a home outside ``data_dir`` is refused unless ``homes_outside_data_dir``;
* permissions, nearest path wins: the rules of the user's roles (``roles: {ROLE: [...]}``),
  then the listener's ``permissions``, then ``/`` read-write;
* quota: ``settings.ftp_quota`` (bytes or ``10MiB``), else the listener's ``quota``;
* anonymous (``anonymous: true``; names ``anonymous`` and ``ftp``, any password): root
  ``data_dir/ftp/anonymous``, ``/`` read-only unless ``anonymous_permissions`` grant writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import structlog

from ..auth.portal import Credentials
from ..config.types import parse_size
from .jail import Jail

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ..auth.portal import Portal
    from ..auth.users import User

__all__ = ["ANONYMOUS_NAMES", "FtpUser", "PathRule", "Permission", "PortalUserManager"]

ANONYMOUS_NAMES = frozenset({"anonymous", "ftp"})

log = structlog.get_logger("aionet.ftp")


@dataclass(frozen=True, slots=True)
class Permission:
    """What a user may do under ``path`` (the nearest rule to a path wins)."""

    path: PurePosixPath
    readable: bool = True
    writable: bool = True

    def is_parent(self, other: PurePosixPath) -> bool:
        """Whether ``other`` is ``path`` or below it."""
        return other.is_relative_to(self.path)


_NO_ACCESS = Permission(PurePosixPath("/"), readable=False, writable=False)


class PathRule:
    """``{path: /pub, read: true, write: false}`` from the options, as plain values."""

    __slots__ = ("path", "read", "write")

    def __init__(self, path: str, read: bool, write: bool) -> None:
        self.path = path
        self.read = read
        self.write = write

    def permission(self) -> Permission:
        return Permission(PurePosixPath(self.path), readable=self.read, writable=self.write)


@dataclass(slots=True, eq=False)
class FtpUser:
    """One FTP login: the name given, the peer, and once authenticated the portal's user,
    the jail root, the permission rules and the quota."""

    login: str
    peer_ip: str | None
    account: User | None = None
    anonymous: bool = False
    base_path: Path | None = None
    jail: Jail | None = None
    permissions: list[Permission] = field(default_factory=list)
    quota: int | None = None


class PortalUserManager:
    """USER/PASS on top of the shared ``Portal``."""

    def __init__(
        self,
        portal: Portal | None,
        data_dir: Path,
        *,
        permissions: Iterable[PathRule] = (),
        roles: Mapping[str, Iterable[PathRule]] | None = None,
        anonymous: bool = False,
        anonymous_permissions: Iterable[PathRule] = (),
        quota: int | None = None,
        homes_outside_data_dir: bool = False,
    ) -> None:
        self.portal = portal
        self.data_dir = Path(data_dir).resolve()
        self.permissions = [r.permission() for r in permissions]
        self.roles = {
            role: [r.permission() for r in rules] for role, rules in (roles or {}).items()
        }
        self.anonymous = anonymous
        self.anonymous_permissions = [r.permission() for r in anonymous_permissions]
        self.quota = quota
        self.homes_outside_data_dir = homes_outside_data_dir

    def user_for(self, login: str, peer_ip: str | None) -> FtpUser:
        return FtpUser(login, peer_ip)

    def password_prompt(self, login: str) -> str:
        """USER's 331 text: every name needs a password (no user enumeration); anonymous
        takes any."""
        if login.lower() in ANONYMOUS_NAMES and self.anonymous:
            return "Please specify the password (any, e.g. your e-mail address)."
        return "Please specify the password."

    async def authenticate(self, user: FtpUser, password: str) -> bool:
        login = user.login
        if login.lower() in ANONYMOUS_NAMES and self.anonymous:
            self._bind_anonymous(user)
            return True
        if self.portal is None:
            return False
        account = await self.portal.authenticate(Credentials(login, password), "ftp", user.peer_ip)
        if account is None:
            return False
        try:
            self._bind(user, account)
        except ValueError as exc:
            log.error("ftp_home_refused", user=account.name, reason=str(exc))
            return False
        return True

    def _root(self, account: User) -> Path:
        home = account.setting("home")
        if home is None:
            return self.data_dir / "ftp" / account.name
        path = Path(str(home))
        if not path.is_absolute():
            path = self.data_dir / path
        path = path.resolve()
        if not self.homes_outside_data_dir and not path.is_relative_to(self.data_dir):
            raise ValueError(f"home {path} is outside data_dir {self.data_dir}")
        return path

    def _bind(self, user: FtpUser, account: User) -> None:
        root = self._root(account)
        root.mkdir(parents=True, exist_ok=True)
        user.account = account
        user.base_path = root
        user.jail = Jail.at(root)
        rules: list[Permission] = []
        for role in account.roles:
            rules.extend(self.roles.get(role, ()))
        rules.extend(self.permissions)
        rules.append(Permission(PurePosixPath("/"), readable=True, writable=True))
        user.permissions = rules
        quota: Any = account.setting("ftp_quota", self.quota)
        user.quota = None if quota is None else parse_size(quota)

    def _bind_anonymous(self, user: FtpUser) -> None:
        root = self.data_dir / "ftp" / "anonymous"
        root.mkdir(parents=True, exist_ok=True)
        user.anonymous = True
        user.base_path = root
        user.jail = Jail.at(root)
        user.permissions = [
            *self.anonymous_permissions,
            Permission(PurePosixPath("/"), readable=True, writable=False),
        ]
        user.quota = self.quota


def permission_of(user: FtpUser, virtual: PurePosixPath) -> Permission:
    """The nearest rule for ``virtual`` (no rule: no access)."""
    best: Permission | None = None
    best_depth = 1 << 30
    for perm in user.permissions:
        if perm.is_parent(virtual):
            depth = len(virtual.relative_to(perm.path).parts)
            if depth < best_depth:
                best, best_depth = perm, depth
    return best if best is not None else _NO_ACCESS
