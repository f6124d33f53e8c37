"""The one TLS layer: server contexts built from ``tls.certificates``, SNI, client certificates,
ALPN, and certificate reload without touching live connections.

Every listener with ``tls:`` gets one ``ListenerTls``: an ``ssl.SSLContext`` handed to the
loop once, whose certificate is the listener's first (default) certificate. When a listener
names several certificates, an SNI callback switches each handshake to the context of the
certificate whose SANs match the requested server name (exact, or a ``*.`` wildcard for one
label), falling back to the default. ``TlsStore.reload()`` re-reads every certificate file and
loads it into the same context objects (OpenSSL applies a newly loaded certificate to new
handshakes only), after checking the new pair on a scratch context first, so a broken file is
rejected and the old certificate stays.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from cryptography import x509

from ..config.models import ListenerTlsConfig
from ..errors import StartupError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from ..config.models import CertificateConfig

__all__ = [
    "ListenerTls",
    "ListenerTlsConfig",
    "TlsError",
    "TlsStore",
    "peer_identity",
]

log = structlog.get_logger("aionet.tls")

#: TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are always AEAD).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!RC4:!3DES"


class TlsError(StartupError):
    """A certificate or key cannot be loaded (names the certificate and the file)."""


@dataclass
class _Cert:
    config: CertificateConfig
    names: tuple[str, ...] = ()


@dataclass
class ListenerTls:
    """The contexts of one listener: ``context`` goes to the loop; ``by_cert`` serves SNI."""

    settings: ListenerTlsConfig
    context: ssl.SSLContext
    by_cert: dict[str, ssl.SSLContext] = field(default_factory=dict)

    @property
    def handshake_timeout(self) -> float:
        return self.settings.handshake_timeout


class TlsStore:
    """Loads every ``tls.certificates`` entry and builds listener contexts from them.

    Raises:
        TlsError: (from the constructor) a certificate or key file is missing or broken.
    """

    def __init__(self, certificates: Iterable[CertificateConfig]) -> None:
        self._certs: dict[str, _Cert] = {}
        for config in certificates:
            self._certs[config.name] = _Cert(config, _check_pair(config))
        #: One ``ListenerTls`` per distinct settings: built once (``preflight`` checks a
        #: listener's by building it; the server then uses that one), reloaded together.
        self._listeners: dict[ListenerTlsConfig, ListenerTls] = {}

    def names(self) -> list[str]:
        return list(self._certs)

    def context(self, name: str, *, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """A server context for certificate ``name`` (for STARTTLS-style upgrades); reloads
        with the store."""
        return self.listener(ListenerTlsConfig(certificates=(name,), alpn=alpn)).context

    def listener(self, settings: ListenerTlsConfig) -> ListenerTls:
        """The ``ListenerTls`` for ``settings``, built on first use and kept (so the store
        holds one per distinct settings however often a reload asks); its certificate names
        must exist.

        Raises:
            TlsError: an unknown certificate name, or a file (``client_ca``) does not load.
        """
        built = self._listeners.get(settings)
        if built is not None:
            return built
        missing = [n for n in settings.certificates if n not in self._certs]
        if missing:
            raise TlsError(f"unknown certificate {missing[0]!r} (known: {', '.join(self._certs)})")
        by_cert = {name: self._context(name, settings) for name in settings.certificates}
        default = by_cert[settings.certificates[0]]
        result = ListenerTls(settings, default, by_cert)
        if len(by_cert) > 1:
            default.sni_callback = self._sni_callback(result)
        self._listeners[settings] = result
        return result

    def _context(self, name: str, settings: ListenerTlsConfig) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(TLS12_CIPHERS)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
        if settings.alpn:
            ctx.set_alpn_protocols(list(settings.alpn))
        if settings.client_ca is not None:
            try:
                ctx.load_verify_locations(cafile=str(settings.client_ca))
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(f"client_ca {settings.client_ca}: {_reason(exc)}") from None
        ctx.verify_mode = {
            "none": ssl.CERT_NONE,
            "optional": ssl.CERT_OPTIONAL,
            "required": ssl.CERT_REQUIRED,
        }[settings.verify]
        _load(ctx, self._certs[name].config)
        return ctx

    def _sni_callback(self, lt: ListenerTls) -> Any:
        def pick(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if server_name is None:
                return
            wanted = server_name.lower().rstrip(".")
            for name in lt.settings.certificates:
                if _matches(wanted, self._certs[name].names):
                    sslobj.context = lt.by_cert[name]
                    return

        return pick

    def reload(self) -> None:
        """Re-read every certificate; apply to new handshakes of every listener context.

        Raises:
            TlsError: a new certificate/key pair is broken; nothing was changed.
        """
        fresh = {name: _check_pair(c.config) for name, c in self._certs.items()}
        for lt in self._listeners.values():
            for name, ctx in lt.by_cert.items():
                _load(ctx, self._certs[name].config)
        for name, names in fresh.items():
            self._certs[name].names = names
        log.info("tls_certificates_reloaded", certificates=list(self._certs))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _load(ctx: ssl.SSLContext, config: CertificateConfig) -> None:
    what = f"certificate {config.name!r}"
    try:
        if config.chain is None:
            ctx.load_cert_chain(str(config.cert), str(config.key), config.password)
            return
        with _joined(config.cert, config.chain) as combined:
            ctx.load_cert_chain(combined, str(config.key), config.password)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TlsError(f"{what} ({config.cert}, {config.key}): {_reason(exc)}") from None


@contextlib.contextmanager
def _joined(cert: Path, chain: Path) -> Any:
    """The certificate followed by its chain, in one temporary file (what OpenSSL wants)."""
    data = cert.read_bytes().rstrip(b"\n") + b"\n" + chain.read_bytes()
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        os.unlink(path)


def _check_pair(config: CertificateConfig) -> tuple[str, ...]:
    """Load the pair into a scratch context (so a broken pair never reaches a live one) and
    return the certificate's DNS and IP SANs, lower-cased."""
    _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), config)
    try:
        cert = x509.load_pem_x509_certificate(config.cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"certificate {config.name!r} ({config.cert}): {_reason(exc)}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


def _matches(server_name: str, names: Iterable[str]) -> bool:
    """Exact match, or ``*.example.com`` matching exactly one label (RFC 6125 §6.4.3)."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(server_name)
        return server_name in names
    for name in names:
        if name == server_name:
            return True
        if name.startswith("*.") and "." in server_name:
            label, rest = server_name.split(".", 1)
            if label and rest == name[2:]:
                return True
    return False


def peer_identity(ssl_object: Any) -> dict[str, Any] | None:
    """The verified client certificate's subject and SANs, or None without one."""
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return None
    subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
    return {
        "subject": subject,
        "common_name": subject.get("commonName"),
        "san": [value for _, value in cert.get("subjectAltName", ())],
    }
