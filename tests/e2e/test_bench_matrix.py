"""``aionet bench`` against aionet's own listener for every target, in every TLS mode.

Each row names a target, a TLS mode and the listener it drives; the run must complete every
request without an error. A bench target missing from the matrix fails
``test_every_target_is_in_the_matrix`` (``aionet bench ftp --ftps`` once timed out against
aionet's own FTPS because nothing ran it there).
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aionet.bench.registry import BUILTIN as BENCH_TARGETS
from aionet.bench.runner import Plan
from aionet.testing import serve
from tests.bench_helpers import bench

from .conftest import Pki
from .mail_helpers import make_users

N = 20
LOGIN = ["--user", "alice", "--password", "alice-pw"]
WS_APP = "tests.apps.raw_apps:ws_echo"
ZONE = {"aionet.test": {"records": [{"name": "www", "type": "A", "value": "127.0.0.1"}]}}


@dataclass(frozen=True)
class Row:
    target: str
    protocol: str  # the aionet listener's protocol
    options: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # after the address
    tls: str = "none"  # "none", "listener" (implicit TLS), "inband" (starttls option)
    transport: str | None = None
    url: str | None = None  # http: the address goes into this URL
    connections: int = 2  # POP3: one (RFC 1939 locks the mailbox for one session)
    alpn: list[str] | None = None  # tls="listener": the listener's ALPN list


MATRIX: dict[str, Row] = {
    "echo": Row("echo", "echo", args=["--size", "64"]),
    "echo-tls": Row("echo", "echo", args=["--size", "64", "--tls"], tls="listener"),
    "udp": Row("udp", "udp-echo", args=["--size", "64"], transport="udp"),
    "http": Row("http", "http", url="http://{}/a.txt"),
    "https": Row("http", "http", url="https://localhost:{port}/a.txt", tls="listener"),
    "http2-h2c": Row(
        "http", "http", {"http2": True}, ["--http2", "--streams", "4"], url="http://{}/a.txt"
    ),
    "http2-tls": Row(
        "http",
        "http",
        args=["--http2", "--streams", "4"],
        url="https://localhost:{port}/a.txt",
        tls="listener",
        alpn=["h2", "http/1.1"],
    ),
    "dns-udp": Row("dns", "dns", {"zones": ZONE}, ["--name", "www.aionet.test"], transport="udp"),
    "dns-tcp": Row(
        "dns", "dns", {"zones": ZONE}, ["--name", "www.aionet.test", "--tcp"], transport="tcp"
    ),
    "dns-tls": Row(
        "dns",
        "dns",
        {"zones": ZONE},
        ["--name", "www.aionet.test", "--tls"],
        tls="listener",
        transport="tcp",
    ),
    "smtp": Row("smtp", "smtp", args=["--rcpt", "alice@localhost"]),
    "smtp-starttls": Row(
        "smtp", "smtp", args=["--rcpt", "alice@localhost", "--starttls", *LOGIN], tls="inband"
    ),
    "smtp-tls": Row(
        "smtp", "smtp", args=["--rcpt", "alice@localhost", *LOGIN, "--tls"], tls="listener"
    ),
    "pop3": Row("pop3", "pop3", {"auth_without_tls": True}, LOGIN, connections=1),
    "pop3-stls": Row("pop3", "pop3", args=[*LOGIN, "--stls"], tls="inband", connections=1),
    "pop3-tls": Row("pop3", "pop3", args=[*LOGIN, "--tls"], tls="listener", connections=1),
    "imap-body": Row("imap", "imap", {"auth_without_tls": True}, LOGIN),
    "imap-flags": Row("imap", "imap", {"auth_without_tls": True}, [*LOGIN, "--fetch", "flags"]),
    "imap-select-relogin": Row(
        "imap", "imap", {"auth_without_tls": True}, [*LOGIN, "--fetch", "select", "--relogin"]
    ),
    "imap-starttls": Row("imap", "imap", args=[*LOGIN, "--starttls"], tls="inband"),
    "imap-tls": Row("imap", "imap", args=[*LOGIN, "--fetch", "headers", "--tls"], tls="listener"),
    "ws": Row("ws", "http", {"app": WS_APP}, ["--size", "64"], url="ws://{}/echo"),
    "ws-tls": Row(
        "ws",
        "http",
        {"app": WS_APP},
        ["--size", "64"],
        url="wss://localhost:{port}/echo",
        tls="listener",
    ),
    "ftp-get": Row("ftp", "ftp", {"auth_without_tls": True}, [*LOGIN, "--get", "blob.bin"]),
    "ftp-put": Row("ftp", "ftp", {"auth_without_tls": True}, [*LOGIN, "--put", "5000"]),
    "ftps-get": Row("ftp", "ftp", args=[*LOGIN, "--ftps", "--get", "blob.bin"], tls="inband"),
    "ftps-put": Row("ftp", "ftp", args=[*LOGIN, "--ftps", "--put", "5000"], tls="inband"),
    "ftps-implicit-get": Row(
        "ftp", "ftp", args=[*LOGIN, "--tls", "--get", "blob.bin"], tls="listener"
    ),
    "ftps-implicit-put": Row("ftp", "ftp", args=[*LOGIN, "--tls", "--put", "5000"], tls="listener"),
}


def test_every_target_is_in_the_matrix() -> None:
    assert set(BENCH_TARGETS) == {row.target for row in MATRIX.values()}


def _config(tmp_path: Path, pki: Pki, row: Row) -> dict[str, Any]:
    options = dict(row.options)
    if row.protocol == "http" and "app" not in options:
        (tmp_path / "www").mkdir()
        (tmp_path / "www" / "a.txt").write_text("hello")
        options["static_dir"] = str(tmp_path / "www")
    listener: dict[str, Any] = {
        "name": "svc",
        "protocol": row.protocol,
        "bind": "127.0.0.1:0",
        "options": options,
    }
    if row.tls == "inband":
        options["starttls"] = "main"
    elif row.tls == "listener":
        listener["tls"] = {"certificates": ["main"], **({"alpn": row.alpn} if row.alpn else {})}
    return {
        "logging": {"level": "warning"},
        "auth": {"users_file": str(make_users(tmp_path))},
        "tls": {"certificates": [{"name": "main", "cert": str(pki.cert), "key": str(pki.key)}]},
        "listeners": [listener],
    }


@pytest.mark.parametrize("case", sorted(MATRIX))
async def test_bench_drives_aionet(tmp_path: Path, pki: Pki, case: str) -> None:
    row = MATRIX[case]
    data = tmp_path / "data"
    if row.target in ("pop3", "imap"):
        await _deliver(tmp_path, data, count=3)
    if row.target == "ftp":
        home = data / "ftp" / "alice"
        home.mkdir(parents=True)
        (home / "blob.bin").write_bytes(b"x" * 50_000)
    async with serve(_config(tmp_path, pki, row), data_dir=data) as server:
        host, port = server.address("svc", row.transport)[:2]
        address = f"{host}:{port}"
        target = address if row.url is None else row.url.format(address, port=port)
        argv = [row.target, target, *row.args]
        if row.tls != "none":
            argv += ["--cafile", str(pki.ca_file)]
        result = await bench(argv, Plan(row.connections, requests=N))
    assert result.errors == {}, result.error_details
    assert result.requests == N
    if case.endswith("put"):
        uploads = [p for p in (data / "ftp" / "alice").iterdir() if p.name.startswith("aionet-")]
        # The other connection's upload in flight when the run stopped may complete too; an
        # upload cut off mid-way leaves nothing (only whole files are renamed into place).
        assert N <= len(uploads) < N + row.connections
        assert all(p.stat().st_size == 5000 for p in uploads)


async def _deliver(tmp_path: Path, data: Path, count: int) -> None:
    """``count`` messages into alice's Maildir, sent with smtplib through aionet's SMTP."""
    config = {
        "logging": {"level": "warning"},
        "auth": {"users_file": str(make_users(tmp_path))},
        "listeners": [{"name": "mx", "protocol": "smtp", "bind": "127.0.0.1:0"}],
    }
    async with serve(config, data_dir=data) as server:
        host, port = server.address("mx")[:2]

        def send() -> None:
            with smtplib.SMTP(host, port, timeout=10) as client:
                for i in range(count):
                    message = f"Subject: {i}\r\n\r\nhello"
                    client.sendmail("bob@example.test", ["alice@localhost"], message)

        await asyncio.to_thread(send)
