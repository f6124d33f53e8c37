"""The configuration schema: frozen pydantic models, unknown keys rejected.

Every section a user writes in ``aionet.yaml`` is a model here. Handler options are not: each
handler validates its own ``options:`` with its ``Options`` model (see ``core/handler.py``), and
``config/loader.py`` positions those errors in the file too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..core.acl import AccessConfig, parse_networks
from .types import BASE_DIR, BindAddr, ConfigPath, Duration

__all__ = [
    "AuthConfig",
    "CertificateConfig",
    "Config",
    "Limits",
    "ListenerConfig",
    "ListenerTlsConfig",
    "LoggingConfig",
    "ServerConfig",
    "ThrottleConfig",
    "TlsConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Model):
    """Connection limits. At server level they apply to the whole process; on a listener, to it.

    ``None`` means no limit (a listener without its own ``idle_timeout`` uses the server's).
    """

    max_connections: int | None = Field(default=None, ge=1)
    max_connections_per_ip: int | None = Field(default=None, ge=1)
    idle_timeout: Duration | None = None


class ServerLimits(Limits):
    """Process-wide limits; a partial ``limits:`` block keeps the defaults it does not name."""

    max_connections: int | None = Field(default=10000, ge=1)
    max_connections_per_ip: int | None = Field(default=256, ge=1)
    idle_timeout: Duration | None = 300.0


class ServerConfig(_Model):
    """The ``server:`` section.

    ``user``/``group`` (names or numeric ids): started as root, the daemon binds every
    listener, then switches to them before any handler runs. ``allow_root`` permits serving
    as root without ``user``. ``pid_file`` is written after the binds and removed at exit.
    """

    data_dir: ConfigPath = Path("./var")
    workers: int = Field(default=1, ge=1)
    shutdown_timeout: Duration = 10.0
    limits: ServerLimits = ServerLimits()
    user: str | int | None = None
    group: str | int | None = None
    allow_root: bool = False
    pid_file: ConfigPath | None = None

    @field_validator("user", "group")
    @classmethod
    def _account(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("a numeric id must not be negative")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _group_needs_user(self) -> Self:
        if self.group is not None and self.user is None:
            raise ValueError("server.group needs server.user (the account to switch to)")
        return self


class LoggingConfig(_Model):
    format: Literal["auto", "console", "json"] = "auto"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"


class CertificateConfig(_Model):
    name: str = Field(min_length=1)
    cert: ConfigPath
    key: ConfigPath
    chain: ConfigPath | None = None
    password: str | None = None


class ListenerTlsConfig(_Model):
    """A listener's ``tls:`` block (``tls: NAME`` is short for ``{certificates: [NAME]}``)."""

    certificates: tuple[str, ...] = Field(min_length=1)
    client_ca: ConfigPath | None = None
    verify: Literal["none", "optional", "required"] = "none"
    alpn: tuple[str, ...] = ()
    handshake_timeout: Duration = 10.0


class TlsConfig(_Model):
    certificates: tuple[CertificateConfig, ...] = ()


_MAX_EXPONENT = 62


class ThrottleConfig(BaseModel):
    """Failure throttling thresholds. Durations accept ``250ms``, ``10s``, ``5m``.

    Attributes:
        max_failures: failures within ``window`` that start a lock-out.
        window: how long a failure counts.
        lockout: how long a lock-out lasts.
        base_delay: the first non-zero reply delay; each further failure doubles it.
        max_delay: the cap of the reply delay; also the delay of a locked-out attempt.
        free_failures: failures answered without delay.
        max_entries: the most keys each table (networks, names) holds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_failures: int = Field(default=5, ge=1)
    window: Duration = 300.0
    lockout: Duration = 900.0
    base_delay: Duration = 0.5
    max_delay: Duration = 8.0
    free_failures: int = Field(default=2, ge=0)
    max_entries: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _delays_ordered(self) -> Self:
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must not be less than base_delay")
        return self

    def delay(self, failures: int) -> float:
        """The reply delay after ``failures`` failures within the window."""
        if failures <= self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures - 1, _MAX_EXPONENT)
        return float(min(self.max_delay, self.base_delay * 2**exponent))


class AuthConfig(_Model):
    users_file: ConfigPath | None = None
    throttle: ThrottleConfig = ThrottleConfig()


class ListenerConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    protocol: str = Field(min_length=1)
    bind: BindAddr
    tls: ListenerTlsConfig | None = None
    reuse_port: bool = False
    backlog: int = Field(default=1024, ge=1, le=65535)
    limits: Limits = Limits()
    access: AccessConfig = AccessConfig()
    #: Expect a PROXY protocol v1/v2 header first (from ``trusted_proxies`` only).
    proxy_protocol: bool = False
    trusted_proxies: tuple[str, ...] = ()
    proxy_timeout: Duration = 5.0
    options: dict[str, Any] = Field(default_factory=dict)
    #: The handler class and its validated ``options``, set once by the core
    #: (``core.registry.resolve_listener``) and carried with the listener into the server.
    _handler: Any = PrivateAttr(default=None)
    #: The directory the handler's own relative paths resolve against (the config file's).
    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _remember_base_dir(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, dict):
            self._base_dir = info.context.get(BASE_DIR)
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _proxy_needs_trust(self) -> Self:
        if self.proxy_protocol and not self.trusted_proxies:
            raise ValueError("proxy_protocol needs trusted_proxies (the proxies' addresses)")
        return self

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_shorthand(cls, value: object) -> object:
        """``tls: NAME`` is short for ``tls: {certificates: [NAME]}``."""
        return {"certificates": [value]} if isinstance(value, str) else value


class Config(_Model):
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    tls: TlsConfig = TlsConfig()
    auth: AuthConfig = AuthConfig()
    listeners: tuple[ListenerConfig, ...] = ()
