"""Value types used in the YAML: durations, sizes and bind addresses.

Each is an ``Annotated`` type whose validator accepts the human spelling (``250ms``, ``64KiB``,
``[::1]:8080``) and produces a plain value (float seconds, int bytes, a frozen ``BindAddress``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, ValidationInfo

__all__ = [
    "BASE_DIR",
    "BindAddr",
    "BindAddress",
    "ConfigPath",
    "Duration",
    "Size",
    "parse_bind",
    "parse_duration",
    "parse_size",
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_duration(value: object) -> float:
    """``"250ms"`` → 0.25, ``"5m"`` → 300.0; a bare number is seconds.

    Raises:
        ValueError: the value is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like 250ms, 10s, 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a duration like 250ms, 10s, 5m; got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: object) -> int:
    """``"64KiB"`` → 65536, ``"10MB"`` → 10000000; a bare number is bytes.

    Raises:
        ValueError: the value is not a non-negative size.
    """
    if isinstance(value, bool):
        raise ValueError("expected a size like 64KiB or 10MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        unit = (m.group(2) or "b").lower()
        size = int(float(m.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"expected a size like 64KiB or 10MiB; got {value!r}")
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


@dataclass(frozen=True, slots=True)
class BindAddress:
    """Where a listener binds: ``kind`` is ``inet`` (host, port) or ``unix`` (path)."""

    kind: Literal["inet", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_bind(value: object) -> BindAddress:
    """Parse ``host:port``, ``[v6]:port`` or ``unix:/path``.

    Raises:
        ValueError: the string is none of those forms, or the port is out of range.
    """
    if isinstance(value, BindAddress):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected host:port, [v6]:port or unix:/path")
    text = value.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError("unix: needs a socket path, e.g. unix:/run/aionet.sock")
        return BindAddress("unix", path=path)
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [v6]:port; got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected host:port; got {text!r}")
        if ":" in host:
            raise ValueError(f"write IPv6 addresses in brackets: [{host}]:{port_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535; got {port_text!r}")
    return BindAddress("inet", host=host, port=int(port_text))


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(lambda v: f"{v}s", return_type=str)
]
Size = Annotated[int, BeforeValidator(parse_size)]
BindAddr = Annotated[
    BindAddress, BeforeValidator(parse_bind), PlainSerializer(str, return_type=str)
]


#: The validation context key naming the directory relative paths resolve against.
BASE_DIR = "base_dir"


def _against_base(value: Path, info: ValidationInfo) -> Path:
    """A relative path resolved against the config file's directory, as nginx, Postfix and
    Caddy resolve theirs (``~`` expanded first); unchanged when the config has no file (the
    embedded default and configs given as dicts: relative to the working directory)."""
    value = value.expanduser()
    base = info.context.get(BASE_DIR) if isinstance(info.context, dict) else None
    if base is None or value.is_absolute():
        return value
    return Path(base) / value


#: A file or directory named in the config: relative to the config file's directory.
ConfigPath = Annotated[Path, AfterValidator(_against_base)]
