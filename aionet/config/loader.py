"""Load ``aionet.yaml``: compose YAML with marks, interpolate ``${VAR}``, validate, position errors.

The loader keeps the line and column of every key and value it reads, so that every problem —
a YAML syntax error, an unknown key, a wrong type, a handler option its handler rejects, two
listeners on one address — is reported as ``FILE:LINE:COL: key.path: message``, all at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError, ConfigIssue, RegistryError
from .models import Config, ListenerConfig

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ..core.handler import Handler, HandlerOptions

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "Source",
    "default_config_text",
    "load_config",
    "load_config_text",
    "parse_config",
    "resolve_listener",
]

DEFAULT_CONFIG_NAME = "<embedded default>"
Path_ = tuple[str | int, ...]

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WILDCARDS = {"0.0.0.0", "::", ""}


def default_config_text() -> str:
    """The embedded default config (byte-identical to the repository's ``config/aionet.yaml``)."""
    return resources.files("aionet.config").joinpath("default.yaml").read_text(encoding="utf-8")


@dataclass
class Source:
    """Plain data from a config file plus where each key and value stood in it."""

    file: str
    data: Any
    value_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)

    def issue(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        line, col = self.locate(path, at_key=at_key)
        self.issues.append(ConfigIssue(self.file, line, col, format_path(path), message))

    def locate(self, path: Path_, *, at_key: bool = False) -> tuple[int, int]:
        """The mark of ``path``, or of its nearest ancestor that exists in the file."""
        if at_key and path in self.key_marks:
            return self.key_marks[path]
        for n in range(len(path), -1, -1):
            if path[:n] in self.value_marks:
                return self.value_marks[path[:n]]
        return (1, 1)


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Builder:
    """Turns a composed YAML node tree into plain data, recording marks and interpolating."""

    def __init__(self, source: Source, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.source.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        value = self.constructor.construct_object(node, deep=True)
        if isinstance(value, str) and "$" in value:
            value = self._interpolate(value, path)
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | bool | float) or key is None:
                self.source.value_marks[(*path, "?")] = _mark(key_node)
                self.source.issue((*path, "?"), "keys must be plain scalars")
                continue
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if key in out:
                self.source.key_marks[child] = _mark(key_node)
                self.source.issue(child, "duplicate key", at_key=True)
                continue
            self.source.key_marks[child] = _mark(key_node)
            out[key] = self.build(value_node, child)
        return out

    def _interpolate(self, text: str, path: Path_) -> str:
        def replace(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                self.source.issue(path, f"environment variable {name} is not set")
                return ""
            return value

        return _VAR_RE.sub(replace, text)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def parse_config(text: str, file: str, environ: Mapping[str, str] | None = None) -> Source:
    """Compose ``text`` into a ``Source``; YAML syntax errors become issues, never exceptions."""
    source = Source(file=file, data={})
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        source.issues.append(ConfigIssue(file, line, col, "", f"YAML syntax error: {problem}"))
        return source
    except yaml.YAMLError as exc:
        source.issues.append(ConfigIssue(file, 1, 1, "", f"YAML error: {exc}"))
        return source
    if root is None:
        return source
    builder = _Builder(source, os.environ if environ is None else environ)
    try:
        data = builder.build(root, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        source.issues.append(ConfigIssue(file, line, col, "", str(exc.problem)))
        return source
    if not isinstance(data, dict):
        source.issue((), "the top level must be a mapping (server:, listeners:, ...)")
        return source
    source.data = data
    return source


def add_validation_issues(source: Source, exc: ValidationError, prefix: Path_ = ()) -> None:
    """Position each pydantic error at its key (unknown keys) or value (everything else)."""
    for err in exc.errors(include_url=False):
        path: Path_ = (*prefix, *err["loc"])
        if err["type"] == "extra_forbidden":
            source.issue(path, "unknown key", at_key=True)
            continue
        message = err["msg"]
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "missing":
            message = "required key is missing"
        source.issue(path, message)


def resolve_listener(listener: ListenerConfig) -> tuple[type[Handler], HandlerOptions]:
    """The handler class for ``listener.protocol`` and its validated options.

    Raises:
        RegistryError: the protocol cannot be resolved to a handler class.
        pydantic.ValidationError: the handler rejects ``listener.options``.
    """
    from ..core.registry import resolve  # the registry imports handler.py, which imports config

    cls = resolve(listener.protocol)
    return cls, cls.Options.model_validate(listener.options)


def _check_listeners(source: Source) -> None:
    raw = source.data.get("listeners")
    if not isinstance(raw, list):
        return
    names: dict[str, int] = {}
    certificates = _certificate_names(source.data)
    taken: list[tuple[str, str, str, int | str, int]] = []  # transport, family, host, port, index
    for i, item in enumerate(raw):
        try:
            listener = ListenerConfig.model_validate(item)
        except ValidationError:
            _check_protocol_only(source, i, item)  # the rest was reported by the whole config
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
        try:
            cls, options = resolve_listener(listener)
        except RegistryError as exc:
            source.issue(("listeners", i, "protocol"), str(exc))
            continue
        except ValidationError as exc:
            add_validation_issues(source, exc, ("listeners", i, "options"))
            continue
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
            clash = next((t[4] for t in taken if _collides(t[:4], key)), None)
            if clash is not None:
                source.issue(
                    ("listeners", i, "bind"),
                    f"{listener.bind} ({transport}) is already used by listeners[{clash}]",
                )
            else:
                taken.append((*key, i))


def _certificate_names(data: dict[str, Any]) -> list[str]:
    tls = data.get("tls")
    certs = tls.get("certificates") if isinstance(tls, dict) else None
    if not isinstance(certs, list):
        return []
    return [c["name"] for c in certs if isinstance(c, dict) and isinstance(c.get("name"), str)]


def _check_protocol_only(source: Source, index: int, item: Any) -> None:
    """Report an unknown protocol even on a listener whose other keys are invalid."""
    protocol = item.get("protocol") if isinstance(item, dict) else None
    if not isinstance(protocol, str) or not protocol:
        return
    from ..core.registry import resolve

    try:
        resolve(protocol)
    except RegistryError as exc:
        source.issue(("listeners", index, "protocol"), str(exc))


def _address_key(
    listener: ListenerConfig, transport: str
) -> tuple[str, str, str, int | str] | None:
    bind = listener.bind
    if bind.kind == "unix":
        return (transport, "unix", bind.path, 0)
    if bind.port == 0:
        return None  # ephemeral ports never collide
    family = "6" if ":" in bind.host else "4"
    return (transport, family, bind.host, bind.port)


def _collides(a: tuple[str, str, str, int | str], b: tuple[str, str, str, int | str]) -> bool:
    """Same transport, family and port, and the same host or a wildcard on either side."""
    if a[0] != b[0] or a[1] != b[1] or a[3] != b[3]:
        return False
    return a[2] == b[2] or a[2] in _WILDCARDS or b[2] in _WILDCARDS


def validate_source(source: Source) -> Config:
    """Validate composed data into a ``Config``, or raise ``ConfigError`` with every issue.

    Raises:
        ConfigError: anything is wrong; ``issues`` lists all of it, sorted by position.
    """
    config: Config | None = None
    if not source.issues:
        try:
            config = Config.model_validate(source.data)
        except ValidationError as exc:
            add_validation_issues(source, exc)
        _check_listeners(source)
    if source.issues or config is None:
        issues = sorted(source.issues, key=lambda i: (i.line, i.col))
        raise ConfigError(issues)
    return config


def load_config_text(
    text: str, file: str = DEFAULT_CONFIG_NAME, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate YAML text. See ``validate_source`` for errors."""
    return validate_source(parse_config(text, file, environ))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path``, or the embedded default when ``path`` is None.

    Raises:
        ConfigError: the file cannot be read or is invalid.
    """
    if path is None:
        return load_config_text(default_config_text())
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigIssue(name, 1, 1, "", f"cannot read config: {reason}")]) from None
    return load_config_text(text, name)


def config_from_dict(data: Mapping[str, Any], file: str = "<dict>") -> Config:
    """Validate a config given as a Python mapping (tests, embedding). Errors have no marks."""
    source = Source(file=file, data=dict(data))
    return validate_source(source)
