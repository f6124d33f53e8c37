"""Resolve a listener's ``protocol:`` to a handler class, lazily.

Three sources, tried in this order:

1. names registered at runtime with ``@register("name")``;
2. built-in names (``BUILTIN``: name → ``"module:Class"``, imported only when used);
3. installed plugins' entry points in the group ``aionet.handlers``.

Anything with a colon is a ``"package.module:Class"`` reference and is imported directly.
Every failure raises ``RegistryError`` with a message precise enough to fix the YAML.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

from ..config.types import BASE_DIR
from ..errors import RegistryError
from .handler import DatagramHandler, Handler, ProtocolHandler, StreamHandler

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config.models import ListenerConfig
    from .handler import HandlerOptions

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "available",
    "import_callable_option",
    "import_from_string",
    "register",
    "resolve",
    "resolve_listener",
]

ENTRY_POINT_GROUP = "aionet.handlers"

BUILTIN: dict[str, str] = {
    "echo": "aionet.handlers.echo:EchoHandler",
    "udp-echo": "aionet.handlers.udp_echo:UdpEchoHandler",
    "http": "aionet.handlers.http:HttpHandler",
    "dns": "aionet.handlers.dns:DnsHandler",
    "admin": "aionet.handlers.admin:AdminHandler",
    "smtp": "aionet.handlers.smtp:SmtpHandler",
    "pop3": "aionet.handlers.pop3:Pop3Handler",
    "imap": "aionet.handlers.imap:ImapHandler",
    "ftp": "aionet.handlers.ftp:FtpHandler",
}

_registered: dict[str, type[Handler]] = {}

H = TypeVar("H", bound=type[Handler])


def register(name: str) -> Callable[[H], H]:
    """Class decorator: make a handler class available as ``protocol: name``."""

    def decorate(cls: H) -> H:
        _check_handler(cls, name)
        _registered[name] = cls
        return cls

    return decorate


def import_from_string(ref: str) -> object:
    """Import ``"package.module:attr.path"`` and return the attribute.

    Raises:
        RegistryError: malformed reference, missing module, or missing attribute.
    """
    module_name, sep, attrs = ref.partition(":")
    if not sep or not module_name or not attrs:
        raise RegistryError(f"{ref!r} must be in the form 'package.module:Class'")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise RegistryError(
                f"cannot import module {module_name!r}: no module named {exc.name!r} "
                "(references import from the config file's directory, each http listener's "
                "app_dir and installed packages: put it there, set app_dir, or pip install it)"
            ) from None
        raise RegistryError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise RegistryError(f"importing {module_name!r} failed: {exc!r}") from exc
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise RegistryError(f"module {module_name!r} has no attribute {attrs!r}") from None
    return obj


def import_callable_option(value: str) -> str:
    """``value``, once it imports as a callable (an options validator: ``on_message``, ``app``).

    Raises:
        ValueError: it does not import, or is not callable (pydantic reports it at the key).
    """
    try:
        obj = import_from_string(value)
    except RegistryError as exc:
        raise ValueError(str(exc)) from None
    if not callable(obj):
        raise ValueError(f"{value!r} is not callable")
    return value


def _check_handler(obj: object, ref: str) -> type[Handler]:
    if not (isinstance(obj, type) and issubclass(obj, Handler)) or obj in _ABSTRACT:
        raise RegistryError(
            f"{ref!r} is not a handler class (subclass StreamHandler, ProtocolHandler or "
            "DatagramHandler)"
        )
    return obj


_ABSTRACT = (Handler, StreamHandler, ProtocolHandler, DatagramHandler)


def _entry_point_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def available() -> list[str]:
    """Every protocol name that can be used without a ``module:Class`` reference."""
    return sorted({*_registered, *BUILTIN, *_entry_point_names()})


def resolve(protocol: str) -> type[Handler]:
    """The handler class for a ``protocol:`` value.

    Raises:
        RegistryError: unknown name, import failure, or not a handler class.
    """
    if ":" in protocol:
        return _check_handler(import_from_string(protocol), protocol)
    if protocol in _registered:
        return _registered[protocol]
    if protocol in BUILTIN:
        return _check_handler(import_from_string(BUILTIN[protocol]), protocol)
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=protocol):
        try:
            obj = ep.load()
        except Exception as exc:
            raise RegistryError(
                f"plugin {protocol!r} ({ep.value}) failed to load: {exc!r}"
            ) from exc
        return _check_handler(obj, f"{protocol} ({ep.value})")
    names = ", ".join(available())
    raise RegistryError(
        f"unknown protocol {protocol!r} (available: {names}; or use 'package.module:Class')"
    )


def resolve_listener(listener: ListenerConfig) -> tuple[type[Handler], HandlerOptions]:
    """The handler class for ``listener.protocol`` and its validated options.

    Validated once: the result is kept on ``listener`` (and on its ``model_copy``s), so the
    server builds its handler from what ``aionet check`` validated.

    Raises:
        RegistryError: the protocol cannot be resolved to a handler class.
        pydantic.ValidationError: the handler rejects ``listener.options``.
    """
    carried = listener._handler
    if carried is None:
        cls = resolve(listener.protocol)
        context = {BASE_DIR: listener._base_dir}  # its relative paths: the config file's
        carried = (cls, cls.Options.model_validate(listener.options, context=context))
        listener._handler = carried
    handler: tuple[type[Handler], HandlerOptions] = carried
    return handler
