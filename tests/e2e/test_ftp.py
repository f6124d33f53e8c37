"""FTP over loopback with real clients: ftplib (plain, explicit and implicit FTPS), curl, lftp.

Every test runs on both loops (tests/e2e/conftest.py). ftplib and the tools block, so they run
in a thread (``asyncio.to_thread``) while the server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import os
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from argon2 import PasswordHasher

from aionet.handlers.ftp import FtpHandler
from aionet.testing import serve
from tests.waiting import poll_until, wait_until

from .conftest import Pki

PW = "s3cret-pw"
HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@dataclass
class Site:
    dir: Path
    data: Path
    users: Path
    ca: Path
    cert: Path
    key: Path

    def root(self, user: str) -> Path:
        return self.data / "ftp" / user


@pytest.fixture
def site(tmp_path: Path, pki: Pki) -> Site:
    users = tmp_path / "users.yaml"
    h = HASHER.hash(PW)
    users.write_text(
        yaml.safe_dump(
            {
                "users": {
                    "alice": {"password_hash": h, "roles": []},
                    "bob": {"password_hash": h, "roles": ["staff"]},
                    "quinn": {"password_hash": h, "roles": [], "settings": {"ftp_quota": 100_000}},
                }
            }
        )
    )
    return Site(tmp_path, tmp_path / "data", users, pki.ca_file, pki.cert, pki.key)


def config(site: Site, *, tls: str | None = None, bind: str = "127.0.0.1:0", **options: Any) -> Any:
    # Most tests log in with plain ftplib; the clear-text policy has tests of its own.
    options.setdefault("auth_without_tls", True)
    listener: dict[str, Any] = {"name": "ftp", "protocol": "ftp", "bind": bind, "options": options}
    if tls:
        listener["tls"] = tls
    return {
        "logging": {"level": "warning"},
        "auth": {"users_file": str(site.users)},
        "tls": {"certificates": [{"name": "main", "cert": str(site.cert), "key": str(site.key)}]},
        "listeners": [listener],
    }


@asynccontextmanager
async def ftp(site: Site, **kw: Any) -> AsyncIterator[tuple[str, int]]:
    async with serve(config(site, **kw), data_dir=site.data) as server:
        host, port = server.address("ftp")[:2]
        yield host, port


def login(addr: tuple[str, int], user: str = "alice") -> ftplib.FTP:
    f = ftplib.FTP()
    f.connect(*addr, timeout=15)
    f.login(user, PW)
    return f


def client_context(site: Site) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(site.ca))


class ResumingFTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS resuming the control connection's TLS session on data connections (stock
    ftplib does not, which is why ``require_session_reuse`` is off by default)."""

    reused: list[bool]

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            conn = self.context.wrap_socket(  # type: ignore[attr-defined]
                conn, server_hostname=self.host, session=self.sock.session
            )
            self.reused = [*getattr(self, "reused", []), conn.session_reused]
        return conn, size


def tls_login(site: Site, addr: tuple[str, int], cls: type[ftplib.FTP_TLS] = ftplib.FTP_TLS) -> Any:
    f = cls(context=client_context(site))
    f.connect(*addr, timeout=15)
    f.auth()
    f.login("alice", PW)
    f.prot_p()
    return f


def put(f: ftplib.FTP, name: str, data: bytes) -> str:
    return f.storbinary(f"STOR {name}", io.BytesIO(data), blocksize=1 << 20)


def get(f: ftplib.FTP, name: str) -> bytes:
    buf = io.BytesIO()
    f.retrbinary(f"RETR {name}", buf.write, blocksize=1 << 20)
    return buf.getvalue()


def code(f: ftplib.FTP, cmd: str) -> str:
    try:
        return f.sendcmd(cmd)[:3]
    except ftplib.Error as exc:
        return str(exc)[:3]


def transfer_code(fn: Any) -> str:
    try:
        fn()
    except ftplib.Error as exc:
        return str(exc)[:3]
    return "ok"


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.startswith(".aionet-upload-"))


def sh(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


# -- ftplib: files and directories ------------------------------------------------------------


async def test_ftplib_round_trips_and_directory_operations(site: Site) -> None:
    small = os.urandom(300_000)
    big = os.urandom(50 * 1024 * 1024)
    async with ftp(site) as addr:

        def run() -> None:
            f = login(addr)
            assert f.getwelcome().startswith("220 ")
            assert put(f, "small.bin", small).startswith("226")
            assert get(f, "small.bin") == small
            assert put(f, "big.bin", big).startswith("226")
            assert hashlib.sha256(get(f, "big.bin")).digest() == hashlib.sha256(big).digest()
            assert f.size("big.bin") == len(big)
            assert f.sendcmd("MDTM small.bin")[:4] == "213 "
            assert f.mkd("dir") == "/dir"
            f.cwd("dir")
            assert f.pwd() == "/dir"
            put(f, "a.txt", b"hello\r\n")
            f.rename("a.txt", "b.txt")
            assert f.nlst() == ["b.txt"]
            lines: list[str] = []
            f.retrlines("LIST", lines.append)
            assert len(lines) == 1 and lines[0].startswith("-rw") and lines[0].endswith(" b.txt")
            f.sendcmd("CDUP")
            assert f.pwd() == "/"
            assert sorted(f.nlst()) == ["big.bin", "dir", "small.bin"]
            f.delete("dir/b.txt")
            f.rmd("dir")
            assert "dir" not in f.nlst()
            # REST + RETR, APPE
            f.voidcmd("TYPE I")
            conn = f.transfercmd("RETR small.bin", rest=1000)
            tail = b""
            while chunk := conn.recv(65536):
                tail += chunk
            conn.close()
            f.voidresp()
            assert tail == small[1000:]
            f.storbinary("APPE small.bin", io.BytesIO(b"+tail"))
            assert get(f, "small.bin") == small + b"+tail"
            f.quit()

        await asyncio.to_thread(run)
    assert leftovers(site.root("alice")) == []


async def test_mlsd_mlst_facts_and_small_commands(site: Site) -> None:
    root = site.root("alice")
    (root / "ro").mkdir(parents=True)
    async with ftp(site, permissions=[{"path": "/ro", "write": False}]) as addr:

        def run() -> None:
            f = login(addr)
            put(f, "f.bin", b"12345")
            assert code(f, "MKD ro/sub") == "550"
            facts = dict(f.mlsd())
            assert facts["f.bin"]["type"] == "file" and facts["f.bin"]["size"] == "5"
            assert facts["f.bin"]["perm"] == "radfw"
            assert len(facts["f.bin"]["modify"]) == 14 and facts["f.bin"]["unique"]
            assert facts["ro"]["type"] == "dir" and facts["ro"]["perm"] == "el"
            mlst = f.sendcmd("MLST f.bin").splitlines()
            assert mlst[0].startswith("250-") and mlst[-1] == "250 End"
            assert "type=file;size=5;" in mlst[1] and mlst[1].endswith(" /f.bin")
            feat = f.sendcmd("FEAT")
            for word in ("EPSV", "MLST type*;size*;modify*;perm*;unique*;", "UTF8", "SIZE"):
                assert f"\n {word}" in feat
            assert "AUTH TLS" not in feat  # no starttls configured
            assert code(f, "SYST") == "215" and code(f, "NOOP") == "200"
            assert code(f, "OPTS UTF8 ON") == "200" and code(f, "OPTS BOGUS") == "501"
            assert code(f, "TYPE A") == "200" and code(f, "TYPE X") == "504"
            assert code(f, "MODE S") == "200" and code(f, "MODE B") == "504"
            assert code(f, "STRU F") == "200" and code(f, "STRU R") == "504"
            assert code(f, "STAT") == "211" and code(f, "STAT /") == "213"
            assert code(f, "SITE CHMOD 777 f.bin") == "502"
            assert code(f, "ABOR") == "225"
            assert code(f, "RETR f.bin") == "425"  # no PASV first
            assert code(f, "PORT 127,0,0,1,200,10") == "502"  # active mode is off by default
            f.quit()

        await asyncio.to_thread(run)
        assert (root / "f.bin").read_bytes() == b"12345"


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for a directory)."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


async def test_bare_path_commands_answer_501_and_change_nothing(site: Site) -> None:
    root = site.root("alice")
    (root / "empty").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / "sub" / "file").write_bytes(b"content")
    before = _tree(root)
    async with ftp(site) as addr:

        def run() -> None:
            f = login(addr)
            for cwd in ("/empty", "/sub", "/"):  # once, the bare RMD would remove /empty
                f.cwd(cwd)
                for verb in ("RETR", "STOR", "APPE", "DELE", "SIZE", "MDTM", "RNFR", "RMD",
                             "MKD", "XRMD", "XMKD"):  # fmt: skip
                    assert code(f, verb) == "501", (cwd, verb)
                    assert code(f, verb + "   ") == "501", (cwd, verb)  # spaces only
                assert code(f, "RNFR /sub/file") == "350"
                assert code(f, "RNTO") == "501", cwd  # a bare RNTO would rename onto the cwd
                assert code(f, "RNTO x") == "503", cwd  # and the RNFR is spent
                assert f.pwd() == cwd
            assert code(f, "CWD") == "250" and f.pwd() == "/"  # bare CWD: the home, kept
            assert code(f, "NOOP") == "200"
            f.quit()

        await asyncio.to_thread(run)
    assert _tree(root) == before


# -- the jail ---------------------------------------------------------------------------------


async def test_every_escape_is_refused(site: Site) -> None:
    root = site.root("alice")
    root.mkdir(parents=True)
    outside = site.dir / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (root / "link-dir").symlink_to(outside)
    (root / "link-file").symlink_to(outside / "secret")
    (root / "mine").write_text("mine")
    async with ftp(site) as addr:

        def run() -> None:
            f = login(addr)
            f.set_pasv(True)
            refused = [
                "CWD ..",
                "CWD /..",
                "CWD ../..",
                "CWD link-dir",
                "SIZE ../outside/secret",
                "SIZE /../outside/secret",
                "SIZE ..%2foutside%2fsecret",
                "SIZE %2e%2e/outside/secret",
                "SIZE ..\\outside\\secret",
                "SIZE link-file",
                "MDTM link-dir/secret",
                "MLST link-dir",
                "MKD ../escaped",
                "MKD link-dir/escaped",
                "DELE link-file",
                "RMD link-dir",
                "RNFR link-file",
                "STAT link-dir",
            ]
            for cmd in refused:
                assert code(f, cmd) == "550", cmd
            assert code(f, "RNFR mine") == "350"
            assert code(f, "RNTO ../outside/stolen") == "550"
            assert code(f, "SIZE /etc/passwd") == "550"  # that is ROOT/etc/passwd: absent
            for cmd in ("RETR link-file", "RETR ../outside/secret", "LIST link-dir",
                        "NLST ../", "MLSD link-dir", "STOR link-dir/x", "STOR ../x",
                        "APPE link-file"):  # fmt: skip
                assert transfer_code(lambda c=cmd: f.transfercmd(c)) == "550", cmd
            facts = dict(f.mlsd())  # listed, but nothing about what lies outside
            assert facts["link-file"]["type"] == "OS.unix=slink"
            assert facts["link-dir"]["type"] == "OS.unix=slink"
            assert facts["mine"]["type"] == "file"
            lines: list[str] = []
            f.retrlines("LIST", lines.append)
            assert [line[0] for line in lines] == ["l", "l", "-"]
            assert code(f, "NOOP") == "200"
            f.quit()

        await asyncio.to_thread(run)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "secret"
    assert (root / "mine").exists() and (root / "link-file").is_symlink()


# -- permissions, anonymous, quota -----------------------------------------------------------


async def test_per_path_and_per_role_permissions(site: Site) -> None:
    options = {
        "permissions": [
            {"path": "/pub", "read": True, "write": False},
            {"path": "/incoming", "read": False, "write": True},
        ],
        "roles": {"staff": [{"path": "/pub", "read": True, "write": True}]},
    }
    for user in ("alice", "bob"):
        (site.root(user) / "pub").mkdir(parents=True)
        (site.root(user) / "incoming").mkdir()
        (site.root(user) / "pub" / "readme").write_text("read me")
    async with ftp(site, fsync=True, **options) as addr:

        def run() -> None:
            f = login(addr, "alice")
            assert get(f, "pub/readme") == b"read me"
            assert transfer_code(lambda: put(f, "pub/new", b"x")) == "550"
            assert code(f, "DELE pub/readme") == "550" and code(f, "MKD pub/d") == "550"
            assert put(f, "incoming/drop", b"dropped").startswith("226")
            assert transfer_code(lambda: get(f, "incoming/drop")) == "550"
            assert transfer_code(lambda: f.nlst("incoming")) == "550"
            assert code(f, "CWD incoming") == "550"
            f.quit()
            b = login(addr, "bob")  # role staff may write /pub
            assert put(b, "pub/new", b"staff").startswith("226")
            b.quit()

        await asyncio.to_thread(run)
    assert (site.root("alice") / "incoming" / "drop").read_bytes() == b"dropped"
    assert not (site.root("alice") / "pub" / "new").exists()
    assert (site.root("bob") / "pub" / "new").read_bytes() == b"staff"


async def test_anonymous_is_off_by_default_and_read_only_when_on(site: Site) -> None:
    async with ftp(site) as addr:
        f = ftplib.FTP()
        await asyncio.to_thread(f.connect, *addr)
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            await asyncio.to_thread(f.login)
        f.close()
    anon = site.data / "ftp" / "anonymous"
    (anon / "incoming").mkdir(parents=True)
    (anon / "file").write_text("public")
    perms = [{"path": "/incoming", "read": False, "write": True}]
    async with ftp(site, anonymous=True, anonymous_permissions=perms) as addr:

        def run() -> None:
            f = ftplib.FTP()
            f.connect(*addr)
            f.login()  # anonymous
            assert get(f, "file") == b"public"
            assert transfer_code(lambda: put(f, "new", b"x")) == "550"
            assert code(f, "MKD d") == "550" and code(f, "DELE file") == "550"
            assert put(f, "incoming/up", b"up").startswith("226")
            f.quit()

        await asyncio.to_thread(run)
    assert sorted(p.name for p in anon.iterdir()) == ["file", "incoming"]
    assert (anon / "incoming" / "up").read_bytes() == b"up"


async def test_quota_552_and_nothing_left(site: Site) -> None:
    async with ftp(site) as addr:

        def run() -> None:
            f = login(addr, "quinn")  # settings.ftp_quota: 100000
            assert put(f, "a", os.urandom(60_000)).startswith("226")
            assert transfer_code(lambda: put(f, "b", os.urandom(60_000))) == "552"
            assert put(f, "a", os.urandom(90_000)).startswith("226")  # replacing frees "a"
            assert code(f, "NOOP") == "200"
            f.quit()

        await asyncio.to_thread(run)
    root = site.root("quinn")
    assert sorted(p.name for p in root.iterdir()) == ["a"]
    assert (root / "a").stat().st_size == 90_000


def store_code(
    f: ftplib.FTP,
    cmd: str,
    data: bytes,
    start: threading.Barrier | None = None,
    rest: int | None = None,
) -> str:
    """Send ``data`` for ``cmd`` (STOR/APPE, after REST ``rest``), waiting at ``start`` once the
    transfer is open; the reply code, also when the server cuts the data connection (552)."""
    try:
        conn = f.transfercmd(cmd, rest)
    except ftplib.Error as exc:
        if start is not None:
            start.abort()
        return str(exc)[:3]
    try:
        if start is not None:
            start.wait(timeout=15)
        for i in range(0, len(data), 256 * 1024):
            conn.sendall(data[i : i + 256 * 1024])
    except OSError:
        pass  # reset by the server: the reply says why
    finally:
        conn.close()
    try:
        return f.voidresp()[:3]
    except ftplib.Error as exc:
        return str(exc)[:3]


async def test_quota_holds_across_concurrent_sessions(site: Site) -> None:
    quota = 5 * 1024 * 1024
    root = site.root("alice")
    blobs = [os.urandom(4_000_000) for _ in range(4)]
    async with ftp(site, quota="5MiB") as addr:

        def run() -> list[str]:
            sessions = [login(addr) for _ in blobs]
            start = threading.Barrier(len(blobs))
            with ThreadPoolExecutor(len(blobs)) as pool:
                codes = list(
                    pool.map(
                        lambda i: store_code(sessions[i], f"STOR f{i}", blobs[i], start),
                        range(len(blobs)),
                    )
                )
            f = sessions[0]
            stored = sum(len(blobs[i]) for i, c in enumerate(codes) if c == "226")
            # nothing is left reserved: exactly what is left fits, one byte more does not
            assert store_code(f, "STOR rest", b"r" * (quota - stored)) == "226"
            assert store_code(f, "APPE rest", b"+") == "552"
            assert store_code(f, "STOR one", b"1") == "552"
            assert store_code(f, "STOR rest", b"r" * (quota - stored)) == "226"  # replacing: same
            for g in sessions:
                g.quit()
            return codes

        codes = await asyncio.to_thread(run)
    assert sorted(set(codes)) == ["226", "552"], codes  # some fit, the rest were refused
    names = sorted(p.name for p in root.iterdir())
    assert names == sorted(["rest", *(f"f{i}" for i, c in enumerate(codes) if c == "226")])
    for i, c in enumerate(codes):
        if c == "226":
            assert (root / f"f{i}").read_bytes() == blobs[i]
    assert sum(p.stat().st_size for p in root.iterdir()) == quota


async def test_quota_appe_and_rest_are_charged_their_growth(site: Site) -> None:
    root = site.root("quinn")  # settings.ftp_quota: 100000
    root.mkdir(parents=True)
    (root / "log").write_bytes(b"a" * 40_000)
    async with ftp(site) as addr:

        def run() -> None:
            f, g = login(addr, "quinn"), login(addr, "quinn")
            assert store_code(f, "APPE log", b"b" * 30_000) == "226"  # 70000
            # REST: keep 10000, send 50000: the file shrinks to 60000
            assert store_code(f, "STOR log", b"c" * 50_000, rest=10_000) == "226"
            assert store_code(g, "STOR other", b"d" * 40_000) == "226"  # 100000: full
            assert store_code(g, "APPE other", b"e") == "552"
            assert store_code(f, "APPE log", b"f") == "552"
            f.quit()
            g.quit()

        await asyncio.to_thread(run)
    assert sorted(p.name for p in root.iterdir()) == ["log", "other"]
    assert (root / "log").read_bytes() == b"a" * 10_000 + b"c" * 50_000
    assert (root / "other").read_bytes() == b"d" * 40_000


# -- integrity of uploads -------------------------------------------------------------------


def _raw_login(addr: tuple[str, int]) -> tuple[socket.socket, Any]:
    ctrl = socket.create_connection(addr, timeout=10)
    rf = ctrl.makefile("rb")

    def cmd(line: str) -> str:
        ctrl.sendall(line.encode() + b"\r\n")
        return rf.readline().decode()

    assert rf.readline().startswith(b"220")
    assert cmd("USER alice").startswith("331")
    assert cmd(f"PASS {PW}").startswith("230")
    return ctrl, (cmd, rf)


def _epsv_port(reply: str) -> int:
    return int(reply.split("|||")[1].split("|")[0])


async def test_dropped_and_aborted_uploads_leave_nothing(site: Site) -> None:
    root = site.root("alice")
    root.mkdir(parents=True)
    (root / "keep").write_bytes(b"original")
    async with ftp(site) as addr:

        def reset_data() -> None:
            ctrl, (cmd, rf) = _raw_login(addr)
            port = _epsv_port(cmd("EPSV"))
            data = socket.create_connection((addr[0], port))
            assert cmd("STOR keep").startswith("150")
            data.sendall(os.urandom(1_000_000))
            data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            data.close()  # RST: the upload was cut
            assert rf.readline().startswith(b"426")
            assert cmd("NOOP").startswith("200")
            rf.close()
            ctrl.close()

        def client_vanishes() -> None:
            ctrl, (cmd, rf) = _raw_login(addr)
            port = _epsv_port(cmd("EPSV"))
            data = socket.create_connection((addr[0], port))
            assert cmd("STOR new-file").startswith("150")
            data.sendall(os.urandom(500_000))
            rf.close()
            ctrl.close()  # the client dies: control first, then the data connection
            data.close()

        def abort() -> None:
            f = login(addr)
            conn = f.transfercmd("STOR aborted")
            conn.sendall(os.urandom(300_000))
            g = login(addr)  # meanwhile, the upload in progress is invisible
            assert g.nlst() == ["keep"] and list(dict(g.mlsd())) == ["keep"]
            g.quit()
            f.abort()  # ABOR as urgent data; 426 for the transfer, then 226 for ABOR
            conn.close()
            assert f.voidresp().startswith("226")
            assert code(f, "NOOP") == "200"
            f.quit()

        await asyncio.to_thread(reset_data)
        await asyncio.to_thread(client_vanishes)
        await asyncio.to_thread(abort)
        # the aborted uploads' temporary files are removed once their sessions notice
        await wait_until(lambda: sorted(p.name for p in root.iterdir()) == ["keep"], 5)
    assert sorted(p.name for p in root.iterdir()) == ["keep"]
    assert (root / "keep").read_bytes() == b"original"


# -- FTPS -------------------------------------------------------------------------------------


async def test_explicit_ftps_ftplib_prot_p(site: Site) -> None:
    data = os.urandom(2_000_000)
    async with ftp(site, starttls="main") as addr:

        def run() -> None:
            f = tls_login(site, addr)
            assert "AUTH TLS" in f.sendcmd("FEAT")
            assert put(f, "t.bin", data).startswith("226")
            assert get(f, "t.bin") == data
            assert f.nlst() == ["t.bin"]
            f.prot_c()
            assert get(f, "t.bin") == data  # PROT C: clear data channel, sendfile path
            f.quit()
            plain = ftplib.FTP()
            plain.connect(*addr)
            assert code(plain, "PROT P") == "503"  # no TLS yet
            plain.login("alice", PW)  # auth_without_tls: true here: a plain login works
            plain.quit()

        await asyncio.to_thread(run)


async def test_clear_text_logins_wait_for_auth_tls_by_default(site: Site) -> None:
    """auth_without_tls has SMTP's and POP3's meaning and default (false): no password goes
    out before AUTH TLS; anonymous (no secret) is exempt; after AUTH TLS the login works."""
    async with ftp(site, starttls="main", auth_without_tls=False, anonymous=True) as addr:

        def run() -> None:
            f = ftplib.FTP()
            f.connect(*addr)
            assert code(f, "USER alice") == "534"
            assert code(f, f"PASS {PW}") == "530"
            f.login("anonymous", "guest@")  # no secret: allowed in the clear, as vsftpd
            f.quit()
            t = ftplib.FTP_TLS(context=client_context(site))
            t.connect(*addr)
            t.auth()
            t.login("alice", PW)
            t.quit()

        await asyncio.to_thread(run)


@pytest.mark.parametrize(("policy", "allowed"), [(True, True), ("loopback", True), (False, False)])
async def test_clear_text_login_policy_matches_the_mail_protocols(
    site: Site, policy: bool | str, allowed: bool
) -> None:
    async with ftp(site, starttls="main", auth_without_tls=policy) as addr:

        def run() -> str:
            f = ftplib.FTP()
            f.connect(*addr)
            try:
                return code(f, "USER alice")
            finally:
                f.close()

        assert (await asyncio.to_thread(run)) == ("331" if allowed else "534")


async def test_require_tls_refuses_login_before_auth_tls(site: Site) -> None:
    async with ftp(site, starttls="main", require_tls=True) as addr:

        def run() -> None:
            f = ftplib.FTP()
            f.connect(*addr)
            assert code(f, "USER alice") == "534"
            assert code(f, f"PASS {PW}") == "530"
            f.close()
            t = ftplib.FTP_TLS(context=client_context(site))
            t.connect(*addr)
            t.auth()
            t.login("alice", PW)
            assert code(t, "PROT C") == "534"
            assert transfer_code(lambda: t.nlst()) == "521"  # data must be PROT P
            t.prot_p()
            assert t.nlst() == []
            t.quit()

        await asyncio.to_thread(run)


async def test_session_reuse_required(site: Site) -> None:
    async with ftp(site, starttls="main", require_session_reuse=True) as addr:

        def run() -> None:
            f = tls_login(site, addr, ResumingFTP_TLS)
            assert put(f, "r.bin", b"reused").startswith("226")
            assert get(f, "r.bin") == b"reused"
            assert f.reused == [True, True]
            f.quit()
            stock = tls_login(site, addr)  # stock ftplib does not resume: refused
            with pytest.raises((ftplib.Error, ssl.SSLError, OSError)):
                get(stock, "r.bin")
            stock.close()

        await asyncio.to_thread(run)


async def test_implicit_ftps(site: Site) -> None:
    class Implicit(ftplib.FTP_TLS):
        def connect(self, host: str = "", port: int = 0, timeout: float = 15, **kw: Any) -> str:
            self.host, self.port = host, port
            self.sock = socket.create_connection((host, port), timeout)
            self.af = self.sock.family
            self.sock = self.context.wrap_socket(self.sock, server_hostname=host)
            self.file = self.sock.makefile("r", encoding=self.encoding)
            self.welcome = self.getresp()
            return self.welcome

    async with ftp(site, tls="main") as addr:

        def run() -> None:
            f = Implicit(context=client_context(site))
            f.connect(*addr)
            f.login("alice", PW)
            f.prot_p()
            assert put(f, "i.bin", b"implicit").startswith("226")
            assert get(f, "i.bin") == b"implicit"
            assert code(f, "AUTH TLS") == "503"  # already TLS
            f.quit()

        await asyncio.to_thread(run)


# -- curl and lftp ----------------------------------------------------------------------------


@pytest.mark.tool("curl")
async def test_curl_upload_download_plain_and_ssl_reqd(site: Site) -> None:
    src = site.dir / "src.bin"
    src.write_bytes(os.urandom(50 * 1024 * 1024))
    async with ftp(site, starttls="main", require_session_reuse=True) as addr:
        base = f"ftp://alice:{PW}@{addr[0]}:{addr[1]}/"
        tls = ["--ssl-reqd", "--cacert", str(site.ca)]
        for name, extra in (("plain.bin", []), ("tls.bin", tls)):
            r = await asyncio.to_thread(sh, "curl", "-sS", *extra, "-T", str(src), base + name)
            assert r.returncode == 0, r.stderr
            out = site.dir / f"out-{name}"
            r = await asyncio.to_thread(sh, "curl", "-sS", *extra, "-o", str(out), base + name)
            assert r.returncode == 0, r.stderr
            assert out.read_bytes() == src.read_bytes()
        r = await asyncio.to_thread(sh, "curl", "-sS", *tls, "--list-only", base)
        assert sorted(r.stdout.split()) == ["plain.bin", "tls.bin"]
        r = await asyncio.to_thread(sh, "curl", "-sS", f"ftp://alice:wrong@{addr[0]}:{addr[1]}/")
        assert r.returncode == 67  # CURLE_LOGIN_DENIED
    async with ftp(site) as addr:  # no starttls: --ssl-reqd must fail, not fall back
        r = await asyncio.to_thread(
            sh, "curl", "-sS", *tls, f"ftp://alice:{PW}@{addr[0]}:{addr[1]}/plain.bin"
        )
        assert r.returncode != 0


@pytest.mark.tool("lftp")
async def test_lftp(site: Site) -> None:
    src = site.dir / "l.bin"
    src.write_bytes(os.urandom(1_000_000))
    async with ftp(site, starttls="main") as addr:
        script = (
            f"debug -o {site.dir / 'lftp.log'} 9; set ftp:ssl-force true; "
            f"set ssl:ca-file {site.ca}; set net:max-retries 1; "
            f"open -u alice,{PW} -p {addr[1]} {addr[0]}; mkdir sub; cd sub; "
            f"put {src} -o l.bin; get l.bin -o {site.dir / 'back.bin'}; cls -1; "
            "mv l.bin m.bin; cls -1; bye"
        )
        r = await asyncio.to_thread(sh, "lftp", "-c", script)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["l.bin", "m.bin"]
    log = (site.dir / "lftp.log").read_text()
    assert "<--- 226 Transfer complete." in log
    assert "<--- 426" not in log  # no retried transfer (a TLS upload once got cut: see data.py)
    assert (site.dir / "back.bin").read_bytes() == src.read_bytes()
    assert (site.root("alice") / "sub" / "m.bin").read_bytes() == src.read_bytes()


# -- passive mode, active mode, IPv6 ------------------------------------------------------------


def _free_range(n: int) -> str:
    for base in range(52000, 64000, 89):
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return f"{base}-{base + n - 1}"
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


async def test_passive_range_exhaustion_425_and_recovery(site: Site) -> None:
    ports = _free_range(2)
    low, high = (int(p) for p in ports.split("-"))
    async with ftp(site, passive_ports=ports, passive_address="192.0.2.7") as addr:

        def run() -> None:
            a, b, c = login(addr), login(addr), login(addr)
            reply = a.sendcmd("PASV")
            assert reply.startswith("227") and "(192,0,2,7," in reply  # passive_address
            assert low <= _epsv_port(b.sendcmd("EPSV")) <= high
            assert code(c, "EPSV") == "425" and code(c, "PASV") == "425"
            a.quit()  # the session's passive socket closes with it
            assert low <= _epsv_port(c.sendcmd("EPSV")) <= high
            b.quit()
            c.quit()

        await asyncio.to_thread(run)


def login_from(addr: tuple[str, int], source: str, user: str = "alice") -> ftplib.FTP:
    """A session whose control and data connections come from ``source`` (a loopback alias)."""
    f = ftplib.FTP(source_address=(source, 0))
    f.connect(*addr, timeout=15)
    f.login(user, PW)
    return f


async def test_passive_caps_per_address_and_per_user(site: Site) -> None:
    ports = _free_range(8)
    cfg = config(site, passive_ports=ports, passive_per_ip=3, passive_per_user=4)
    async with serve(cfg, data_dir=site.data) as server:
        addr = server.address("ftp")[:2]
        handler = server.handlers["ftp"]

        def samples() -> dict[str, float]:
            return {m.name: m.value for m in handler.metrics()}

        def run() -> None:
            greedy = [login_from(addr, "127.0.0.1") for _ in range(4)]
            assert [code(g, "EPSV") for g in greedy] == ["229", "229", "229", "425"]  # per address
            assert code(greedy[3], "PASV") == "425"
            bob_here = login_from(addr, "127.0.0.1", "bob")
            assert code(bob_here, "EPSV") == "425"  # the address is at its cap, whoever asks
            elsewhere = [login_from(addr, "127.0.0.2") for _ in range(2)]
            assert [code(g, "EPSV") for g in elsewhere] == ["229", "425"]  # alice: per user
            bob = login_from(addr, "127.0.0.3", "bob")  # another user, another address: served
            assert put(bob, "b.bin", b"bob").startswith("226")
            assert get(bob, "b.bin") == b"bob"
            assert samples()["aionet_ftp_passive_open"] == 4
            assert samples()["aionet_ftp_passive_capped"] == 4
            assert samples()["aionet_ftp_passive_exhausted"] == 0  # the pool was never empty
            assert code(greedy[0], "EPSV") == "229"  # a new EPSV replaces the session's own
            greedy[0].quit()  # its passive socket closes with the session: a slot is free
            assert code(greedy[3], "EPSV") == "229"
            assert code(greedy[1], "ABOR") == "225"  # ABOR drops the waiting passive socket
            assert put(greedy[2], "g.bin", b"greedy").startswith("226")  # a transfer frees its
            assert put(greedy[1], "h.bin", b"greedy").startswith("226")  # socket when done
            for f in [*greedy[1:], *elsewhere, bob, bob_here]:
                f.quit()
            # a cancelled accept closes its socket a step later
            poll_until(lambda: samples()["aionet_ftp_passive_open"] == 0, 5, what="none open")
            again = [login_from(addr, "127.0.0.1") for _ in range(3)]  # nothing leaked
            assert [code(g, "EPSV") for g in again] == ["229", "229", "229"]
            for f in again:
                f.quit()

        await asyncio.to_thread(run)
    assert (site.root("alice") / "g.bin").read_bytes() == b"greedy"


async def test_active_mode_only_to_the_client(site: Site) -> None:
    async with ftp(site, active=True) as addr:

        def run() -> None:
            f = login(addr)
            f.set_pasv(False)
            assert put(f, "a.bin", b"active").startswith("226")  # PORT to 127.0.0.1
            assert get(f, "a.bin") == b"active"
            assert code(f, "PORT 127,0,0,2,200,10") == "500"  # bounce attempt
            assert code(f, "EPRT |1|10.0.0.1|2000|") == "500"
            f.quit()

        await asyncio.to_thread(run)


async def test_epsv_over_ipv6(site: Site) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("::1 is not available")
    async with ftp(site, bind="[::1]:0") as addr:

        def run() -> None:
            f = ftplib.FTP()
            f.connect("::1", addr[1])
            f.login("alice", PW)
            assert code(f, "PASV") == "425"  # IPv4 only
            assert put(f, "six", b"v6").startswith("226")  # ftplib uses EPSV on IPv6
            assert get(f, "six") == b"v6"
            f.quit()

        await asyncio.to_thread(run)


# -- many sessions, bad passwords, drain, refusal ----------------------------------------------


async def test_50_concurrent_sessions_and_wrong_passwords(site: Site) -> None:
    async with ftp(site) as addr:

        def one(i: int) -> bool:
            f = login(addr)
            data = os.urandom(20_000 + i)
            put(f, f"c{i}.bin", data)
            ok = get(f, f"c{i}.bin") == data
            f.quit()
            return ok

        def run() -> None:
            with ThreadPoolExecutor(50) as pool:
                assert all(pool.map(one, range(50)))
            f = ftplib.FTP()
            f.connect(*addr)
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                f.login("alice", "wrong")
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                f.login("nobody", "wrong")
            f.close()
            g = login(addr)
            assert g.nlst("c7.bin") == ["c7.bin"]  # still serving
            g.quit()

        await asyncio.to_thread(run)
    assert len(list(site.root("alice").iterdir())) == 50


async def test_drain_answers_421_after_the_transfer_and_refusal_is_421(site: Site) -> None:
    cfg = config(site)
    cfg["listeners"][0]["limits"] = {"max_connections": 1}
    big = os.urandom(8 * 1024 * 1024)
    async with serve(cfg, data_dir=site.data) as server:
        addr = server.address("ftp")[:2]
        f = await asyncio.to_thread(login, addr)
        refused = await asyncio.to_thread(socket.create_connection, addr)
        assert (await asyncio.to_thread(refused.recv, 100)).startswith(b"421")
        refused.close()
        conn = await asyncio.to_thread(f.transfercmd, "STOR drained.bin")
        await asyncio.to_thread(conn.sendall, big[:1000])
        shutdown = asyncio.create_task(server.shutdown(timeout=10))
        handler = server.handlers["ftp"]
        assert isinstance(handler, FtpHandler)
        await wait_until(lambda: handler.config.sessions.draining, 5, what="the drain begun")
        await asyncio.to_thread(conn.sendall, big[1000:])  # the transfer in flight finishes
        conn.close()
        assert (await asyncio.to_thread(f.voidresp)).startswith("226")
        assert await asyncio.to_thread(code, f, "NOOP") == "421"
        await shutdown
        f.close()
    assert (site.root("alice") / "drained.bin").read_bytes() == big


async def test_transfers_are_counted_for_metrics(site: Site) -> None:
    async with serve(config(site), data_dir=site.data) as server:
        addr = server.address("ftp")[:2]
        data = os.urandom(300_000)

        def session() -> None:
            f = login(addr)
            put(f, "m.bin", data)
            assert get(f, "m.bin") == data
            f.quit()

        await asyncio.to_thread(session)
        samples = {m.name: m.value for m in server.handlers["ftp"].metrics()}
    assert samples["aionet_ftp_uploads"] == 1 and samples["aionet_ftp_downloads"] == 1
    assert samples["aionet_ftp_received_bytes"] == len(data)
    assert samples["aionet_ftp_sent_bytes"] == len(data)
    assert samples["aionet_ftp_passive_open"] == 0
