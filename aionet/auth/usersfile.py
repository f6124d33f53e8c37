"""The users file's format and its safe reading and writing (the store is ``auth.users``).

``UsersFile``/``UserRecord`` are the schema; ``parse_users`` validates text with every problem
at ``FILE:LINE:COL``; ``read_users`` also returns the file's ``Stamp`` (inode, size, mtime), by
which the daemon's store notices a rewrite; ``render_users`` and ``write_atomic`` write it
(temp file, fsync, ``os.replace``, mode 0600) under ``file_lock`` (an advisory lock beside it).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import structlog
import yaml
from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..config.source import Source, add_validation_issues, parse_config
from ..errors import ConfigError, ConfigIssue
from ..storage.durable import replace_synced

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

if sys.platform != "win32":
    import fcntl

__all__ = [
    "Stamp",
    "UserRecord",
    "UsersFile",
    "check_name",
    "check_role",
    "file_lock",
    "parse_users",
    "read_users",
    "render_users",
    "stamp_of",
    "write_atomic",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_ROLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_MIN_SALT_LEN, _MIN_HASH_LEN = 8, 16
_FILE_MODE = 0o600
_HEADER = "# aionet user store, managed by `aionet users`; comments are not preserved.\n"

log = structlog.get_logger("aionet.auth")


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
            add_validation_issues(source, exc, model=UsersFile)
    if source.issues or data is None:
        raise ConfigError(sorted(source.issues, key=lambda i: (i.line, i.col)))
    return data


class Stamp(NamedTuple):
    """What changes when the file is rewritten: its inode, size and modification time."""

    inode: int
    size: int
    mtime_ns: int


def stamp_of(st: os.stat_result) -> Stamp:
    return Stamp(st.st_ino, st.st_size, st.st_mtime_ns)


def read_users(path: Path, *, missing_ok: bool) -> tuple[UsersFile, Stamp | None]:
    """The file's contents and stamp (an empty file and None when missing and ``missing_ok``).

    Raises:
        ConfigError: the file cannot be read, is invalid, or is writable by others.
    """
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        if missing_ok:
            return UsersFile(), None
        raise _unreadable(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _unreadable(path, reason) from None
    data = parse_users(text, str(path))  # a broken file's own errors come first
    _check_mode(path, st.st_mode)
    return data, stamp_of(st)


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
def file_lock(path: Path) -> Iterator[None]:
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
