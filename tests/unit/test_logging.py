"""structlog set-up: JSON or console, levels, stdlib logging of dependencies routed through it."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from aionet.core.logging import HotLogger, _utc_iso, configure_logging, get_logger


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_aionet", False):
            root.removeHandler(h)
    root.setLevel(logging.WARNING)


def test_auto_is_json_when_not_a_tty() -> None:
    out = io.StringIO()
    assert configure_logging("auto", "info", out) == "json"
    structlog.get_logger().bind(listener="echo").info("connection_closed", conn_id=3)
    entry = json.loads(out.getvalue())
    assert entry["event"] == "connection_closed"
    assert entry["conn_id"] == 3 and entry["listener"] == "echo"
    assert entry["level"] == "info" and entry["timestamp"].endswith("Z")


def test_auto_is_console_on_a_tty() -> None:
    out = Tty()
    assert configure_logging("auto", "info", out) == "console"
    structlog.get_logger().info("listener_started", address="127.0.0.1:7007")
    text = out.getvalue()
    assert "listener_started" in text and "127.0.0.1:7007" in text
    with pytest.raises(ValueError, match="Expecting value"):
        json.loads(text)


def test_level_filters() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", out)
    log = structlog.get_logger()
    log.info("dropped")
    log.warning("kept")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["kept"]


def test_stdlib_logging_goes_through_the_same_renderer() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    logging.getLogger("mail.log").info("aiosmtpd says %s", "hi")
    entry = json.loads(out.getvalue())
    assert entry == {**entry, "event": "aiosmtpd says hi", "logger": "mail.log", "level": "info"}


def test_exceptions_are_rendered_in_json() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        structlog.get_logger().error("handler_error", exc_info=exc)
    entry = json.loads(out.getvalue())
    assert "RuntimeError: boom" in entry["exception"]


def test_reconfiguring_does_not_stack_handlers() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    configure_logging("json", "info", out)
    logging.getLogger("x").warning("once")
    assert len(out.getvalue().splitlines()) == 1


def test_named_logger() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    get_logger("aionet.access").info("request", status=200)
    assert json.loads(out.getvalue())["logger"] == "aionet.access"


def _without_time(line: str) -> str:
    return re.sub(r'"timestamp": "[^"]*"', "", line)


def test_hot_logger_writes_what_structlog_writes() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    structlog.contextvars.bind_contextvars(worker=2)
    try:
        fields = {"method": "GET", "path": '/\u00e9"x', "status": 200, "bytes": 13,
                  "duration": 0.000123, "request_id": None, "client": ("192.0.2.1", 0)}  # fmt: skip
        HotLogger("aionet.access", listener="web").info("http_request", **fields)
        get_logger("aionet.access", listener="web").info("http_request", **fields)
    finally:
        structlog.contextvars.clear_contextvars()
    hot, reference = out.getvalue().splitlines()
    assert _without_time(hot) == _without_time(reference)
    assert list(json.loads(hot)) == list(json.loads(reference))  # same keys, same order
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", json.loads(hot)["timestamp"])


def test_hot_logger_is_structlog_under_another_setup() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    hot = HotLogger("aionet.access")
    with structlog.testing.capture_logs() as logs:  # a test's set-up after the logger was made
        hot.info("http_request", status=200)
    assert logs == [{"logger": "aionet.access", "status": 200, "event": "http_request",
                     "log_level": "info"}]  # fmt: skip
    assert out.getvalue() == ""
    configure_logging("console", "info", Tty())
    console = HotLogger("aionet.access")
    assert console.is_enabled_for(logging.INFO)
    with structlog.testing.capture_logs() as logs:
        console.info("http_request", status=200)
    assert len(logs) == 1


def test_hot_logger_respects_the_level() -> None:
    out = io.StringIO()
    hot = HotLogger("aionet.access")
    configure_logging("json", "warning", out)
    hot.info("http_request", status=200)
    assert out.getvalue() == ""


def test_utc_timestamp_is_isoformat_with_z() -> None:
    stamp = _utc_iso()
    parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - parsed).total_seconds()) < 60
    assert parsed.isoformat().replace("+00:00", "Z") == stamp


async def test_hot_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    class Counting(io.StringIO):
        writes = 0

        def write(self, s: str) -> int:
            self.writes += 1
            return super().write(s)

    out = Counting()
    configure_logging("json", "info", out)
    hot = HotLogger("aionet.access")
    for status in (200, 404, 500):
        hot.info("http_request", status=status)
    assert out.getvalue() == ""  # written at the end of this turn of the loop
    await asyncio.sleep(0)
    assert [json.loads(line)["status"] for line in out.getvalue().splitlines()] == [200, 404, 500]
    assert out.writes == 1


async def test_batched_lines_are_written_in_pieces_a_pipe_keeps_whole() -> None:
    """Workers share the supervisor's stderr: each write stays within PIPE_BUF and ends at a
    line's end, so two processes' lines never interleave mid-line."""
    from aionet.core import logging as aionet_logging

    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.pieces: list[str] = []

        def write(self, s: str) -> int:
            self.pieces.append(s)
            return super().write(s)

    out = Writes()
    configure_logging("json", "info", out)
    hot = HotLogger("aionet.access")
    for i in range(200):
        hot.info("http_request", path="/" + "x" * (i % 90), status=200)
    await asyncio.sleep(0)
    assert len(out.pieces) > 1
    assert all(len(p) <= aionet_logging.ATOMIC_WRITE and p.endswith("\n") for p in out.pieces)
    assert len(out.getvalue().splitlines()) == 200
