"""Hosting real apps: Starlette (ASGI, with lifespan) and Flask (WSGI), in-process and through
``aionet run`` with a YAML file; lifespan failures; app references checked by ``aionet check``."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from aionet.errors import StartupError
from aionet.testing import serve
from tests.conftest import ROOT, run_aionet
from tests.http_helpers import exchange, http_config, split_responses

APPS_DIR = ROOT / "tests" / "apps"
ENV = {"PYTHONPATH": str(APPS_DIR)}


def yaml_config(**options: str) -> str:
    lines = "".join(f"      {k}: {v!r}\n" for k, v in options.items())
    return (
        "logging: {level: info}\n"
        "listeners:\n"
        "  - name: web\n"
        "    protocol: http\n"
        "    bind: 127.0.0.1:0\n"
        "    options:\n" + lines
    )


async def check_starlette(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        home = await client.get("/")
        assert (home.status_code, home.text) == (200, "hello from lifespan")
        echo = await client.post("/echo?q=1", content=b"x" * 1000, headers={"content-type": "a/b"})
        assert echo.json() == {
            "method": "POST",
            "path": "/echo",
            "query": "q=1",
            "length": 1000,
            "content_type": "a/b",
        }
        stream = await client.get("/stream?n=3")
        assert stream.text == "part 0\npart 1\npart 2\n"
        boom = await client.get("/boom")
        assert boom.status_code == 500 and "secret" not in boom.text
        again = await client.get("/")  # the connection survived the error
        assert again.status_code == 200
        missing = await client.get("/nope")
        assert missing.status_code == 404


async def check_flask(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        hello = await client.get("/")
        assert (hello.status_code, hello.text) == (200, "Hello, World!")
        echo = await client.post("/echo", content=b"abcdefghij" * 5000)
        assert echo.json() == {"length": 50000, "first": "abcdefgh", "path": "/echo"}
        stream = await client.get("/stream?n=4")
        assert stream.text == "".join(f"line {i}\n" for i in range(4))
        assert stream.headers["transfer-encoding"] == "chunked"
        boom = await client.get("/boom")
        assert boom.status_code == 500 and "secret" not in boom.text
        assert (await client.get("/")).status_code == 200


async def test_starlette_in_process(tmp_path: Path) -> None:
    config = http_config(app="tests.apps.starlette_app:app")
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")
        await check_starlette(f"http://{host}:{port}")


async def test_flask_in_process(tmp_path: Path) -> None:
    config = http_config(wsgi="tests.apps.flask_app:app", wsgi_threads=2)
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")
        await check_flask(f"http://{host}:{port}")
        # Concurrency beyond the pool size queues, and still completes.
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            replies = await asyncio.gather(*(client.get("/") for _ in range(10)))
        assert {r.status_code for r in replies} == {200}


def test_starlette_and_flask_through_aionet_run(daemon: Any) -> None:
    starlette = daemon(yaml_config(app="starlette_app:app"), env=ENV)
    host, port = starlette.address("web")
    asyncio.run(check_starlette(f"http://{host}:{port}"))
    entry = starlette.wait_for("http_request", path="/echo")
    assert entry["logger"] == "aionet.access"
    assert entry["method"] == "POST" and entry["status"] == 200 and entry["request_id"]
    assert starlette.wait_for("http_app_error", path="/boom")["exception"]  # traceback logged
    flask = daemon(yaml_config(wsgi="flask_app:app"), env=ENV)
    host, port = flask.address("web")
    asyncio.run(check_flask(f"http://{host}:{port}"))


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        ("raw_apps:failing_lifespan", "ASGI lifespan startup failed: database unreachable"),
        (
            "raw_apps:raising_lifespan",
            "ASGI lifespan startup failed: ConnectionRefusedError: cache server down",
        ),
    ],
)
def test_failing_lifespan_startup_fails_aionet_run(daemon: Any, app: str, reason: str) -> None:
    proc = daemon(yaml_config(app=app), env=ENV)
    assert proc.wait() == 1
    last = proc.lines[-1]
    assert last.startswith("aionet: ") and reason in last, proc.lines[-5:]


async def test_app_without_lifespan_support_is_fine(tmp_path: Path) -> None:
    async with serve(http_config(app="tests.apps.raw_apps:hello"), data_dir=tmp_path) as server:
        data, _ = await exchange(*server.address("web"), b"GET / HTTP/1.0\r\n\r\n")
        assert split_responses(data)[0].body == b"hello"


async def test_lifespan_on_makes_an_unsupported_app_fatal(tmp_path: Path) -> None:
    config = http_config(app="tests.apps.raw_apps:hello", lifespan="on")
    with pytest.raises(StartupError, match="lifespan startup failed: AssertionError"):
        async with serve(config, data_dir=tmp_path):
            pass


def test_bad_app_reference_is_a_positioned_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_config(app="no_such_module_xyz:app"))
    result = run_aionet("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"{path}:7:12: listeners[0].options.app: cannot import module 'no_such_module_xyz': "
        "no module named 'no_such_module_xyz' (references import from the config file's "
        "directory, each http listener's app_dir and installed packages: put it there, set "
        "app_dir, or pip install it)\n"
    )


async def test_wsgi_environ_input_close_and_exc_info(tmp_path: Path) -> None:
    from tests.apps import raw_apps

    raw_apps.WSGI_CLOSED.clear()
    config = http_config(wsgi="tests.apps.raw_apps:wsgi_app", wsgi_threads=3)
    async with serve(config, data_dir=tmp_path) as server:
        host, port = server.address("web")
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            streamed = await client.get("/stream-me")
            assert streamed.text == "/stream-me:0\n/stream-me:1\n/stream-me:2\n"
            body = b"line\n" * 3000
            assert (
                await client.post("/input", content=body)
            ).content == b"15000:line\nline\nline\nl"
            assert (await client.post("/lines", content=body)).text == "3000"
            replaced = await client.get("/exc")
            assert (replaced.status_code, replaced.text) == (502, "replaced")
            env = await client.get("/environ?a=1", headers={"x-a": "b", "x_a": "spoof"})
            assert env.text == "GET|/environ|a=1|HTTP/1.1|b"
    assert raw_apps.WSGI_CLOSED == ["/stream-me"]
    assert all(name.startswith("aionet-wsgi") for name in raw_apps.WSGI_THREADS)
    assert threading.current_thread().name not in raw_apps.WSGI_THREADS
