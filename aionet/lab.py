"""``aionet init DIR``: a ready lab — every built-in protocol on, TLS, one user, a DNS zone.

What it writes into DIR (paths in the config are relative to it, so the directory can be
moved):

* ``aionet.yaml`` — echo, udp-echo, http (serving ``www/``), dns (the ``aionet.test`` zone,
  whose names resolve to the bind address), smtp, pop3, imap and ftp (each offering STARTTLS/STLS/
  AUTH TLS; password logins in clear only from this host, Dovecot's rule) and admin (one
  viewer token), on the default config's ports;
* ``tls/cert.pem``, ``tls/key.pem`` — a self-signed certificate for ``localhost``,
  ``127.0.0.1``, ``::1`` and ``$AIONET_HOST`` (clients trust it with ``--cacert``/``cafile``);
* ``users.yaml`` — one user whose generated password is printed once (only its argon2id hash
  is stored), with the role ``viewer``: the same login opens the admin dashboard;
* ``www/index.html`` and an empty ``data/`` (mail and FTP homes go there).

An existing, non-empty DIR is refused unless ``force`` (then only these files are replaced).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .admin.app import hash_token
from .auth.users import UserStore, check_name
from .core.certgen import DEFAULT_HOSTS, generate_self_signed

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Lab", "LabExists", "write_lab"]

#: The default config's ports (``config/default.yaml``), so the README's commands work on both.
PORTS = {
    "echo": 7007,
    "http": 8080,
    "dns": 8053,
    "smtp": 8025,
    "pop3": 8110,
    "imap": 8143,
    "ftp": 8021,
}
ADMIN_PORT = 9090
PASSIVE_PORTS = "50000-50099"


class LabExists(Exception):
    """DIR exists and is not empty (pass ``force`` to write over it)."""


@dataclass(frozen=True)
class Lab:
    """What ``write_lab`` made, with the secrets it shows once."""

    config: Path
    user: str
    password: str
    viewer_token: str
    host: str
    cafile: Path

    @property
    def dashboard(self) -> str:
        """The admin dashboard's address, for a browser on this host."""
        host = self.host
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = "127.0.0.1"
        return f"http://{_bind(host, ADMIN_PORT)}/dashboard"


def _host() -> tuple[str, str]:
    """The bind host (``$AIONET_HOST`` or 127.0.0.1) and the address names resolve to."""
    host = os.environ.get("AIONET_HOST", "").strip() or "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host, "127.0.0.1"  # a host name binds wherever it resolves
    return host, "127.0.0.1" if address.is_unspecified else str(address)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(host: str, address: str, token_sha256: str) -> str:
    """The lab's ``aionet.yaml``."""
    family = "AAAA" if ":" in address else "A"
    return f"""\
# An aionet lab, written by `aionet init`. Relative paths are relative to this file.
# Start it: aionet run -c {{this file}}      Check it: aionet check -c {{this file}}

server:
  data_dir: data              # mail (data/mail/), FTP homes (data/ftp/USER/)
  allow_root: true            # a lab on {host}; in production set `user: aionet` instead

logging:
  level: info

tls:
  certificates:
    - {{name: lab, cert: tls/cert.pem, key: tls/key.pem}}   # self-signed: clients --cacert it

auth:
  users_file: users.yaml      # aionet users add|passwd|remove -f users.yaml (no reload needed)

listeners:
  - {{name: echo, protocol: echo, bind: "{_bind(host, PORTS["echo"])}"}}
  - {{name: udp-echo, protocol: udp-echo, bind: "{_bind(host, PORTS["echo"])}"}}

  - name: http
    protocol: http
    bind: "{_bind(host, PORTS["http"])}"
    options: {{static_dir: www}}

  - name: dns
    protocol: dns
    bind: "{_bind(host, PORTS["dns"])}"     # UDP and TCP
    options:
      zones:
        aionet.test:
          ttl: 5m
          records:
            - {{name: "@", type: {family}, value: "{address}"}}
            - {{name: www, type: {family}, value: "{address}"}}
            - {{name: mail, type: {family}, value: "{address}"}}
            - {{name: ftp, type: CNAME, value: www}}
            - {{name: "@", type: MX, value: "10 mail"}}

  - name: smtp
    protocol: smtp
    bind: "{_bind(host, PORTS["smtp"])}"
    options:
      domains: [localhost, aionet.test]
      starttls: lab
      auth_without_tls: loopback    # AUTH in clear only from this host

  - name: pop3
    protocol: pop3
    bind: "{_bind(host, PORTS["pop3"])}"
    options: {{starttls: lab, auth_without_tls: loopback}}

  - name: imap
    protocol: imap
    bind: "{_bind(host, PORTS["imap"])}"
    limits: {{idle_timeout: 30m}}
    options: {{starttls: lab, auth_without_tls: loopback}}

  - name: ftp
    protocol: ftp
    bind: "{_bind(host, PORTS["ftp"])}"
    options:
      starttls: lab
      auth_without_tls: loopback
      passive_ports: "{PASSIVE_PORTS}"

  - name: admin
    protocol: admin
    bind: "{_bind(host, ADMIN_PORT)}"
    options:
      tokens:
        - {{name: lab-viewer, role: viewer, sha256: {token_sha256}}}
"""


INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>aionet lab</title></head>
<body><h1>aionet lab</h1><p>Served from <code>www/</code> by the http listener.</p></body>
</html>
"""


def write_lab(directory: Path, *, user: str = "lab", force: bool = False) -> Lab:
    """Write the lab into ``directory`` (created if missing).

    Raises:
        LabExists: ``directory`` is not empty and ``force`` is false.
        ValueError: ``user`` is not a valid user name.
        OSError: a file could not be written.
    """
    check_name(user)
    if directory.exists() and any(directory.iterdir()) and not force:
        raise LabExists(f"{directory} exists and is not empty (--force writes over it)")
    directory.mkdir(parents=True, exist_ok=True)
    host, address = _host()
    hosts = list(dict.fromkeys([*DEFAULT_HOSTS, address, host]))
    cert, _key = generate_self_signed(directory / "tls", hosts)
    password = secrets.token_urlsafe(12)
    users_file = directory / "users.yaml"
    users_file.unlink(missing_ok=True)
    store = UserStore(users_file)
    try:
        store.add(user, password, ("viewer",))  # the dashboard opens with it in a browser
    finally:
        store.close()
    token = secrets.token_urlsafe(32)
    config = directory / "aionet.yaml"
    config.write_text(render_config(host, address, hash_token(token)), encoding="utf-8")
    (directory / "www").mkdir(exist_ok=True)
    (directory / "www" / "index.html").write_text(INDEX, encoding="utf-8")
    (directory / "data").mkdir(exist_ok=True)
    return Lab(config, user, password, token, host, cert)
