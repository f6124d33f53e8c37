"""Process identity for the daemon: the root policy, the privilege drop and the pid file.

Only ``aionet run`` uses this module (never an in-process Server in tests). The order is:

1. ``Daemon.prepare(config)`` before the event loop: resolve ``server.user``/``server.group``,
   apply the root policy, refuse a pid file that names a live aionet, note whether
   ``data_dir`` exists yet. Problems raise ``PrivilegeError`` (exit 2) or ``StartupError``.
2. ``Daemon.after_bind()``, which ``Server.start()`` calls once every listener is bound and
   before any handler starts: write the pid file, chown a ``data_dir`` we created, then drop
   to the user (supplementary groups, then gid, then uid) and verify root cannot be regained.
3. ``Daemon.cleanup()`` at exit: remove the pid file if it is still ours.

Root policy: as root, aionet serves only if ``server.user`` is set (it drops to it) or
``server.allow_root: true`` (or ``--allow-root`` / ``AIONET_ALLOW_ROOT=1``) says root is
intended; otherwise it refuses before binding anything.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from ..errors import AionetError, StartupError

if TYPE_CHECKING:
    from ..config.models import Config

__all__ = ["Daemon", "Identity", "PidFile", "PrivilegeError", "drop_privileges", "resolve"]

_log = structlog.get_logger("aionet.server")


class PrivilegeError(AionetError):
    """The configured identity cannot be honoured (unknown user, root refused...): exit 2."""


@dataclass(frozen=True)
class Identity:
    """The account to run as: ``uid``, primary ``gid``, and the supplementary ``groups``."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _user(user: str | int) -> tuple[str, int, int | None]:
    """(name, uid, primary gid or None) of a user name or numeric id."""
    if isinstance(user, str):
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            if not user.isdigit():
                raise PrivilegeError(f"server.user: no such user {user!r}") from None
            user = int(user)
        else:
            return pw.pw_name, pw.pw_uid, pw.pw_gid
    try:
        pw = pwd.getpwuid(user)
    except KeyError:
        return str(user), user, None  # a bare uid (containers): fine, but needs a group
    return pw.pw_name, pw.pw_uid, pw.pw_gid


def _group(group: str | int) -> int:
    if isinstance(group, str):
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            if not group.isdigit():
                raise PrivilegeError(f"server.group: no such group {group!r}") from None
            return int(group)
    return group


def resolve(user: str | int, group: str | int | None = None) -> Identity:
    """The identity ``server.user``/``server.group`` name (PrivilegeError if unknown)."""
    name, uid, primary = _user(user)
    gid = _group(group) if group is not None else primary
    if gid is None:
        raise PrivilegeError(
            f"server.user: uid {uid} has no passwd entry; set server.group as well"
        )
    if uid == 0 or gid == 0:
        raise PrivilegeError(
            "server.user/server.group: switching to uid or gid 0 drops nothing; "
            "remove them and set server.allow_root: true if root is intended"
        )
    try:
        pw_name = pwd.getpwuid(uid).pw_name
    except KeyError:
        groups: tuple[int, ...] = (gid,)
    else:
        groups = tuple(sorted({gid, *os.getgrouplist(pw_name, gid)}))
    return Identity(name, uid, gid, groups)


def drop_privileges(identity: Identity) -> None:
    """Become ``identity`` for good: supplementary groups, then gid, then uid (real, effective
    and saved), then check that root cannot be regained.

    Raises:
        StartupError: a step failed or root could be regained (the caller must not serve).
    """
    try:
        os.setgroups(list(identity.groups))
        os.setresgid(identity.gid, identity.gid, identity.gid)
        os.setresuid(identity.uid, identity.uid, identity.uid)
    except OSError as exc:
        raise StartupError(f"cannot switch to user {identity.name!r}: {exc.strerror}") from None
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - only a broken kernel or a capability leak gets here
        raise StartupError(f"switched to {identity.name!r} but could still regain root")
    uids, gids = os.getresuid(), os.getresgid()
    if set(uids) != {identity.uid} or set(gids) != {identity.gid} or 0 in os.getgroups():
        raise StartupError(  # pragma: no cover - defensive
            f"switched to {identity.name!r} but ids are uid={uids} gid={gids}"
        )


class PidFile:
    """``server.pid_file``: refused if it names a live aionet, written atomically, removed at
    exit if still ours. A file naming a dead process, this very process (a container's pid 1
    again), a process that is not aionet (a pid reused after a reboot) or garbage is stale and
    replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stale: int | str | None = None
        self.written = False

    def check(self) -> None:
        """StartupError if the file names a running aionet; remember a stale one."""
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return
        except OSError as exc:
            msg = f"server.pid_file: cannot read {self.path}: {exc.strerror}"
            raise StartupError(msg) from None
        try:
            pid = int(text)
        except ValueError:
            self.stale = text[:40]
            return
        if pid > 0 and pid != os.getpid() and _is_aionet(pid):
            raise StartupError(
                f"server.pid_file: {self.path} names running process {pid}; "
                "is aionet already running? (remove the file if it is not)"
            )
        self.stale = pid

    def write(self) -> None:
        """Write our pid atomically (a temporary file renamed over the path)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(f"{os.getpid()}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            msg = f"server.pid_file: cannot write {self.path}: {exc.strerror}"
            raise StartupError(msg) from None
        self.written = True
        if self.stale is not None:
            _log.warning("pid_file_stale_replaced", path=str(self.path), stale=self.stale)

    def remove(self) -> None:
        """Remove the file if it still holds our pid (a later instance may own it now)."""
        if not self.written:
            return
        self.written = False
        try:
            if self.path.read_text().strip() != str(os.getpid()):
                return
            self.path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:  # e.g. a root-owned directory after the privilege drop
            _log.warning("pid_file_not_removed", path=str(self.path), error=exc.strerror)


def _is_aionet(pid: int) -> bool:
    """Whether ``pid`` is a live process that looks like aionet (alive, if /proc cannot tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc at all: trust kill(0)
    except OSError:
        return True
    return b"aionet" in cmdline


class Daemon:
    """The process-identity side of ``aionet run`` (see the module docstring)."""

    def __init__(self, config: Config, identity: Identity | None, as_root: bool) -> None:
        self.config = config
        self.identity = identity
        self.as_root = as_root
        server = config.server
        self.pid_file = PidFile(server.pid_file) if server.pid_file is not None else None
        self.data_dir = Path(server.data_dir)
        self.data_dir_existed = self.data_dir.exists()

    @classmethod
    def prepare(cls, config: Config, *, allow_root: bool = False) -> Daemon:
        """Check identity and pid file before anything binds.

        Raises:
            PrivilegeError: unknown user/group; root without ``user`` or ``allow_root``;
                ``user`` set but not started as root (and not already that user).
            StartupError: the pid file names a running aionet.
        """
        server = config.server
        euid = os.geteuid()
        identity = resolve(server.user, server.group) if server.user is not None else None
        if identity is not None and euid != 0:
            if (os.getuid(), os.getgid()) != (identity.uid, identity.gid):
                raise PrivilegeError(
                    f"server.user: switching to {identity.name!r} needs root, but aionet runs "
                    f"as uid {euid} (start it as root, or remove server.user)"
                )
            identity = None  # already that user: nothing to drop
        if euid == 0 and identity is None and not (server.allow_root or allow_root):
            raise PrivilegeError(
                "refusing to serve as root: set server.user (and server.group) to drop "
                "privileges after binding, or set server.allow_root: true (or run with "
                "--allow-root) if root is intended"
            )
        daemon = cls(config, identity, euid == 0)
        if daemon.pid_file is not None:
            daemon.pid_file.check()
        return daemon

    def after_bind(self) -> None:
        """Every listener is bound: write the pid file, chown a ``data_dir`` we created, drop."""
        if self.pid_file is not None:
            self.pid_file.write()
        identity = self.identity
        if identity is None:
            if self.as_root:
                _log.warning("running_as_root", hint="set server.user to drop privileges")
            return
        if not self.data_dir_existed:
            os.chown(self.data_dir, identity.uid, identity.gid)
        drop_privileges(identity)
        _log.info(
            "privileges_dropped",
            user=identity.name,
            uid=identity.uid,
            gid=identity.gid,
            groups=list(identity.groups),
        )
        if not os.access(self.data_dir, os.W_OK | os.X_OK):
            _log.warning("data_dir_not_writable", path=str(self.data_dir), user=identity.name)

    def cleanup(self) -> None:
        if self.pid_file is not None:
            self.pid_file.remove()
