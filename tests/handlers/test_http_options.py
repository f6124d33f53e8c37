"""The ``http`` handler's options, its lifespan runner and its WSGI environ, without sockets."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError
from structlog.testing import capture_logs

from aionet.core.handler import Services
from aionet.core.preflight import load_config_text
from aionet.errors import ConfigError
from aionet.handlers.http import HttpHandler, HttpOptions
from aionet.http.lifespan import Lifespan, LifespanError
from aionet.http.wsgi import build_environ


def test_defaults_and_human_units() -> None:
    default = HttpOptions()
    assert (default.max_header_size, default.max_body_size) == (65536, 10 * 1024 * 1024)
    assert (default.header_timeout, default.keepalive_timeout) == (10.0, 5.0)
    assert (default.send_timeout, default.body_timeout) == (60.0, 60.0)
    assert default.access_log and default.wsgi_threads == 16
    options = HttpOptions.model_validate(
        {"max_body_size": "1MiB", "header_timeout": "250ms", "keepalive_timeout": "2m"}
    )
    assert (options.max_body_size, options.header_timeout, options.keepalive_timeout) == (
        1024 * 1024,
        0.25,
        120.0,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"app": "nomodule_qq:app"}, "cannot import module 'nomodule_qq'"),
        ({"app": "tests.apps.raw_apps:missing"}, "has no attribute 'missing'"),
        ({"app": "tests.apps.raw_apps"}, "must be in the form"),
        ({"app": "tests.apps.raw_apps:STATE"}, "is not callable"),
        ({"wsgi": "nomodule_qq:app"}, "cannot import module"),
        (
            {"app": "tests.apps.raw_apps:hello", "wsgi": "tests.apps.raw_apps:wsgi_app"},
            "choose one of app, wsgi and static_dir",
        ),
        ({"max_header_size": "100"}, "at least 1KiB"),
        ({"wsgi_threads": 0}, "greater than or equal to 1"),
        ({"header_timeout": "soon"}, "expected a duration"),
        ({"send_timeout": "soon"}, "expected a duration"),
        ({"body_timeout": "later"}, "expected a duration"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpOptions.model_validate(options)


def test_option_errors_are_positioned_in_the_file() -> None:
    text = (
        "listeners:\n"
        "  - name: web\n"
        "    protocol: http\n"
        "    bind: 127.0.0.1:0\n"
        "    options:\n"
        "      max_body_size: lots\n"
        "      wsgi: 'tests.apps.raw_apps:nothing_here'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "w.yaml")
    assert [str(i) for i in info.value.issues] == [
        "w.yaml:6:22: listeners[0].options.max_body_size: expected a size like "
        "64KiB or 10MiB; got 'lots'",
        "w.yaml:7:13: listeners[0].options.wsgi: module 'tests.apps.raw_apps' has "
        "no attribute 'nothing_here'",
    ]


def test_refusal_is_a_complete_503() -> None:
    services = Services("web", Path("."), structlog.get_logger())
    handler = HttpHandler(HttpOptions(), services)
    head, _, body = handler.refusal().partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"connection: close" in head and b"content-length: %d" % len(body) in head


async def test_lifespan_state_and_shutdown() -> None:
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.failed", "message": "line 1\nflush failed"})
                return

    lifespan = Lifespan(app, structlog.get_logger())
    assert await lifespan.startup() == {"db": "connected"}
    with capture_logs() as logs:
        await lifespan.shutdown()
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert logs[-1] == {
        "event": "lifespan_shutdown_failed",
        "reason": "flush failed",
        "log_level": "error",
    }


async def test_lifespan_unsupported_failed_and_off() -> None:
    async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("only http here")

    async def returns(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return

    async def fails_after_receive(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise OSError("disk full")

    log = structlog.get_logger()
    assert await Lifespan(no_lifespan, log).startup() is None
    assert await Lifespan(returns, log).startup() is None
    assert await Lifespan(no_lifespan, log, "off").startup() is None
    with pytest.raises(LifespanError, match=r"^ASGI lifespan startup failed: OSError: disk full$"):
        await Lifespan(fails_after_receive, log).startup()
    with pytest.raises(LifespanError, match="ValueError: only http here"):
        await Lifespan(no_lifespan, log, "on").startup()


async def test_lifespan_shutdown_is_bounded() -> None:
    async def stuck(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.sleep(60)  # part of the test: an app that never finishes its shutdown

    lifespan = Lifespan(stuck, structlog.get_logger(), shutdown_timeout=0.1)
    await lifespan.startup()
    with capture_logs() as logs:
        await asyncio.wait_for(lifespan.shutdown(), 2)
    assert "within 0.1s" in logs[-1]["reason"]


def test_wsgi_environ() -> None:
    scope = {
        "type": "http",
        "http_version": "1.0",
        "method": "POST",
        "scheme": "https",
        "path": "/caf\u00e9 x",
        "raw_path": b"/caf%C3%A9%20x",
        "root_path": "/app",
        "query_string": b"a=1&b=%20",
        "server": ("10.0.0.1", 8443),
        "client": ("10.0.0.2", 5555),
        "headers": [
            (b"host", b"example"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"3"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"x_forwarded_for", b"spoofed"),
        ],
    }
    body = io.BytesIO(b"abc")
    environ = build_environ(scope, body)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9 x"  # UTF-8 bytes as latin-1 (PEP 3333)
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("10.0.0.1", "8443")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("10.0.0.2", "5555")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["wsgi.url_scheme"] == "https"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("text/plain", "3")
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["wsgi.input"] is body
    assert environ["wsgi.version"] == (1, 0) and environ["wsgi.multithread"] is True


def test_app_dir_is_searched_for_the_app(tmp_path: Path) -> None:
    (tmp_path / "aionet_app_dir_probe.py").write_text(
        "async def app(scope, receive, send):\n    pass\n"
    )
    with pytest.raises(ValidationError, match="cannot import module 'aionet_app_dir_probe'"):
        HttpOptions.model_validate({"app": "aionet_app_dir_probe:app"})
    options = HttpOptions.model_validate(
        {"app_dir": str(tmp_path), "app": "aionet_app_dir_probe:app"}
    )
    assert options.app == "aionet_app_dir_probe:app"
