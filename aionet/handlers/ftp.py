"""``protocol: ftp`` — FTP and FTPS for the shared users, each jailed in a home under data_dir.

Options (``listener.options``)::

    passive_ports: "30000-30100"     # the PASV/EPSV range ("0": ephemeral ports, the default)
    passive_address: 203.0.113.7     # the IPv4 address announced by PASV (NAT, containers)
    passive_per_ip: null             # passive sockets one client address may hold at once
    passive_per_user: null           # ... one user (anonymous: per address only); null: a
                                     # quarter of the pool, at least 2 (core/passive.py)
    max_passive: 1024                # the pool's size when passive_ports is "0"
    data_timeout: 30s                # a data connection must arrive within this time
    starttls: default                # offer AUTH TLS with this certificate (tls.certificates)
    auth_without_tls: false          # USER/PASS before AUTH TLS: true, or "loopback" (only from
                                     # this host); refused with 534/530 otherwise (anonymous is
                                     # exempt: it sends no secret) — as SMTP and POP3
    require_tls: false               # also refuse anonymous before AUTH TLS, and PROT C (534)
    require_session_reuse: false     # refuse TLS data connections not resuming the control's
    active: false                    # allow PORT/EPRT (only ever to the client's own address)
    anonymous: false                 # "anonymous"/"ftp" log in with any password, read-only
    anonymous_permissions: []        # grant writes to anonymous: [{path: /incoming, write: true}]
    permissions:                     # per-path rules for everyone, nearest path wins
      - {path: /pub, read: true, write: false}
      - {path: /incoming, read: false, write: true}
    roles: {staff: [{path: /pub, write: true}]}   # per-role rules, before the global ones
    quota: 1GiB                      # default per-user quota (users' settings.ftp_quota wins),
                                     # across all of a user's sessions (ftp/quota.py)
    homes_outside_data_dir: false    # allow settings.home outside data_dir
    fsync: false                     # true: fsync an upload (and its directory) around the rename
    banner: aionet FTP server ready.

Users come from ``auth.users_file`` through the shared portal; each user's root is
``data_dir/ftp/<name>`` unless ``settings.home`` names another directory. A listener ``tls:``
makes it implicit FTPS. See README "FTP" for REST/APPE semantics and the session-reuse default.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from ..config.types import Duration, Size
from ..core.handler import Connection, HandlerOptions, InBandTlsOptions, StreamHandler
from ..core.metrics import Sample
from ..core.passive import PassivePorts, parse_port_range, worker_share
from ..core.starttls import upgrade_context
from ..ftp.accounts import PathRule, PortalUserManager
from ..ftp.control import serve
from ..ftp.quota import QUOTAS
from ..ftp.session import FtpSession, SessionConfig

__all__ = ["FtpHandler", "FtpOptions"]


class PathRuleSpec(HandlerOptions):
    path: str
    read: bool = True
    write: bool = True

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a permission path is absolute (starts with /)")
        return value

    def rule(self) -> PathRule:
        return PathRule(self.path, self.read, self.write)


class FtpOptions(InBandTlsOptions):
    passive_ports: str = "0"
    passive_address: str | None = None
    data_timeout: Duration = Field(default=30.0, gt=0)
    require_tls: bool = False
    require_session_reuse: bool = False
    active: bool = False
    anonymous: bool = False
    anonymous_permissions: list[PathRuleSpec] = Field(default_factory=list)
    permissions: list[PathRuleSpec] = Field(default_factory=list)
    roles: dict[str, list[PathRuleSpec]] = Field(default_factory=dict)
    quota: Size | None = None
    homes_outside_data_dir: bool = False
    fsync: bool = False
    banner: str = "aionet FTP server ready."
    max_passive: int = Field(default=1024, ge=1)
    passive_per_ip: int | None = Field(default=None, ge=1)
    passive_per_user: int | None = Field(default=None, ge=1)

    @field_validator("passive_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_port_range(str(value))
        return str(value)


class FtpHandler(StreamHandler):
    """FTP control connections; data connections through the core's passive-port pool."""

    Options: ClassVar[type[HandlerOptions]] = FtpOptions
    config: SessionConfig

    def metrics(self) -> list[Sample]:
        config = getattr(self, "config", None)
        if config is None:
            return []
        pool = config.passive.stats()
        return [
            Sample(
                "aionet_ftp_sent_bytes",
                "counter",
                "Data bytes sent (RETR, listings).",
                (),
                config.bytes_sent,
            ),
            Sample(
                "aionet_ftp_received_bytes",
                "counter",
                "Data bytes received (STOR, APPE).",
                (),
                config.bytes_received,
            ),
            Sample(
                "aionet_ftp_downloads",
                "counter",
                "Downloads completed (226).",
                (),
                config.downloads,
            ),
            Sample(
                "aionet_ftp_uploads",
                "counter",
                "Uploads completed and renamed (226).",
                (),
                config.uploads,
            ),
            Sample(
                "aionet_ftp_passive_open", "gauge", "Passive data sockets open.", (), pool["open"]
            ),
            Sample(
                "aionet_ftp_passive_exhausted",
                "counter",
                "PASV/EPSV refused with 425: no free passive port.",
                (),
                pool["exhausted"],
            ),
            Sample(
                "aionet_ftp_passive_capped",
                "counter",
                "PASV/EPSV refused with 425: the client's address or user holds its share.",
                (),
                pool["capped"],
            ),
        ]

    async def start(self) -> None:
        options = self.options
        assert isinstance(options, FtpOptions)
        services = self.services
        starttls = upgrade_context(options.starttls, services.tls, "ftp")
        if services.portal is None and not options.anonymous:
            self.log.warning("ftp_no_users", reason="no auth.users_file: every login fails")
        users = PortalUserManager(
            services.portal,
            services.data_dir,
            permissions=[r.rule() for r in options.permissions],
            roles={role: [r.rule() for r in rules] for role, rules in options.roles.items()},
            anonymous=options.anonymous,
            anonymous_permissions=[r.rule() for r in options.anonymous_permissions],
            quota=options.quota,
            homes_outside_data_dir=options.homes_outside_data_dir,
        )
        self.config = SessionConfig(
            users=users,
            passive=PassivePorts(
                worker_share(parse_port_range(options.passive_ports), *services.worker),
                limit=options.max_passive,
                per_ip=options.passive_per_ip,
                per_user=options.passive_per_user,
            ),
            banner=options.banner,
            starttls=starttls,
            require_tls=options.require_tls,
            auth_without_tls=options.auth_without_tls,
            require_session_reuse=options.require_session_reuse,
            passive_address=options.passive_address,
            data_timeout=options.data_timeout,
            active=options.active,
            fsync=options.fsync,
            quotas=QUOTAS,
        )

    async def handle(self, conn: Connection) -> None:
        await serve(FtpSession(self.config, conn))

    async def drain(self) -> None:
        """Idle sessions answer 421 and close now; the others once their command or
        transfer is done."""
        self.config.sessions.drain()

    async def undrain(self) -> None:
        self.config.sessions.undrain()

    async def stop(self) -> None:
        self.config.passive.close_all()

    def refusal(self) -> bytes | None:
        return b"421 Too many connections, try again later.\r\n"

    def idle_goodbye(self) -> bytes:
        """Said before the idle sweep closes a silent control connection (vsftpd's words;
        RFC 959: 421 is the service closing the control connection)."""
        return b"421 Timeout.\r\n"
