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
import re
import secrets
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import structlog
import yaml
from argon2 import Parameters, PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..config.source import Source, add_validation_issues, parse_config
from ..errors import AionetError, ConfigError, ConfigIssue
from ..storage.durable import replace_synced

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

if sys.platform != "win32":
    import fcntl

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

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_ROLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_MIN_SALT_LEN, _MIN_HASH_LEN = 8, 16
_FILE_MODE = 0o600
_HEADER = "# aionet user store, managed by `aionet users`; comments are not preserved.\n"
_T = TypeVar("_T")

log = structlog.get_logger("aionet.auth")


class UnknownUserError(AionetError):
    """``passwd`` or ``remove`` named a user the store does not have."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid user name.

    Raises:
        ValueError: it is not 1-64 characters of letters, digits and ``._@+-``, starting with a
            letter or digit.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid user name {name!r}: use 1-64 letters, digits and ._@+- "
            "(starting with a letter or digit)"
        )
    return name


def check_role(role: str) -> str:
    """Return ``role`` if it is a valid role name.

    Raises:
        ValueError: it is not 1-64 characters of letters, digits and ``._:-``.
    """
    if not _ROLE_RE.fullmatch(role):
        raise ValueError(
            f"invalid role {role!r}: use 1-64 letters, digits and ._:- "
            "(starting with a letter or digit)"
        )
    return role


def _check_argon2id(value: str) -> str:
    try:
        params = extract_parameters(value)
    except InvalidHashError:
        raise ValueError("not an argon2 hash (set it with `aionet users passwd`)") from None
    if params.type is not Type.ID:
        raise ValueError(f"argon2{params.type.name.lower()} hash: only argon2id is accepted")
    if params.salt_len < _MIN_SALT_LEN or params.hash_len < _MIN_HASH_LEN:
        raise ValueError("argon2id hash is truncated (salt or digest too short)")
    return value


UserName = Annotated[str, AfterValidator(check_name)]
RoleName = Annotated[str, AfterValidator(check_role)]
Argon2idHash = Annotated[str, AfterValidator(_check_argon2id)]


def _require_list(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of role names")  # not pydantic's "valid tuple"
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserRecord(_Model):
    """One user as written in the file."""

    password_hash: Argon2idHash
    roles: Annotated[tuple[RoleName, ...], BeforeValidator(_require_list)] = ()
    settings: dict[str, Any] = Field(default_factory=dict)


class UsersFile(_Model):
    """The whole users file: ``users:`` maps each name to its record."""

    users: dict[UserName, UserRecord] = Field(default_factory=dict)


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


def _check_names(source: Source) -> None:
    """Report invalid user names at their keys, and drop them so pydantic does not repeat it."""
    users = source.data.get("users") if isinstance(source.data, dict) else None
    if not isinstance(users, dict):
        return
    for name in list(users):
        try:
            check_name(name)
        except ValueError as exc:
            source.issue(("users", name), str(exc), at_key=True)
            del users[name]


def parse_users(text: str, file: str) -> UsersFile:
    """Validate users-file text.

    Raises:
        ConfigError: syntax error, unknown key, wrong type, bad name or role, a hash that is not
            argon2id; every issue positioned at ``FILE:LINE:COL``.
    """
    source = parse_config(text, file)
    data: UsersFile | None = None
    if not source.issues:
        _check_names(source)
        try:
            data = UsersFile.model_validate(source.data)
        except ValidationError as exc:
            add_validation_issues(source, exc)
    if source.issues or data is None:
        raise ConfigError(sorted(source.issues, key=lambda i: (i.line, i.col)))
    return data


def _read_users(path: Path, *, missing_ok: bool) -> UsersFile:
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        if missing_ok:
            return UsersFile()
        raise _unreadable(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _unreadable(path, reason) from None
    data = parse_users(text, str(path))  # a broken file's own errors come first
    _check_mode(path, mode)
    return data


def _check_mode(path: Path, mode: int) -> None:
    """As sshd treats keys: a users file others may write is refused (anyone on the host could
    add an admin); one that group or others may read or group may write is loaded with a
    warning (the hashes can be attacked offline)."""
    if mode & 0o002:
        raise _unreadable(path, f"writable by others (mode {mode & 0o777:04o}); chmod 600 it")
    if mode & 0o077:
        log.warning(
            "users_file_permissions",
            path=str(path),
            mode=f"{mode & 0o777:04o}",
            advice="readable or writable beyond its owner: chmod 600",
        )


def _unreadable(path: Path, reason: str) -> ConfigError:
    return ConfigError([ConfigIssue(str(path), 1, 1, "", f"cannot read users file: {reason}")])


def _escape(value: Any) -> Any:
    """Double ``$`` in strings the loader would interpolate, so they read back unchanged."""
    if isinstance(value, str):
        return value.replace("$", "$$") if "$$" in value or "${" in value else value
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape(v) for v in value]
    return value


def render_users(data: UsersFile) -> str:
    """The YAML text of ``data`` (what ``UserStore`` writes)."""
    users: dict[str, Any] = {}
    for name in sorted(data.users):
        rec = data.users[name]
        entry: dict[str, Any] = {"password_hash": rec.password_hash, "roles": list(rec.roles)}
        if rec.settings:
            entry["settings"] = _escape(rec.settings)
        users[name] = entry
    body = yaml.safe_dump({"users": users}, sort_keys=False, allow_unicode=True, width=200)
    return _HEADER + body


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: same-directory temp file, fsync, ``os.replace``, mode 0600.

    Raises:
        OSError: the file could not be written; ``path`` is left as it was.
    """
    replace_synced(path, text.encode("utf-8"), _FILE_MODE)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``.NAME.lock`` beside ``path`` (POSIX only)."""
    if sys.platform == "win32":  # pragma: no cover - aionet runs on POSIX
        yield
        return
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        snapshot: UserSnapshot | None = None,
        *,
        hasher: PasswordHasher | None = None,
        rehash_on_login: bool = True,
        max_workers: int | None = None,
    ) -> None:
        self.path = Path(path)
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
    ) -> UserStore:
        """Read ``path`` into a new store (an empty one if it is missing and ``missing_ok``).

        Raises:
            ConfigError: the file cannot be read or is invalid.
        """
        snapshot = UserSnapshot(_read_users(Path(path), missing_ok=missing_ok))
        return cls(
            path,
            snapshot,
            hasher=hasher,
            rehash_on_login=rehash_on_login,
            max_workers=max_workers,
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
        self._snapshot = UserSnapshot(_read_users(self.path, missing_ok=False))
        return self._snapshot

    def get(self, name: str) -> User | None:
        """The user called ``name`` in the current snapshot, or None."""
        return self._snapshot.get(name)

    # -- verification -------------------------------------------------------------------------

    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None. Blocks for one argon2 verification.

        An unknown name is checked against a dummy hash with the parameters most users have,
        so it costs the same as a wrong password (no user enumeration through timing).
        """
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
        with _file_lock(self.path):
            users = dict(_read_users(self.path, missing_ok=True).users)
            result = change(users)
            data = UsersFile(users=users)
            write_atomic(self.path, render_users(data))
            self._snapshot = UserSnapshot(data)
        return result
