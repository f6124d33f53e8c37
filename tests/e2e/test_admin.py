"""The admin listener: health and readiness, Prometheus metrics, live table, auth, reload, drain."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aionet.admin.app import hash_token
from aionet.auth.users import UserStore
from aionet.testing import serve
from tests.conftest import Daemon

VIEWER, ADMIN = "viewer-token-0123456789", "admin-token-9876543210"


def config(tmp_path: Path, users_file: Path | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"data_dir": str(tmp_path / "var")},
        "logging": {"level": "warning"},
        "listeners": [
            {"name": "echo", "protocol": "echo", "bind": "127.0.0.1:0"},
            {"name": "web", "protocol": "http", "bind": "127.0.0.1:0",
             "options": {"app": "tests.apps.raw_apps:hello", "access_log": False}},
            {"name": "admin", "protocol": "admin", "bind": "127.0.0.1:0", "options": {"tokens": [
                {"name": "prom", "role": "viewer", "sha256": hash_token(VIEWER)},
                {"name": "ops", "role": "admin", "sha256": hash_token(ADMIN)},
            ]}},
        ],
    }  # fmt: skip
    if users_file is not None:
        cfg["auth"] = {"users_file": str(users_file)}
    return cfg


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], name: str, **labels: str) -> float:
    for family in fams.values():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise KeyError(f"{name} {labels}")


async def test_metrics_parse_and_move_with_traffic(tmp_path: Path) -> None:
    async with serve(config(tmp_path)) as server:
        admin = "http://{}:{}".format(*server.address("admin"))
        web = "http://{}:{}".format(*server.address("web"))
        async with httpx.AsyncClient(base_url=admin, headers=bearer(VIEWER)) as client:
            before = families((await client.get("/metrics")).text)
            assert value(before, "aionet_connections_accepted_total", listener="echo") == 0
            reader, writer = await asyncio.open_connection(*server.address("echo"))
            writer.write(b"x" * 100)
            await writer.drain()
            assert await reader.readexactly(100) == b"x" * 100
            async with httpx.AsyncClient(base_url=web) as w:
                for _ in range(5):
                    assert (await w.get("/")).status_code == 200
            response = await client.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            after = families(response.text)
            assert value(after, "aionet_connections_accepted_total", listener="echo") == 1
            assert value(after, "aionet_connections_open", listener="echo") == 1
            assert value(after, "aionet_received_bytes_total", listener="echo") == 100
            assert value(after, "aionet_sent_bytes_total", listener="echo") == 100
            assert value(after, "aionet_http_requests_total", listener="web", code="2xx") == 5
            count = value(after, "aionet_http_request_duration_seconds_count", listener="web")
            assert count == 5
            inf = value(after, "aionet_http_request_duration_seconds_bucket", listener="web",
                        le="+Inf")  # fmt: skip
            assert inf == 5
            assert value(after, "aionet_ready") == 1
            assert "aionet_process_resident_memory_bytes" in after or any(
                "process_resident_memory" in n for n in after
            )
            writer.close()


async def test_health_readiness_and_drain(tmp_path: Path) -> None:
    async with serve(config(tmp_path)) as server:
        admin = "http://{}:{}".format(*server.address("admin"))
        async with httpx.AsyncClient(base_url=admin) as client:
            assert (await client.get("/healthz")).text == "ok\n"
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.post("/drain", headers=bearer(ADMIN))).status_code == 202
        async with httpx.AsyncClient(base_url=admin) as client:  # drain closed keep-alive
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.text == "draining\n"
            assert (await client.get("/healthz")).status_code == 200
            # still accepting while draining: a load balancer takes us out of rotation first
            reader, writer = await asyncio.open_connection(*server.address("echo"))
            writer.write(b"hi")
            assert await reader.readexactly(2) == b"hi"
            writer.close()
            # ...and the drain can be called off: ready again (a second undo has nothing to do)
            undo = await client.post("/undrain", headers=bearer(ADMIN))
            assert undo.status_code == 200 and undo.json() == {"draining": False, "undone": True}
            assert (await client.get("/readyz")).status_code == 200
            again = await client.post("/undrain", headers=bearer(ADMIN))
            assert again.status_code == 409 and again.json()["undone"] is False
            assert (await client.post("/undrain", headers=bearer(VIEWER))).status_code == 403


async def test_the_index_lists_the_endpoints(tmp_path: Path) -> None:
    async with serve(config(tmp_path)) as server:
        admin = "http://{}:{}".format(*server.address("admin"))
        async with httpx.AsyncClient(base_url=admin) as client:
            assert (await client.get("/")).status_code == 401
            index = (await client.get("/", headers=bearer(VIEWER))).json()["endpoints"]
    listed = {(e["method"], e["path"]) for e in index}
    assert {("GET", "/metrics"), ("POST", "/drain"), ("POST", "/undrain")} <= listed
    assert {"path": "/healthz", "method": "GET", "roles": None} in index


async def test_admin_auth(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    store = UserStore.load(users, missing_ok=True)
    store.add("olga", "s3cret-pass", ("admin",))
    store.add("vic", "v1ewer-pass", ("viewer",))
    store.add("mail", "mail-pass-1", ("mail",))
    store.close()
    async with serve(config(tmp_path, users)) as server:
        admin = "http://{}:{}".format(*server.address("admin"))
        async with httpx.AsyncClient(base_url=admin) as client:
            none = await client.get("/metrics")
            assert none.status_code == 401
            # One challenge per header, Basic first: browsers read only a header's first
            # challenge, so a joined `Bearer ..., Basic ...` never prompted (test_browser.py).
            assert none.headers.get_list("www-authenticate") == [
                'Basic realm="aionet"',
                'Bearer realm="aionet"',
            ]
            assert (await client.get("/metrics", headers=bearer("wrong"))).status_code == 401
            assert (await client.get("/metrics", headers={"Authorization": "Basic !!"})
                    ).status_code == 401  # fmt: skip
            assert (await client.get("/metrics", headers=bearer(VIEWER))).status_code == 200
            assert (await client.get("/connections", headers=bearer(VIEWER))).status_code == 200
            assert (await client.post("/reload", headers=bearer(VIEWER))).status_code == 403
            assert (await client.post("/drain", headers=bearer(VIEWER))).status_code == 403
            assert (await client.get("/metrics", auth=("vic", "v1ewer-pass"))).status_code == 200
            assert (await client.post("/drain", auth=("vic", "v1ewer-pass"))).status_code == 403
            assert (await client.get("/metrics", auth=("mail", "mail-pass-1"))).status_code == 403
            assert (await client.get("/metrics", auth=("olga", "wrong"))).status_code == 401
            assert (await client.get("/reload")).status_code == 405
            assert (await client.get("/nope")).status_code == 404
            assert not server.drain_requested
            # Cached Basic credentials alone cannot change state (a cross-site form would
            # carry them): a POST needs a bearer token or the X-Aionet-Request header.
            olga = ("olga", "s3cret-pass")
            assert (await client.post("/drain", auth=olga)).status_code == 403
            cross = {"X-Aionet-Request": "1", "Origin": "http://evil.example"}
            assert (await client.post("/drain", auth=olga, headers=cross)).status_code == 403
            site = {"X-Aionet-Request": "1", "Sec-Fetch-Site": "cross-site"}
            assert (await client.post("/drain", auth=olga, headers=site)).status_code == 403
            assert (await client.get("/metrics", auth=olga, headers=site)).status_code == 403
            assert not server.drain_requested
            same = {"X-Aionet-Request": "1", "Origin": admin, "Sec-Fetch-Site": "same-origin"}
            assert (await client.post("/drain", auth=olga, headers=same)).status_code == 202
            assert server.drain_requested


async def test_connections_table_is_filterable(tmp_path: Path) -> None:
    async with serve(config(tmp_path)) as server:
        admin = "http://{}:{}".format(*server.address("admin"))
        reader, writer = await asyncio.open_connection(*server.address("echo"))
        writer.write(b"abc")
        await reader.readexactly(3)
        async with httpx.AsyncClient(base_url=admin, headers=bearer(VIEWER)) as client:
            table = (await client.get("/connections", params={"listener": "echo"})).json()
            [row] = table["connections"]
            assert row["listener"] == "echo" and row["bytes_in"] == 3 and row["bytes_out"] == 3
            local = writer.get_extra_info("sockname")
            assert row["peer"] == f"{local[0]}:{local[1]}"
            everything = (await client.get("/connections")).json()
            assert {r["listener"] for r in everything["connections"]} == {"echo", "admin"}
        writer.close()


def test_post_reload_rereads_the_file(daemon: Any, tmp_path: Path) -> None:
    text = (
        "logging: {level: info}\n"
        "listeners:\n"
        "  - {name: admin, protocol: admin, bind: '127.0.0.1:0', options: {tokens: [\n"
        f"      {{name: ops, role: admin, sha256: {hash_token(ADMIN)}}}]}}}}\n"
    )
    d: Daemon = daemon(text)
    base = "http://{}:{}".format(*d.address("admin"))
    (tmp_path / "aionet.yaml").write_text(
        text + "  - {name: echo, protocol: echo, bind: '127.0.0.1:0'}\n"
    )
    response = httpx.post(base + "/reload", headers=bearer(ADMIN), timeout=10)
    assert response.status_code == 200 and response.json() == {"reloaded": True}
    assert d.wait_for("config_reloaded")["added"] == ["echo"]
    (tmp_path / "aionet.yaml").write_text(text + "  - {name: echo, protocol: echo}\n")
    response = httpx.post(base + "/reload", headers=bearer(ADMIN), timeout=10)
    assert response.status_code == 409 and response.json()["reloaded"] is False
    assert response.json()["errors"] == [
        f"{tmp_path / 'aionet.yaml'}:5:5: listeners[1].bind: required key is missing"
    ]
    metrics = families(httpx.get(base + "/metrics", headers=bearer(ADMIN)).text)
    assert value(metrics, "aionet_reloads_total", result="applied") == 1
    assert value(metrics, "aionet_reloads_total", result="failed") == 1
    d.send_signal(signal.SIGTERM)
    assert d.wait() == 0


def test_aionet_token_prints_a_token_and_its_hash() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aionet", "token", "--role", "admin", "--name", "ci"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = done.stdout.removesuffix("\n")  # TOKEN=$(aionet token) gets the token alone
    entry = done.stderr.splitlines()[-1]
    assert len(token) >= 40 and "\n" not in token and " " not in token
    assert entry == f"- {{name: ci, role: admin, sha256: {hash_token(token)}}}"
    assert json.dumps(entry)  # one line of YAML flow mapping
