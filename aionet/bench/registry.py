"""Resolve ``aionet bench NAME`` to a ``Target`` class, lazily — the handler registry's rules.

1. built-in names (``BUILTIN``: name → ``"module:Class"``, imported only when used);
2. installed plugins' entry points in the group ``aionet.bench_targets``;
3. anything with a colon is a ``"package.module:Class"`` reference, imported directly.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ..core.registry import import_from_string
from ..errors import RegistryError
from .target import Target

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "available", "resolve"]

ENTRY_POINT_GROUP = "aionet.bench_targets"

BUILTIN: dict[str, str] = {
    "echo": "aionet.bench.clients.echo:EchoTarget",
    "udp": "aionet.bench.clients.udp:UdpTarget",
    "dns": "aionet.bench.clients.dns:DnsTarget",
    "http": "aionet.bench.clients.http:HttpTarget",
    "smtp": "aionet.bench.clients.smtp:SmtpTarget",
    "pop3": "aionet.bench.clients.pop3:Pop3Target",
    "imap": "aionet.bench.clients.imap:ImapTarget",
    "ws": "aionet.bench.clients.ws:WsTarget",
    "ftp": "aionet.bench.clients.ftp:FtpTarget",
}


def _check(obj: object, ref: str) -> type[Target]:
    if not (isinstance(obj, type) and issubclass(obj, Target)) or obj is Target:
        raise RegistryError(f"{ref!r} is not a bench target class (subclass aionet.bench.Target)")
    return obj


def available() -> list[str]:
    """Every target name usable without a ``module:Class`` reference."""
    return sorted({*BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def resolve(name: str) -> type[Target]:
    """The target class for ``name``.

    Raises:
        RegistryError: unknown name, import failure, or not a Target subclass.
    """
    if ":" in name:
        return _check(import_from_string(name), name)
    if name in BUILTIN:
        return _check(import_from_string(BUILTIN[name]), name)
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            obj = ep.load()
        except Exception as exc:
            raise RegistryError(
                f"bench target {name!r} ({ep.value}) failed to load: {exc!r}"
            ) from exc
        return _check(obj, f"{name} ({ep.value})")
    raise RegistryError(
        f"unknown bench target {name!r} (available: {', '.join(available())}; "
        "or use 'package.module:Class')"
    )
