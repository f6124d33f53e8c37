"""Read ``aionet.yaml`` into a ``Config``: the file (or the embedded default) → a positioned
``Source`` (``config/source.py``) → the config models, plus the checks that need no handler.

This module imports nothing from ``core/``. What needs a handler class — resolving
``protocol:``, validating ``options:``, bind collisions per transport — and the checks that
read files (certificates, the users file, handlers' own files) are the core's
(``core/preflight.py``), which carries on from ``validate_source``'s ``Source``.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import ConfigIssue
from .models import Config, ListenerConfig
from .source import Source, add_validation_issues, parse_config
from .types import BASE_DIR

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "certificate_names",
    "default_config_text",
    "import_dirs",
    "listener_config",
    "listener_items",
    "read_source",
    "source_from_dict",
    "validate_source",
]

DEFAULT_CONFIG_NAME = "<embedded default>"


def default_config_text() -> str:
    """The embedded default config (byte-identical to the repository's ``config/aionet.yaml``)."""
    return resources.files("aionet.config").joinpath("default.yaml").read_text(encoding="utf-8")


def read_source(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Source:
    """Parse ``path`` (the embedded default when None); an unreadable file is an issue."""
    if path is None:
        return parse_config(default_config_text(), DEFAULT_CONFIG_NAME, environ)
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        source = Source(file=name, data={})
        source.issues.append(ConfigIssue(name, 1, 1, "", f"cannot read config: {reason}"))
        return source
    source = parse_config(text, name, environ)
    source.base_dir = str(Path(path).resolve().parent)
    return source


def source_from_dict(data: Mapping[str, Any], file: str = "<dict>") -> Source:
    """A config given as a Python mapping (tests, embedding): a ``Source`` without marks."""
    return Source(file=file, data=dict(data))


def validate_source(source: Source) -> Config | None:
    """The ``Config`` of ``source``, or None; every problem is added to ``source.issues``.

    Checks the models (unknown keys, types, values), listener names and that each listener's
    ``tls:`` names a defined certificate.
    """
    config: Config | None = None
    _put_on_import_path(source)
    try:
        config = Config.model_validate(source.data, context=_context(source))
    except ValidationError as exc:
        add_validation_issues(source, exc, model=Config)
    _check_listeners(source, config)
    return config


def listener_items(source: Source) -> list[tuple[int, Any]]:
    """``(index, raw item)`` of every ``listeners:`` entry."""
    raw = source.data.get("listeners") if isinstance(source.data, dict) else None
    return list(enumerate(raw)) if isinstance(raw, list) else []


def import_dirs(source: Source) -> list[str]:
    """Where ``protocol: pkg.mod:Class``, ``app:`` and ``wsgi:`` references import from, besides
    installed packages: every ``http`` listener's ``app_dir`` (relative to the config file),
    then the config file's directory (the working directory for the embedded default and
    configs given as data)."""
    base = Path(source.base_dir) if source.base_dir is not None else Path.cwd()
    dirs: list[str] = []
    for _, item in listener_items(source):
        options = item.get("options") if isinstance(item, dict) else None
        app_dir = options.get("app_dir") if isinstance(options, dict) else None
        if isinstance(app_dir, str):
            dirs.append(str(base / Path(app_dir).expanduser()))
    dirs.append(str(base))
    return list(dict.fromkeys(os.path.abspath(d) for d in dirs))


def _put_on_import_path(source: Source) -> None:
    """``import_dirs`` at the front of ``sys.path``, all at once, before any listener is
    validated: what a reference imports does not depend on the order of the listeners."""
    for directory in reversed(import_dirs(source)):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def _context(source: Source) -> dict[str, Any]:
    """The validation context: relative paths resolve against the config file's directory."""
    return {BASE_DIR: source.base_dir}


def listener_config(
    config: Config | None, index: int, item: Any, source: Source | None = None
) -> ListenerConfig | None:
    """Listener ``index`` of ``config``; when the whole config is invalid, the raw ``item``
    validated alone (so one listener's problems are reported beside the others'), or None."""
    if config is not None:
        return config.listeners[index]
    try:
        return ListenerConfig.model_validate(
            item, context=None if source is None else _context(source)
        )
    except ValidationError:
        return None  # reported by the whole config


def _check_listeners(source: Source, config: Config | None) -> None:
    if config is not None and not config.listeners and source.base_dir is not None:
        # A config file that serves nothing is a mistake; a config built in code (tests,
        # embedding) may add its listeners later.
        source.issue(
            ("listeners",),
            "no listeners: the server would serve nothing (add one under listeners:, or run "
            "`aionet init DIR` for a config with every protocol)",
        )
    names: dict[str, int] = {}
    certificates = certificate_names(source.data)
    for i, item in listener_items(source):
        listener = listener_config(config, i, item, source)
        if listener is None:
            continue
        if listener.name in names:
            first = names[listener.name]
            source.issue(
                ("listeners", i, "name"),
                f"duplicate listener name {listener.name!r} (first used by listeners[{first}])",
            )
        else:
            names[listener.name] = i
        if listener.tls is not None:
            for name in listener.tls.certificates:
                if name not in certificates:
                    known = ", ".join(certificates) or "none are defined"
                    source.issue(
                        ("listeners", i, "tls"),
                        f"unknown certificate {name!r} (tls.certificates: {known})",
                    )


def certificate_names(data: Any) -> list[str]:
    """The names under ``tls.certificates`` of raw config data."""
    tls = data.get("tls") if isinstance(data, dict) else None
    certs = tls.get("certificates") if isinstance(tls, dict) else None
    if not isinstance(certs, list):
        return []
    return [c["name"] for c in certs if isinstance(c, dict) and isinstance(c.get("name"), str)]
