"""From a config file to a checked ``Config``, one way: parse → validate → resolve → files.

``config/loader.py`` parses the file into a positioned ``Source`` and validates the models;
this module carries on with what needs the core: each listener's ``protocol:`` resolved to a
handler class and its ``options:`` validated by the handler's own model (kept on the listener
for the server, never validated again), bind collisions per transport, and — in
``preflight()``, the one pre-bind check that ``aionet check`` and ``aionet run`` share — every
file the server would load at start: certificates (and client CAs), the users file, and what
each handler's ``preflight()`` names (``static_dir``...). Every problem is reported at once as
``FILE:LINE:COL: key.path: message``.

What the check loads is what the server uses: ``preflight()`` returns a ``Checked`` (the
config, the TLS store with each listener's contexts, the user store), and ``aionet run`` hands
it to the ``Server``, which loads only what it was not given. A SIGHUP reload reads them anew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..auth.users import UserStore
from ..config.loader import (
    DEFAULT_CONFIG_NAME,
    certificate_names,
    listener_config,
    listener_items,
    read_source,
    source_from_dict,
    validate_source,
)
from ..config.source import Source, add_validation_issues, parse_config
from ..errors import ConfigError, RegistryError
from .registry import resolve, resolve_listener
from .tls import TlsError, TlsStore

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Mapping

    from ..config.models import Config, ListenerConfig

__all__ = [
    "Checked",
    "config_from_dict",
    "load_config",
    "load_config_text",
    "preflight",
    "resolve_config",
]

_WILDCARDS = {"0.0.0.0", "::", ""}
_Key = tuple[str, str, str, int | str]  # transport, family, host, port


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path`` (the embedded default when None): parse, validate, resolve handlers.

    Raises:
        ConfigError: the file cannot be read or is invalid; every issue, sorted by position.
    """
    return _checked(read_source(path))


def load_config_text(
    text: str, file: str = DEFAULT_CONFIG_NAME, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate YAML text. See ``load_config`` for errors."""
    return _checked(parse_config(text, file, environ))


def config_from_dict(data: Mapping[str, Any], file: str = "<dict>") -> Config:
    """Validate a config given as a Python mapping (tests, embedding). Errors have no marks."""
    return _checked(source_from_dict(data, file))


@dataclass(frozen=True)
class Checked:
    """What ``preflight`` checked and loaded, for the ``Server`` to use rather than load again.

    Attributes:
        config: the validated config (every listener's handler options resolved).
        tls: the certificates (``tls.certificates``), with the contexts of every listener's
            ``tls:`` built; None when the config names none.
        users: the user store (``auth.users_file``); None when the config names none.
    """

    config: Config
    tls: TlsStore | None = None
    users: UserStore | None = None

    def close(self) -> None:
        """Release what was loaded, for a caller that will not serve it (``aionet check``)."""
        if self.users is not None:
            self.users.close()


def preflight(
    path: str | os.PathLike[str] | None = None,
    *,
    before_files: Callable[[Config], None] | None = None,
) -> Checked:
    """Everything ``aionet run`` checks before it binds, and all ``aionet check`` does:
    ``load_config`` plus loading every file the server loads at start.

    ``before_files(config)`` is called once the config is valid, before any file is loaded:
    ``aionet run`` configures logging there, so that what loading logs (a users file others
    may read) goes where the config says.

    Raises:
        ConfigError: anything is wrong; a file that cannot be loaded is positioned at the key
            that names it (a broken users file at its own lines).
    """
    source = read_source(path)
    config = _checked(source)
    if before_files is not None:
        before_files(config)
    checked = check_files(source, config)
    try:
        source.raise_issues()
    except ConfigError:
        checked.close()
        raise
    return checked


def resolve_config(config: Config) -> None:
    """Resolve every listener of a ``Config`` built without the loader (kept on each listener).

    Raises:
        ConfigError: a protocol or options are invalid (without file positions).
    """
    source = Source(file="<config>", data={})
    for i, lc in enumerate(config.listeners):
        _resolve(source, i, lc)
    source.raise_issues()


def _checked(source: Source) -> Config:
    """Validate and resolve ``source`` (nothing is checked once the YAML itself is broken).

    Raises:
        ConfigError: every issue, sorted by position.
    """
    config = None
    if not source.issues:
        config = validate_source(source)
        _check_listeners(source, config)
    source.raise_issues()
    assert config is not None  # no issues: the models validated
    return config


# -- listeners ---------------------------------------------------------------------------------


def _check_listeners(source: Source, config: Config | None) -> None:
    certificates = certificate_names(source.data)
    taken: list[tuple[_Key, int]] = []
    for i, item in listener_items(source):
        listener = listener_config(config, i, item, source)
        if listener is None:
            _check_protocol_only(source, i, item)  # the rest was reported by the whole config
            continue
        resolved = _resolve(source, i, listener)
        if resolved is None:
            continue
        cls, options = resolved
        starttls = getattr(options, "starttls", None)  # the in-band upgrade's certificate
        if isinstance(starttls, str) and starttls not in certificates:
            known = ", ".join(certificates) or "none are defined"
            source.issue(
                ("listeners", i, "options", "starttls"),
                f"unknown certificate {starttls!r} (tls.certificates: {known})",
            )
        for transport in sorted(cls.transports()):
            key = _address_key(listener, transport)
            if key is None:
                continue
            clash = next((j for other, j in taken if _collides(other, key)), None)
            if clash is not None:
                source.issue(
                    ("listeners", i, "bind"),
                    f"{listener.bind} ({transport}) is already used by listeners[{clash}]",
                )
            else:
                taken.append((key, i))


def _resolve(source: Source, index: int, listener: ListenerConfig) -> Any:
    """``resolve_listener``, its failures added to ``source``: (class, options) or None."""
    try:
        return resolve_listener(listener)
    except RegistryError as exc:
        source.issue(("listeners", index, "protocol"), str(exc))
    except ValidationError as exc:
        options_model = _options_model(listener.protocol)
        add_validation_issues(source, exc, ("listeners", index, "options"), options_model)
    return None


def _options_model(protocol: str) -> Any:
    """The options class of ``protocol`` (it resolved, since its options were validated)."""
    try:
        return resolve(protocol).Options
    except RegistryError:
        return None


def _check_protocol_only(source: Source, index: int, item: Any) -> None:
    """Report an unknown protocol even on a listener whose other keys are invalid."""
    protocol = item.get("protocol") if isinstance(item, dict) else None
    if not isinstance(protocol, str) or not protocol:
        return
    try:
        resolve(protocol)
    except RegistryError as exc:
        source.issue(("listeners", index, "protocol"), str(exc))


def _address_key(listener: ListenerConfig, transport: str) -> _Key | None:
    bind = listener.bind
    if bind.kind == "unix":
        return (transport, "unix", bind.path, 0)
    if bind.port == 0:
        return None  # ephemeral ports never collide
    family = "6" if ":" in bind.host else "4"
    return (transport, family, bind.host, bind.port)


def _collides(a: _Key, b: _Key) -> bool:
    """Same transport, family and port, and the same host or a wildcard on either side."""
    if a[0] != b[0] or a[1] != b[1] or a[3] != b[3]:
        return False
    return a[2] == b[2] or a[2] in _WILDCARDS or b[2] in _WILDCARDS


# -- files -------------------------------------------------------------------------------------


def check_files(source: Source, config: Config) -> Checked:
    """Load every file the server loads at start; each failure becomes an issue of ``source``.
    Returns what loaded (a store whose files failed is None)."""
    store = _check_certificates(source, config)
    for i, lc in enumerate(config.listeners):
        if lc.tls is not None and store is not None:
            try:
                store.listener(lc.tls)  # client_ca; the store keeps it for the server
            except TlsError as exc:
                source.issue(("listeners", i, "tls"), str(exc))
        cls, options = resolve_listener(lc)
        for path, message in cls.preflight(options):
            source.issue(("listeners", i, "options", *path), message)
    return Checked(config, store, _check_users(source, config))


def _check_certificates(source: Source, config: Config) -> TlsStore | None:
    """The ``TlsStore`` of the certificates (None if one does not load: then each is loaded
    alone, to position the error at the entry that failed)."""
    certificates = config.tls.certificates
    if not certificates:
        return None
    try:
        return TlsStore(certificates)  # the usual case: everything loads, once
    except TlsError as exc:
        together = str(exc)
    before = len(source.issues)
    for i, cert in enumerate(certificates):
        try:
            TlsStore([cert])
        except TlsError as exc:
            source.issue(("tls", "certificates", i), str(exc))
    if len(source.issues) == before:  # each loads alone, not together
        source.issue(("tls", "certificates"), together)
    return None


def _check_users(source: Source, config: Config) -> UserStore | None:
    """The user store as the server loads it (None if there is none, or it does not load)."""
    users_file = config.auth.users_file
    if users_file is None:
        return None
    try:
        # The daemon never rewrites the operator's users file (no rehash on login).
        return UserStore.load(users_file, rehash_on_login=False)
    except ConfigError as exc:
        for issue in exc.issues:
            if issue.path == "" and issue.message.startswith("cannot read users file"):
                source.issue(("auth", "users_file"), issue.message)  # at the key naming it
            else:
                source.issues.append(issue)  # the users file's own FILE:LINE:COL
        return None
