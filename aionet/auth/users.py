"""The user store: a YAML file of users with argon2id password hashes, roles and settings.

The file looks like this (``aionet users add|passwd|remove`` writes it; settings are edited by
hand)::

    users:
      alice:
        password_hash: $argon2id$v=19$m=65536,t=3,p=4$...
        roles: [admin, mail]
        settings: {home: /srv/ftp/alice, aliases: [postmaster@localhost]}

Reading goes through the positioned YAML reader (``config/source.py``), so every problem is
reported as ``FILE:LINE:COL`` (``ConfigError``), ``${VAR}`` interpolates like in
``aionet.yaml``, and unknown keys are errors.
A ``UserStore`` holds one immutable ``UserSnapshot`` at a time; ``reload()`` swaps it only when
the new file is valid. Writes take an advisory lock (a hidden ``.NAME.lock`` file beside the
store), re-read the file, change it and replace it atomically (temp file, fsync, ``os.replace``,
mode 0600). Rewriting drops YAML comments and bakes in ``${VAR}`` values: the file is
tool-managed.

Resource handling: ``verify_async`` runs argon2 in a small thread pool owned by the store (argon2
releases the GIL, and a bounded pool bounds the memory argon2 allocates per verification); call
``close()`` when the store is no longer used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from argon2 import Parameters, PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION

from ..errors import AionetError, ConfigError
from .usersfile import (
    Stamp,
    UserRecord,
    UsersFile,
    check_name,
    check_role,
    file_lock,
    parse_users,
    read_users,
    render_users,
    stamp_of,
    write_atomic,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

if sys.platform != "win32":
    pass

__all__ = [
    "UnknownUserError",
    "User",
    "UserRecord",
    "UserSnapshot",
    "UserStore",
    "UsersFile",
    "check_name",
    "check_role",
    "parse_users",
    "render_users",
    "write_atomic",
]

_T = TypeVar("_T")

#: Seconds ``UserStore.find`` answers a name it holds without checking the file again (removals
#: and changes count within this; additions at once).
KNOWN_RECHECK = 1.0

log = structlog.get_logger("aionet.auth")


class UnknownUserError(AionetError):
    """``passwd`` or ``remove`` named a user the store does not have."""


def _freeze(value: Any) -> Any:
    """A read-only deep copy: mappings become ``MappingProxyType``, lists become tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated identity, as handlers see it. Carries no password hash.

    Attributes:
        name: the user name.
        roles: the roles, in file order.
        settings: read-only per-user settings for handlers (``home`` for FTP, ``aliases`` for
            mail addresses, ...).
    """

    name: str
    roles: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=False
    )

    def has_role(self, *roles: str) -> bool:
        """True when the user has at least one of ``roles`` (False when none are given)."""
        return any(role in self.roles for role in roles)

    def setting(self, key: str, default: Any = None) -> Any:
        """The per-user setting ``key``, or ``default``."""
        return self.settings.get(key, default)


def _parameters_key(p: Parameters) -> tuple[object, ...]:
    """``Parameters`` is an unhashable dataclass: this is its hashable identity."""
    return (p.type, p.version, p.salt_len, p.hash_len, p.time_cost, p.memory_cost, p.parallelism)


def _most_common(params: list[Parameters]) -> Parameters | None:
    by_key = {_parameters_key(p): p for p in params}
    counts = Counter(_parameters_key(p) for p in params)
    return by_key[counts.most_common(1)[0][0]] if counts else None


class UserSnapshot:
    """One immutable reading of the users file: users by name, and their hashes.

    Iterating yields user names; ``snapshot[name]`` is a ``User``.
    """

    __slots__ = ("_hashes", "_users", "common_parameters", "file")

    def __init__(self, data: UsersFile) -> None:
        self.file = data
        self._users = MappingProxyType(
            {name: User(name, rec.roles, _freeze(rec.settings)) for name, rec in data.users.items()}
        )
        self._hashes = MappingProxyType({n: r.password_hash for n, r in data.users.items()})
        #: The argon2 parameters most users' hashes have (None for an empty store): the dummy
        #: hash an unknown user is checked against uses them, so both cost the same.
        params = [extract_parameters(h) for h in self._hashes.values()]
        self.common_parameters = _most_common(params)

    def __len__(self) -> int:
        return len(self._users)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._users))

    def __contains__(self, name: object) -> bool:
        return name in self._users

    def __getitem__(self, name: str) -> User:
        return self._users[name]

    def get(self, name: str) -> User | None:
        """The user called ``name``, or None."""
        return self._users.get(name)

    def password_hash(self, name: str) -> str | None:
        """The stored hash of ``name`` (never log it), or None."""
        return self._hashes.get(name)


def _parameters_of(hasher: PasswordHasher) -> Parameters:
    return Parameters(
        type=hasher.type,
        version=ARGON2_VERSION,
        salt_len=hasher.salt_len,
        hash_len=hasher.hash_len,
        time_cost=hasher.time_cost,
        memory_cost=hasher.memory_cost,
        parallelism=hasher.parallelism,
    )


class UserStore:
    """The users file, its current snapshot, and password checks against it.

    Args:
        path: the users file.
        snapshot: the current contents (``load`` reads it from ``path``).
        hasher: argon2 parameters for new hashes; argon2-cffi's defaults when None. Tests pass
            cheap ones, e.g. ``PasswordHasher(time_cost=1, memory_cost=8192)``.
        rehash_on_login: after a successful ``verify``, rewrite a hash whose parameters differ
            from ``hasher``'s (failures are logged, the login still succeeds).
        max_workers: threads ``verify_async`` runs argon2 on.
        watch: re-read the file when it changes, at each lookup (``refresh``); False keeps
            the snapshot until ``reload()``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        snapshot: UserSnapshot | None = None,
        *,
        hasher: PasswordHasher | None = None,
        rehash_on_login: bool = True,
        max_workers: int | None = None,
        stamp: Stamp | None = None,
        watch: bool = True,
    ) -> None:
        self.path = Path(path)
        self.watch = watch
        self._stamp = stamp  # of the file the snapshot was read from (None: not read)
        self._known_checked = float("-inf")  # when ``find`` last looked at the file
        self._bad_stamp: Stamp | None = None  # of a rewrite that did not load (logged once)
        self._refreshing = threading.Lock()
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self.rehash_on_login = rehash_on_login
        self._snapshot = snapshot if snapshot is not None else UserSnapshot(UsersFile())
        self._max_workers = max_workers or min(4, os.cpu_count() or 1)
        self._executor: ThreadPoolExecutor | None = None
        self._dummies: dict[tuple[object, ...], str] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        missing_ok: bool = False,
        hasher: PasswordHasher | None = None,
        rehash_on_login: bool = True,
        max_workers: int | None = None,
        watch: bool = True,
    ) -> UserStore:
        """Read ``path`` into a new store (an empty one if it is missing and ``missing_ok``).

        Raises:
            ConfigError: the file cannot be read or is invalid.
        """
        data, stamp = read_users(Path(path), missing_ok=missing_ok)
        return cls(
            path,
            UserSnapshot(data),
            hasher=hasher,
            rehash_on_login=rehash_on_login,
            max_workers=max_workers,
            stamp=stamp,
            watch=watch,
        )

    @property
    def snapshot(self) -> UserSnapshot:
        """The current immutable reading of the file."""
        return self._snapshot

    def reload(self) -> UserSnapshot:
        """Re-read the file and make it current.

        Raises:
            ConfigError: the file cannot be read or is invalid; the previous snapshot stays.
        """
        data, self._stamp = read_users(self.path, missing_ok=False)
        self._snapshot = UserSnapshot(data)
        return self._snapshot

    def refresh(self) -> bool:
        """Re-read the file if it was rewritten since it was read (its inode, size or mtime
        changed: Dovecot's rule for passwd-files), so ``aionet users add`` takes effect without
        a reload. One ``stat`` when nothing changed. A rewrite that does not load (corrupt,
        half-edited, writable by others) keeps the current users and is logged once; a missing
        file keeps them too. True when a new snapshot was made current.
        """
        if not self.watch:
            return False
        try:
            stamp = stamp_of(os.stat(self.path))
        except OSError:
            return False
        if stamp == self._stamp or stamp == self._bad_stamp:
            return False
        if not self._refreshing.acquire(blocking=False):
            return False  # another thread is re-reading it: this lookup uses the current one
        try:
            data, read_stamp = read_users(self.path, missing_ok=False)
        except ConfigError as exc:
            self._bad_stamp = stamp
            log.error(
                "users_file_invalid",
                path=str(self.path),
                kept=len(self._snapshot),
                errors=[str(i) for i in exc.issues],
            )
            return False
        finally:
            self._refreshing.release()
        self._snapshot, self._stamp = UserSnapshot(data), read_stamp
        log.info("users_file_reloaded", path=str(self.path), users=len(self._snapshot))
        return True

    def get(self, name: str) -> User | None:
        """The user called ``name``, or None; the file checked as ``find`` says."""
        found = self.find(name)
        return found[1] if found is not None else None

    def find(self, *names: str) -> tuple[str, User] | None:
        """The first of ``names`` that is a user, and that user; or None.

        When none of them is in the snapshot the file is checked first (``refresh``), so
        ``aionet users add`` counts at the next lookup; when one is, it is answered without
        another ``stat`` for ``KNOWN_RECHECK`` seconds after the last check — a mail's ``RCPT``
        asks once per message, and each ``stat`` hands the GIL to the delivery threads.
        ``verify`` (every login) always checks the file.
        """
        now = time.monotonic()
        if now - self._known_checked >= KNOWN_RECHECK:
            self._known_checked = now
            self.refresh()
            return self._first(names)
        found = self._first(names)
        if found is None and self.refresh():
            found = self._first(names)
        return found

    def _first(self, names: tuple[str, ...]) -> tuple[str, User] | None:
        snapshot = self._snapshot
        for name in names:
            user = snapshot.get(name)
            if user is not None:
                return name, user
        return None

    # -- verification -------------------------------------------------------------------------

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None. Blocks for one argon2 verification.

        An unknown name is checked against a dummy hash with the parameters most users have,
        so it costs the same as a wrong password (no user enumeration through timing).
        """
        self.refresh()
        snapshot = self._snapshot
        dummy = self._dummy_hash(snapshot.common_parameters)  # first call pays for either kind
        stored = snapshot.password_hash(name)
        if stored is None:
            self._matches(dummy, password)
            return None
        if not self._matches(stored, password):
            return None
        if self.rehash_on_login and self.hasher.check_needs_rehash(stored):
            self._upgrade_hash(name, password, stored)
        return snapshot.get(name)

    async def verify_async(self, name: str, password: str) -> User | None:
        """``verify`` on the store's thread pool, so a login does not block the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self.verify, name, password)

    def close(self) -> None:
        """Stop the verification threads (waits for running verifications)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self._max_workers, thread_name_prefix="aionet-argon2"
                )
            return self._executor

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy_hash(self, params: Parameters | None) -> str:
        params = params if params is not None else _parameters_of(self.hasher)
        key = _parameters_key(params)
        with self._lock:
            dummy = self._dummies.get(key)
        if dummy is None:
            dummy = PasswordHasher.from_parameters(params).hash(secrets.token_urlsafe(16))
            with self._lock:
                self._dummies[key] = dummy
        return dummy

    def _upgrade_hash(self, name: str, password: str, old_hash: str) -> None:
        def change(users: dict[str, UserRecord]) -> None:
            rec = users.get(name)
            if rec is not None and rec.password_hash == old_hash:  # unchanged since we read it
                users[name] = rec.model_copy(update={"password_hash": new_hash})

        new_hash = self.hasher.hash(password)
        try:
            self._modify(change)
        except (OSError, ConfigError) as exc:
            log.warning("auth_rehash_failed", user=name, error=str(exc))
        else:
            log.info("auth_rehashed", user=name)

    # -- changes (the CLI) --------------------------------------------------------------------

    def add(self, name: str, password: str, roles: tuple[str, ...] = ()) -> User:
        """Add ``name``, or replace its password and roles (its settings are kept).

        Raises:
            ValueError: the name or a role is invalid.
            ConfigError: the file on disk is invalid.
            OSError: the file cannot be written.
        """
        check_name(name)
        roles = tuple(dict.fromkeys(check_role(r) for r in roles))
        new_hash = self.hasher.hash(password)

        def change(users: dict[str, UserRecord]) -> None:
            old = users.get(name)
            settings = old.settings if old is not None else {}
            users[name] = UserRecord(password_hash=new_hash, roles=roles, settings=settings)

        self._modify(change)
        return self._snapshot[name]

    def set_password(self, name: str, password: str) -> User:
        """Give ``name`` a new password.

        Raises:
            UnknownUserError: there is no such user.
            ConfigError: the file on disk is invalid.
            OSError: the file cannot be written.
        """
        new_hash = self.hasher.hash(password)

        def change(users: dict[str, UserRecord]) -> None:
            users[name] = self._require(users, name).model_copy(update={"password_hash": new_hash})

        self._modify(change)
        return self._snapshot[name]

    def remove(self, name: str) -> None:
        """Delete ``name``.

        Raises:
            UnknownUserError: there is no such user.
            ConfigError: the file on disk is invalid.
            OSError: the file cannot be written.
        """

        def change(users: dict[str, UserRecord]) -> None:
            self._require(users, name)
            del users[name]

        self._modify(change)

    def _require(self, users: Mapping[str, UserRecord], name: str) -> UserRecord:
        rec = users.get(name)
        if rec is None:
            raise UnknownUserError(f"no user {name!r} in {self.path}")
        return rec

    def _modify(self, change: Callable[[dict[str, UserRecord]], _T]) -> _T:
        """Under the file lock: re-read the file, apply ``change``, write it, make it current."""
        with file_lock(self.path):
            users = dict(read_users(self.path, missing_ok=True)[0].users)
            result = change(users)
            data = UsersFile(users=users)
            write_atomic(self.path, render_users(data))
            self._snapshot = UserSnapshot(data)
            with contextlib.suppress(OSError):
                self._stamp = stamp_of(os.stat(self.path))
        return result
