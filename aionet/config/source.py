"""The positioned YAML reader: compose YAML with marks, interpolate ``${VAR}``, position issues.

A leaf module (it imports nothing else of aionet but ``errors``): the config loader and the users
store both read their files through it, so every problem is reported as
``FILE:LINE:COL: key.path: message``.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from pydantic import ValidationError

__all__ = [
    "Path_",
    "Source",
    "add_validation_issues",
    "format_path",
    "parse_config",
]

Path_ = tuple[str | int, ...]

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Source:
    """Plain data from a config file plus where each key and value stood in it."""

    file: str
    data: Any
    #: The directory relative paths in it resolve against (None: the working directory).
    base_dir: str | None = None
    value_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)

    def issue(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        line, col = self.locate(path, at_key=at_key)
        self.issues.append(ConfigIssue(self.file, line, col, format_path(path), message))

    def raise_issues(self) -> None:
        """Raise ``ConfigError`` with every issue, sorted by position, if there are any.

        Raises:
            ConfigError: ``issues`` is not empty.
        """
        if self.issues:
            raise ConfigError(sorted(self.issues, key=lambda i: (i.line, i.col)))

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


def add_validation_issues(
    source: Source, exc: ValidationError, prefix: Path_ = (), model: Any = None
) -> None:
    """Position each pydantic error at its key (unknown keys) or value (everything else).

    With the validated ``model`` class, an unknown key gets the nearest known one suggested
    (``unknown key (did you mean 'users_file'?)``).
    """
    for err in exc.errors(include_url=False):
        path: Path_ = (*prefix, *err["loc"])
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(model, err["loc"]) if model is not None else None
            source.issue(path, "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""),
                         at_key=True)  # fmt: skip
            continue
        message = err["msg"]
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "missing":
            message = "required key is missing"
        source.issue(path, message)


def _did_you_mean(model: Any, loc: tuple[str | int, ...]) -> str | None:
    """The known key of ``model`` at ``loc`` nearest to its last part, if one is close."""
    key = loc[-1] if loc else None
    known = _fields_at(model, loc[:-1])
    if not isinstance(key, str) or not known:
        return None
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _fields_at(model: Any, loc: tuple[str | int, ...]) -> list[str] | None:
    """The field names of the model found by following ``loc`` from ``model``'s fields
    (through optional values, lists, tuples and dict values), or None."""
    current: Any = model
    parts = list(loc)
    while True:
        current = _unwrap(current)
        fields = getattr(current, "model_fields", None)
        if not parts:
            return list(fields) if isinstance(fields, dict) else None
        part = parts.pop(0)
        if isinstance(fields, dict):
            if part not in fields:
                return None
            current = fields[part].annotation
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin in (list, tuple) and args and isinstance(part, int):
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None


def _unwrap(tp: Any) -> Any:
    """``X`` out of ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if hasattr(_unwrap(a), "model_fields")]
            tp = (models or args)[0]
        else:
            return tp
