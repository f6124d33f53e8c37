"""structlog set-up: JSON or console, levels, stdlib logging of dependencies routed through it."""

from __future__ import annotations

import asyncio
import datetime
import enum
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from aionet.core import logging as aionet_logging
from aionet.core.logging import HotLogger, _dict_line, _utc_iso, configure_logging, get_logger


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


STAMP = "2026-12-02T16:00:00.123456Z"


class Color(enum.Enum):
    RED = "red"


class Code(enum.IntEnum):
    OK = 200


class Text(str):
    pass


class Structlogged:
    def __structlog__(self) -> Any:
        return {"peer": ["192.0.2.1", 25], "tls": None}


class Reprd:
    def __repr__(self) -> str:
        return '<Reprd \u00e9">'


#: any code point (surrogates, controls), and short runs of what JSON must escape
_any_text = st.text(st.characters(), max_size=12) | st.text(
    '"\\\n\x00\x1f\u00e9\u2028\ud800', max_size=6
)
_scalars = (
    _any_text
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e300, 5e-324])
    | st.none()
    | st.booleans()
    | st.sampled_from([Structlogged(), Reprd(), Color.RED, Code.OK])
    | _any_text.map(Text)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3),
    max_leaves=6,
)
# ``self`` and ``event`` name info()'s own parameters (a TypeError, structlog's too);
# exc_info and stack_info go to structlog, whose processors render them
_keys = (
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
    | _any_text
    | st.sampled_from(["logger", "listener", "level", "timestamp"])
    | _any_text.map(Text)
).filter(lambda k: k not in {"self", "event", "exc_info", "stack_info"})


def _hot_and_structlog(event: Any, kw: dict[str, Any], **context: Any) -> tuple[str, str, str]:
    """The line HotLogger writes, the old dict path's, and structlog's, at one timestamp."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    hot = HotLogger("aionet.access", **context)
    with mock.patch.object(aionet_logging, "_utc_iso", return_value=STAMP):
        hot.info(event, **kw)
        line = out.getvalue()
        old = _dict_line(hot._context, event, kw)
        out.seek(0)
        out.truncate()
        get_logger("aionet.access", **context).info(event, **kw)
    return line, old, out.getvalue()


# structlog leaves out an event of None (HotLogger writes "event": null, as it always has)
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8), _values.filter(lambda v: v is not None))
def test_hot_logger_renders_the_line_structlog_renders(kw: dict[str, Any], event: Any) -> None:
    line, old, reference = _hot_and_structlog(event, kw, listener="web")
    assert line == old == reference


def test_hot_logger_access_line_is_structlog_s() -> None:
    fields = {"method": "GET", "path": "/a b\u00e9", "status": 200, "bytes": 5,
              "duration": 0.000123, "peer": "127.0.0.1:5555", "request_id": None}  # fmt: skip
    line, old, reference = _hot_and_structlog("http_request", fields, listener="web")
    assert line == old == reference
    assert line.startswith('{"logger": "aionet.access", "listener": "web", "method": "GET"')
    assert line.endswith(f'"event": "http_request", "level": "info", "timestamp": "{STAMP}"}}\n')


def test_hot_logger_puts_contextvars_where_structlog_does() -> None:
    with structlog.contextvars.bound_contextvars(worker=2, listener="other", status=0):
        line, old, reference = _hot_and_structlog("http_request", {"status": 200}, listener="web")
    assert line == old == reference
    assert list(json.loads(line)) == ["logger", "listener", "status", "event", "worker", "level",
                                      "timestamp"]  # fmt: skip
    assert json.loads(line)["listener"] == "web" and json.loads(line)["status"] == 200


@pytest.mark.parametrize("key", ["logger", "listener", "level", "timestamp"])
def test_a_keyword_naming_a_set_key_is_structlog_s(key: str) -> None:
    kw = {"status": 200, key: "x"}
    line, old, reference = _hot_and_structlog("http_request", kw, listener="web")
    assert line == old == reference


def test_a_keyword_named_event_is_a_type_error_as_in_structlog() -> None:
    configure_logging("json", "info", io.StringIO())
    with pytest.raises(TypeError, match="event"):
        HotLogger("aionet.access").info("http_request", **{"event": "x"})
    with pytest.raises(TypeError, match="event"):
        get_logger("aionet.access").info("http_request", **{"event": "x"})


def test_a_context_value_that_can_change_is_encoded_per_line() -> None:
    tags = ["a"]
    out = io.StringIO()
    configure_logging("json", "info", out)
    hot = HotLogger("aionet.access", tags=tags, peer=Structlogged())
    tags.append("b")
    hot.info("http_request", status=200)
    entry = json.loads(out.getvalue())
    assert entry["tags"] == ["a", "b"] and entry["peer"] == Structlogged().__structlog__()
