"""Implicit TLS, SNI, client certificates, STARTTLS and reload, with the stdlib ssl client."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from aionet.testing import serve
from tests.waiting import wait_until

from .conftest import Pki


@pytest.fixture
def pki(pki: Pki) -> Pki:
    """The shared CA, with two more certificates: alpha (its names and loopback) and beta."""
    pki.issue("alpha", "alpha.test", "localhost", "127.0.0.1")
    pki.issue("beta", "*.beta.test")
    return pki


def config(pki: Pki, **tls: Any) -> dict[str, Any]:
    return {
        "tls": {
            "certificates": [
                pki.certificate("alpha", files="alpha"),
                pki.certificate("beta", files="beta"),
            ]
        },
        "listeners": [
            {
                "name": "who",
                "protocol": "tests.e2e.tls_handlers:WhoAmI",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": ["alpha", "beta"], **tls},
            }
        ],
    }


async def ask(addr: Any, ctx: ssl.SSLContext | None, name: str | None = "alpha.test") -> Any:
    reader, writer = await asyncio.open_connection(*addr[:2], ssl=ctx, server_hostname=name)
    try:
        writer.write(b"?\n")
        answer = json.loads(await reader.readline())
        return answer, writer.get_extra_info("peercert")
    finally:
        writer.close()


def sans(cert: dict[str, Any]) -> list[str]:
    return [v for _, v in cert["subjectAltName"]]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_tls13_and_tls12_are_accepted(
    pki: Pki, version: ssl.TLSVersion, tmp_path: Path
) -> None:
    async with serve(config(pki), data_dir=tmp_path) as server:
        ctx = pki.client(minimum_version=version, maximum_version=version)
        answer, _ = await ask(server.address("who"), ctx)
        assert answer["tls"] is True
        assert answer["version"] == {"TLSv1_3": "TLSv1.3", "TLSv1_2": "TLSv1.2"}[version.name]


async def test_tls11_is_refused_and_the_listener_carries_on(pki: Pki, tmp_path: Path) -> None:
    async with serve(config(pki), data_dir=tmp_path) as server:
        ctx = pki.client()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # we mean to offer only 1.1
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await ask(server.address("who"), ctx)
        answer, _ = await ask(server.address("who"), pki.client())
        assert answer["tls"] is True


async def test_sni_picks_the_certificate(pki: Pki, tmp_path: Path) -> None:
    async with serve(config(pki), data_dir=tmp_path) as server:
        addr = server.address("who")
        _, alpha = await ask(addr, pki.client(), "alpha.test")
        assert "alpha.test" in sans(alpha)
        _, beta = await ask(addr, pki.client(), "www.beta.test")
        assert sans(beta) == ["*.beta.test"]
        lax = pki.client(check_hostname=False)
        _, fallback = await ask(addr, lax, "unknown.test")  # no match: the default (first) cert
        assert "alpha.test" in sans(fallback)
        _, deep = await ask(addr, lax, "a.b.beta.test")  # a wildcard covers one label only
        assert "alpha.test" in sans(deep)


async def test_client_certificate_required(pki: Pki, tmp_path: Path) -> None:
    cfg = config(pki, client_ca=str(pki.ca_file), verify="required")
    async with serve(cfg, data_dir=tmp_path) as server:
        addr = server.address("who")
        with pytest.raises(
            (ssl.SSLError, ConnectionError, json.JSONDecodeError, asyncio.IncompleteReadError)
        ):
            await ask(addr, pki.client())
        ctx = pki.client()
        pki.ca.issue_cert("client@example.test", common_name="client-1").configure_cert(ctx)
        answer, _ = await ask(addr, ctx)
        assert answer["identity"]["common_name"] == "client-1"
        assert answer["identity"]["san"] == ["client@example.test"]


async def test_client_certificate_optional(pki: Pki, tmp_path: Path) -> None:
    cfg = config(pki, client_ca=str(pki.ca_file), verify="optional")
    async with serve(cfg, data_dir=tmp_path) as server:
        addr = server.address("who")
        anonymous, _ = await ask(addr, pki.client())
        assert anonymous["identity"] is None
        ctx = pki.client()
        pki.ca.issue_cert("c.test", common_name="c").configure_cert(ctx)
        named, _ = await ask(addr, ctx)
        assert named["identity"]["common_name"] == "c"


async def test_plain_text_to_a_tls_port_is_closed_and_counted(pki: Pki, tmp_path: Path) -> None:
    async with serve(config(pki), data_dir=tmp_path) as server:
        host, port = server.address("who")
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"HELO plain text\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()
        truncated_r, truncated_w = await asyncio.open_connection(host, port)
        truncated_w.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # ClientHello, cut
        truncated_w.write_eof()
        assert await asyncio.wait_for(truncated_r.read(), 5) == b""
        truncated_w.close()
        stats = server.manager.slots["who"].stats
        await wait_until(lambda: stats.tls_failures == 2, 5, what="both handshakes failed")
        answer, _ = await ask((host, port), pki.client())
        assert answer["tls"] is True


async def test_starttls_upgrade_in_place(pki: Pki, tmp_path: Path) -> None:
    cfg = config(pki)
    del cfg["listeners"][0]["tls"]  # plain listener; the handler upgrades on request
    async with serve(cfg, data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*server.address("who"))
        writer.write(b"?\n")
        assert json.loads(await reader.readline())["tls"] is False
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(pki.client(), server_hostname="alpha.test")
        writer.write(b"?\n")
        answer = json.loads(await reader.readline())
        assert answer["tls"] is True and answer["version"] == "TLSv1.3"
        writer.close()
        # the upgraded connection was still tracked: its close releases it
        await wait_until(lambda: server.manager.live == {}, 5, what="the connection released")


async def test_reload_serves_the_new_cert_to_new_handshakes_only(pki: Pki, tmp_path: Path) -> None:
    d = pki.dir
    async with serve(config(pki), data_dir=tmp_path) as server:
        addr = server.address("who")
        reader, writer = await asyncio.open_connection(
            *addr, ssl=pki.client(), server_hostname="alpha.test"
        )
        old_serial = writer.get_extra_info("ssl_object").getpeercert()["serialNumber"]
        new = pki.ca.issue_cert("alpha.test", "renewed.test")
        new.private_key_pem.write_to_path(str(d / "alpha.key"))
        new.cert_chain_pems[0].write_to_path(str(d / "alpha.pem"))
        assert server.reload_tls() is True
        _, served = await ask(addr, pki.client())
        assert "renewed.test" in sans(served)
        assert served["serialNumber"] != old_serial
        writer.write(b"?\n")  # the old session carries on untouched
        assert json.loads(await reader.readline())["tls"] is True
        # A broken pair is rejected and the current certificate stays.
        (d / "alpha.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a cert\n")
        assert server.reload_tls() is False
        _, still = await ask(addr, pki.client())
        assert "renewed.test" in sans(still)
        writer.close()


async def test_unknown_certificate_name_is_a_config_error(pki: Pki) -> None:
    from aionet.core.preflight import load_config_text
    from aionet.errors import ConfigError

    text = "listeners:\n  - name: w\n    protocol: echo\n    bind: 127.0.0.1:0\n    tls: nosuch\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "t.yaml")
    assert [str(i) for i in info.value.issues] == [
        "t.yaml:5:10: listeners[0].tls: unknown certificate 'nosuch' "
        "(tls.certificates: none are defined)"
    ]


@pytest.mark.tool("openssl")
async def test_openssl_s_client(pki: Pki, tmp_path: Path) -> None:
    async with serve(config(pki), data_dir=tmp_path) as server:
        host, port = server.address("who")

        def s_client(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"{host}:{port}",
                    "-CAfile",
                    str(pki.ca_file),
                    *args,
                ],
                input="?\n",
                capture_output=True,
                text=True,
                timeout=20,
            )

        # The wildcard certificate must be the one served for a beta name (SNI), and verify.
        ok = await asyncio.to_thread(
            s_client,
            "-servername",
            "www.beta.test",
            "-verify_hostname",
            "www.beta.test",
            "-verify_return_error",
            "-brief",
        )
        assert ok.returncode == 0, ok.stderr
        assert "Verification: OK" in ok.stderr
        wrong = await asyncio.to_thread(
            s_client,
            "-servername",
            "alpha.test",
            "-verify_hostname",
            "www.beta.test",
            "-verify_return_error",
            "-brief",
        )
        assert wrong.returncode != 0  # alpha's certificate does not cover the beta name
        old = await asyncio.to_thread(s_client, "-tls1_1", "-brief")
        assert old.returncode != 0


async def test_proxy_header_comes_before_the_tls_handshake(pki: Pki, tmp_path: Path) -> None:
    from aionet.proto.proxy import build_v2

    cfg = config(pki)
    cfg["listeners"][0] |= {"proxy_protocol": True, "trusted_proxies": ["127.0.0.1"]}
    async with serve(cfg, data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*server.address("who"))
        writer.write(build_v2(("192.0.2.44", 5555), ("127.0.0.1", 443)))
        await writer.drain()
        await writer.start_tls(pki.client(), server_hostname="alpha.test")
        writer.write(b"?\n")
        answer = json.loads(await reader.readline())
        assert answer["tls"] is True and answer["peer"] == ["192.0.2.44", 5555]
        writer.close()


async def test_starttls_for_a_protocol_handler(pki: Pki, tmp_path: Path) -> None:
    cfg = config(pki)
    cfg["listeners"] = [
        {"name": "up", "protocol": "tests.e2e.tls_handlers:UpgradingEcho", "bind": "127.0.0.1:0"}
    ]
    async with serve(cfg, data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*server.address("up"))
        writer.write(b"one\n")
        assert await reader.readline() == b"plain one\n"
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(pki.client(), server_hostname="alpha.test")
        writer.write(b"two\n")
        assert await reader.readline() == b"tls two\n"
        [rec] = server.manager.live.values()
        assert rec.transport.get_extra_info("ssl_object") is not None  # the core has the TLS one
        writer.close()
        await wait_until(lambda: server.manager.live == {}, 5, what="the connection released")


def _tls11_client_hello() -> bytes:
    """A ClientHello offering only TLS 1.0/1.1, as an old client sends it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


async def test_a_tls11_client_gets_the_protocol_version_alert(pki: Pki, tmp_path: Path) -> None:
    """RFC 8446 6.2 / RFC 8996 5: a refused old version gets a fatal protocol_version (70)
    alert, not a bare close (asyncio's and uvloop's SSL layers drop the one OpenSSL writes)."""
    hello = _tls11_client_hello()
    async with serve(config(pki), data_dir=tmp_path) as server:
        reader, writer = await asyncio.open_connection(*server.address("who")[:2])
        writer.write(hello)
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        assert reply[:1] == b"\x15" and reply[3:5] == b"\x00\x02"  # an alert record
        assert reply[5:7] == b"\x02\x46"  # fatal, protocol_version
        assert server.manager.slots["who"].stats.tls_failures == 1
        answer, _ = await ask(server.address("who"), pki.client())  # the listener lives
        assert answer["tls"]
