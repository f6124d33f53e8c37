"""``protocol: admin`` — health, readiness, Prometheus metrics, the live table, reload, drain.

Options (``listener.options``)::

    tokens:                          # bearer tokens, stored as their SHA-256 (aionet token)
      - {name: prometheus, role: viewer, sha256: 9f86d0...}
      - {name: deploy, role: admin, sha256: 60303a...}
    # Users of the shared user store with role admin or viewer may use HTTP Basic instead.
    header_timeout: 10s              # and the other limits of ``protocol: http``
    access_log: false

It is the ``http`` handler serving ``aionet.admin.app.AdminApp`` instead of a user's app;
``/healthz`` and ``/readyz`` need no credentials, everything else does (see that module).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, field_validator, model_validator

from ..admin.app import AdminApp
from ..core.handler import HandlerOptions
from .http import HttpHandler, HttpOptions

if TYPE_CHECKING:
    from ..http.types import ASGIApp

__all__ = ["AdminHandler", "AdminOptions", "TokenSpec"]


class TokenSpec(HandlerOptions):
    """One bearer token: its name (for the operator), role and SHA-256 (hex)."""

    name: str = Field(min_length=1)
    role: Literal["viewer", "admin"]
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("expected 64 hex digits (aionet token prints them)")
        return value.lower()


class AdminOptions(HttpOptions):
    """``listener.options`` of an ``admin`` listener: tokens plus the HTTP limits."""

    tokens: tuple[TokenSpec, ...] = ()
    access_log: bool = False
    lifespan: Literal["auto", "on", "off"] = "off"

    @model_validator(mode="after")
    def _no_app(self) -> Self:
        given = [name for name in ("app", "wsgi", "static_dir") if getattr(self, name)]
        if given:
            raise ValueError(f"an admin listener serves its own app ({', '.join(given)} given)")
        return self


class AdminHandler(HttpHandler):
    """The admin endpoint over aionet's HTTP protocol."""

    Options = AdminOptions
    options: AdminOptions

    def _hosts_websocket(self) -> bool:
        return True  # the dashboard's feed

    def _build_app(self) -> ASGIApp:
        server = self.services.server
        if server is None:
            raise RuntimeError("the admin handler needs the running server (Services.server)")
        return AdminApp(server, self.options.tokens)  # type: ignore[return-value]
