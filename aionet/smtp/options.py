"""The options of an ``smtp`` listener (``listener.options``; see ``aionet.handlers.smtp``).

They live in the engine package because the engine reads them; the face re-exports them.
"""

from __future__ import annotations

import socket

from pydantic import Field, ValidationInfo, field_validator

from ..config.types import Duration, Size
from ..core.handler import HandlerOptions, InBandTlsOptions
from ..core.registry import import_callable_option

__all__ = ["RateLimit", "SmtpOptions"]


class RateLimit(HandlerOptions):
    """At most ``messages`` accepted messages per client IP per ``per`` (0 = no limit)."""

    messages: int = Field(default=0, ge=0)
    per: Duration = Field(default=60.0, gt=0)


class SmtpOptions(InBandTlsOptions):
    """``listener.options`` of an ``smtp`` listener (see the module docstring)."""

    hostname: str = Field(default_factory=socket.gethostname, min_length=1)
    domains: list[str] = Field(default_factory=lambda: ["localhost"], min_length=1)
    require_auth: bool = False
    require_tls: bool = False
    max_message_size: Size = Field(default=32 * 1024 * 1024, gt=0)
    max_recipients: int = Field(default=100, ge=1)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    catch_all: str | None = None
    postmaster: str = "postmaster"
    on_message: str | None = None
    timeout: Duration = Field(default=300.0, gt=0)
    smtputf8: bool = True

    @field_validator("domains")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [d.lower().rstrip(".") for d in value]

    @field_validator("catch_all", "postmaster")
    @classmethod
    def _mailbox_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (not value or "/" in value or value.startswith(".")):
            raise ValueError(f"{info.field_name} must be a user name (no '/', no leading '.')")
        return value

    @field_validator("on_message")
    @classmethod
    def _callable(cls, value: str | None) -> str | None:
        return None if value is None else import_callable_option(value)
