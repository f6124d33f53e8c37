"""Reload (``Server.reload`` and SIGHUP): listeners diffed by name, no accepted connection lost.

Unchanged listeners keep their sockets, handler and connections; a changed one keeps its
sockets and sends new connections to a new handler while the old one's connections finish;
a changed bind rebinds; removed listeners stop accepting and drain; new ones bind; an invalid
file changes nothing.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import httpx
import pytest

from aionet.core.preflight import config_from_dict, load_config
from aionet.testing import serve
from tests.conftest import Daemon
from tests.waiting import wait_until


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (a DNS listener binds both)."""
    for _ in range(50):
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            try:
                u.bind(t.getsockname())
            except OSError:
                continue
            return int(t.getsockname()[1])
    raise RuntimeError("no port free for TCP and UDP")


def base(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "server": {"data_dir": str(tmp_path), "shutdown_timeout": "5s"},
        "logging": {"level": "warning"},
        "listeners": [
            {"name": "echo", "protocol": "echo", "bind": "127.0.0.1:0"},
            zone_listener(f"127.0.0.1:{free_port()}", "192.0.2.1"),
            *extra.get("more", []),
        ],
    }


def zone_listener(bind: str, address: str) -> dict[str, Any]:
    return {
        "name": "dns",
        "protocol": "dns",
        "bind": bind,
        "options": {"zones": {"aionet.test": {"records": [
            {"name": "www", "type": "A", "value": address}
        ]}}},
    }  # fmt: skip


def pinned(cfg: dict[str, Any], server: Any) -> dict[str, Any]:
    """``cfg`` with every listener bound where ``server`` bound it (port 0 → its real port)."""
    out = dict(cfg)
    listeners = []
    for lc in cfg["listeners"]:
        lc = dict(lc)
        if lc["bind"].endswith(":0") and lc["name"] in server.listeners:
            host, port = server.address(lc["name"])[:2]
            lc["bind"] = f"{host}:{port}"
        listeners.append(lc)
    out["listeners"] = listeners
    return out


def ask(addr: tuple[str, int], tcp: bool = False) -> list[str]:
    query = dns.message.make_query("www.aionet.test", "A")
    reply = (dns.query.tcp if tcp else dns.query.udp)(query, addr[0], port=addr[1], timeout=3)
    return [r.to_text() for rrset in reply.answer for r in rrset]


def udp_echo(addr: tuple[str, int]) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"hello", addr)
        return s.recv(100)


async def echo_roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"ping\n")
    await writer.drain()
    return await asyncio.wait_for(reader.readline(), 3)


async def test_changed_options_apply_to_new_traffic_on_the_same_sockets(tmp_path: Path) -> None:
    cfg = base(tmp_path)
    async with serve(cfg) as server:
        cfg = pinned(cfg, server)
        udp, tcp = server.address("dns", "udp"), server.address("dns", "tcp")
        echo = server.address("echo")
        assert await asyncio.to_thread(ask, udp) == ["192.0.2.1"]
        # A live TCP DNS session and a live echo connection, opened before the reload.
        reader, writer = await asyncio.open_connection(*echo)
        assert await echo_roundtrip(reader, writer) == b"ping\n"
        old_dns = server.handlers["dns"]
        old_echo = server.handlers["echo"]

        cfg["listeners"][1] = zone_listener(f"{tcp[0]}:{tcp[1]}", "192.0.2.2")
        assert await server.reload(config_from_dict(cfg))

        assert server.handlers["echo"] is old_echo  # unchanged: untouched
        assert server.handlers["dns"] is not old_dns
        assert server.address("dns", "udp") == udp and server.address("dns", "tcp") == tcp
        assert await asyncio.to_thread(ask, udp) == ["192.0.2.2"]
        assert await asyncio.to_thread(ask, tcp, True) == ["192.0.2.2"]
        assert await echo_roundtrip(reader, writer) == b"ping\n"  # the echo session lives on
        writer.close()


async def test_added_removed_and_rebound_listeners(tmp_path: Path) -> None:
    cfg = base(tmp_path)
    async with serve(cfg) as server:
        cfg = pinned(cfg, server)
        echo = server.address("echo")
        reader, writer = await asyncio.open_connection(*echo)
        assert await echo_roundtrip(reader, writer) == b"ping\n"
        old_echo = server.handlers["echo"]
        stopped: list[str] = []
        original_stop = old_echo.stop

        async def stop() -> None:
            stopped.append("echo")
            await original_stop()

        old_echo.stop = stop  # type: ignore[method-assign]

        # echo removed, udp-echo added, dns moved to another port.
        cfg["listeners"] = [
            {"name": "udp", "protocol": "udp-echo", "bind": "127.0.0.1:0"},
            zone_listener(f"127.0.0.1:{free_port()}", "192.0.2.3"),
        ]
        assert await server.reload(config_from_dict(cfg))

        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*echo)  # no longer accepting
        # ... but the connection it had accepted is served to the end (drained, not dropped).
        assert await echo_roundtrip(reader, writer) == b"ping\n"
        assert stopped == []  # the old handler stops only once its last connection is gone
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: stopped, 2, what="the old handler stopped")
        assert stopped == ["echo"]

        assert await asyncio.to_thread(udp_echo, server.address("udp", "udp")) == b"hello"
        assert await asyncio.to_thread(ask, server.address("dns", "udp")) == ["192.0.2.3"]


async def test_invalid_new_configs_change_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - name: dns\n    protocol: dns\n    bind: nope\n")
    cfg = base(tmp_path)
    async with serve(cfg) as server:
        udp = server.address("dns", "udp")
        handlers = dict(server.handlers)
        server.config_path = str(bad)
        assert not await server.reload()  # a file that does not validate
        # A handler whose start fails: an ASGI app whose lifespan startup raises.
        broken = pinned(cfg, server)
        broken["listeners"].append({
            "name": "web", "protocol": "http", "bind": "127.0.0.1:0",
            "options": {"app": "tests.apps.raw_apps:failing_lifespan"},
        })  # fmt: skip
        broken["listeners"][1] = zone_listener(f"{udp[0]}:{udp[1]}", "192.0.2.9")
        assert not await server.reload(config_from_dict(broken))
        assert server.handlers == handlers
        assert "web" not in server.listeners
        assert await asyncio.to_thread(ask, udp) == ["192.0.2.1"]


async def test_http_traffic_through_a_reload_sees_no_error(tmp_path: Path) -> None:
    def web(header: str, bind: str = "127.0.0.1:0") -> dict[str, Any]:
        return {
            "name": "web", "protocol": "http", "bind": bind,
            "options": {"app": "tests.apps.raw_apps:hello", "access_log": False,
                        "keepalive_timeout": f"{header}"},
        }  # fmt: skip

    cfg = base(tmp_path, more=[web("5s")])
    async with serve(cfg) as server:
        cfg = pinned(cfg, server)
        host, port = server.address("web")
        url = f"http://{host}:{port}/"
        done = asyncio.Event()
        results: list[int] = []
        errors: list[BaseException] = []

        async def load() -> None:
            async with httpx.AsyncClient(timeout=5) as client:
                while not done.is_set():
                    try:
                        results.append((await client.get(url)).status_code)
                    except httpx.HTTPError as exc:
                        errors.append(exc)

        clients = [asyncio.create_task(load()) for _ in range(4)]

        async def more_requests(n: int = 8) -> None:
            """The clients keep the server busy: ``n`` more answers (or errors) arrive."""
            seen = len(results) + len(errors)
            await wait_until(lambda: len(results) + len(errors) >= seen + n, 10)

        await more_requests()
        handlers = {server.handlers["web"]}
        for n in range(3):  # three reloads, each changing the web listener (same port)
            cfg["listeners"][2] = web(f"{6 + n}s", f"{host}:{port}")
            assert await server.reload(config_from_dict(cfg))
            handlers.add(server.handlers["web"])
            await more_requests()  # requests answered by the new handler, under load
        done.set()
        await asyncio.gather(*clients)
        assert errors == []
        assert len(results) > 20 and set(results) == {200}
        assert len(handlers) == 4  # each reload really put a new handler in place


def test_sighup_reloads_the_file_and_an_invalid_file_changes_nothing(
    daemon: Any, tmp_path: Path
) -> None:
    config = tmp_path / "aionet.yaml"
    text = (
        "logging: {level: info}\n"
        "listeners:\n"
        "  - {name: echo, protocol: echo, bind: '127.0.0.1:0'}\n"
    )
    d: Daemon = daemon(text)
    echo = d.address("echo")
    config.write_text(text + "  - {name: echo2, protocol: echo, bind: '127.0.0.1:0'}\n")
    d.send_signal(signal.SIGHUP)
    reloaded = d.wait_for("config_reloaded")
    assert reloaded["added"] == ["echo2"] and reloaded["removed"] == []
    for addr in (echo, d.address("echo2")):
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"x\n")
            assert s.recv(10) == b"x\n"
    config.write_text(text + "  - {name: echo2, protocol: nope, bind: '127.0.0.1:0'}\n")
    d.send_signal(signal.SIGHUP)
    failed = d.wait_for("reload_failed")  # logged once the refused reload is all done
    assert any("nope" in e for e in failed["errors"]), failed
    echo2 = d.address("echo2")
    with socket.create_connection(echo2, timeout=5) as s:
        s.sendall(b"y\n")
        assert s.recv(10) == b"y\n"
    # echo changed (a connection cap), echo2 removed.
    d.logs.clear()
    config.write_text(text.replace("bind: '127.0.0.1:0'}", f"bind: '{echo[0]}:{echo[1]}', "
                                   "limits: {max_connections: 5}}"))  # fmt: skip
    d.send_signal(signal.SIGHUP)
    reloaded = d.wait_for("config_reloaded")
    assert reloaded["changed"] == ["echo"] and reloaded["removed"] == ["echo2"], reloaded
    with socket.create_connection(echo, timeout=5) as s:
        s.sendall(b"z\n")
        assert s.recv(10) == b"z\n"
    try:
        socket.create_connection(echo2, timeout=5).close()
        raise AssertionError("echo2 still accepts after its removal")
    except ConnectionRefusedError:
        pass
    d.send_signal(signal.SIGTERM)
    assert d.wait() == 0


async def test_zone_files_are_reread_on_reload_even_when_the_yaml_is_unchanged(
    tmp_path: Path,
) -> None:
    zone = tmp_path / "aionet.test.zone"
    record = "$ORIGIN aionet.test.\n@ SOA ns1 host 1 3600 600 86400 300\n@ NS ns1\nwww A {}\n"
    zone.write_text(record.format("192.0.2.10"))
    config = tmp_path / "aionet.yaml"
    config.write_text(
        f"server: {{data_dir: '{tmp_path}'}}\n"
        "listeners:\n"
        f"  - name: dns\n    protocol: dns\n    bind: 127.0.0.1:{free_port()}\n"
        f"    options: {{zones: {{aionet.test: {{zone_file: '{zone}'}}}}}}\n"
    )
    async with serve(load_config(config)) as server:
        server.config_path = str(config)
        udp = server.address("dns", "udp")
        assert await asyncio.to_thread(ask, udp) == ["192.0.2.10"]
        zone.write_text(record.format("192.0.2.11"))
        assert await server.reload()
        assert await asyncio.to_thread(ask, udp) == ["192.0.2.11"]
        zone.write_text("www A not-an-address\n")  # broken: logged, the old zone stays
        assert not await server.reload()
        assert await asyncio.to_thread(ask, udp) == ["192.0.2.11"]
