"""structlog, configured once for the whole process.

``configure_logging(format, level)`` sets up structlog's own (fast) path and routes the stdlib
``logging`` records of dependencies (aiosmtpd, asyncio) through the same processors and
renderer, so the output is one stream in one format: a console renderer on a TTY, JSON lines
otherwise. Events are snake_case verbs with key-value context.

``HotLogger`` is for an event logged once per request (the HTTP access log): while the JSON set-up
made here is in force, it renders the same line structlog would, without structlog's per-call
machinery (a bound logger's context copy, six processor calls, a JSON encoder per line): the
bound context is encoded once, the call's keys once per process, and values of the simple types
an access line holds (exact str, int, float, None, bool) are written directly; anything else goes
through the encoder. The lines of one turn of the event loop go out in one write; under any
other set-up (the console renderer, a test's ``capture_logs``) it is the structlog logger.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:
    from structlog.typing import Processor

__all__ = ["HotLogger", "configure_logging", "get_logger", "stamp_utc"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


#: The most a batched write of access-log lines holds: ``PIPE_BUF`` on Linux, the size a
#: pipe write is guaranteed not to be interleaved with another process's.
ATOMIC_WRITE = 4096


class _JsonSetup:
    """What ``configure_logging`` set up for JSON, as ``HotLogger`` writes through it: the
    processors (and how they looked, to notice a change made in place), the level, the stream,
    and the lines rendered in this turn of the event loop, written together at its end."""

    __slots__ = ("count", "level", "lines", "processors", "renderer", "stream")

    def __init__(self, processors: list[Processor], stream: TextIO, level: int) -> None:
        self.processors = processors
        self.count = len(processors)
        self.renderer = processors[-1]
        self.stream = stream
        self.level = level
        self.lines: list[str] = []

    def changed(self) -> bool:
        processors = self.processors
        return len(processors) != self.count or processors[-1] is not self.renderer

    def write(self, line: str) -> None:
        """Queue ``line``; the first of a turn of the loop schedules the write of them all
        (one ``write`` and ``flush`` per turn, not per line). Without a loop: at once."""
        lines = self.lines
        lines.append(line)
        if len(lines) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        """Write the queued lines in writes of at most ``ATOMIC_WRITE`` characters, each
        ending at a line's end: a pipe (a supervisor's workers share one) keeps a write that
        size whole, so lines of two processes never interleave mid-line. The encoder escapes
        non-ASCII, so characters are bytes."""
        lines = self.lines
        if not lines:
            return
        self.lines = []
        stream = self.stream
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > ATOMIC_WRITE:
                stream.write("".join(chunk))
                stream.flush()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        stream.write("".join(chunk))
        stream.flush()


#: The JSON set-up in force, or None (console, or not configured).
_json_setup: _JsonSetup | None = None


def _fallback(obj: Any) -> Any:
    """What JSON cannot encode (structlog's fallback): ``__structlog__()``, else ``repr``."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


#: One encoder for every line (``json.dumps(obj, default=...)`` builds one per call).
_encode = json.JSONEncoder(default=_fallback).encode


def _dumps(obj: Any, **_: Any) -> str:
    return _encode(obj)


_escape = json.encoder.encode_basestring_ascii


def _float(value: float) -> str:
    # the encoder writes NaN/Infinity/-Infinity (allow_nan), not repr's nan/inf
    return float.__repr__(value) if math.isfinite(value) else _encode(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _null(_: None) -> str:
    return "null"


#: What the encoder writes for a value of these exact types (a subclass, an enum, a container
#: or any other object goes through ``_encode``, for its ``default`` and its checks).
_VALUE_TEXT: dict[type, Any] = {
    str: _escape,
    int: int.__repr__,
    float: _float,
    type(None): _null,
    bool: _bool,
}

#: ``', "key": '`` for the keys seen so far: a process logs a few distinct keys; keeping at
#: most ``_KEYS_KEPT`` stops a caller that makes up keys per call from growing it without end.
_key_text: dict[str, str] = {}
_KEYS_KEPT = 1000


def _key(key: str) -> str:
    text = f", {_escape(key)}: "
    if type(key) is str and len(_key_text) < _KEYS_KEPT:
        _key_text[key] = text
    return text


def _dict_line(context: dict[str, Any], event: Any, kw: dict[str, Any]) -> str:
    """The line as structlog's processors build it: a dict in key order, then encoded (what
    ``HotLogger`` writes when its piecewise rendering would differ)."""
    event_dict = context.copy()
    event_dict.update(kw)
    event_dict["event"] = event
    structlog.contextvars.merge_contextvars(None, "info", event_dict)
    event_dict["level"] = "info"
    event_dict["timestamp"] = _utc_iso()
    return _encode(event_dict) + "\n"


def _contextvars_bound() -> bool:
    found: dict[str, Any] = {}
    structlog.contextvars.merge_contextvars(None, "info", found)
    return bool(found)


_second = -1
_second_text = ""


def _utc_iso() -> str:
    """``datetime.now(timezone.utc).isoformat()`` with ``Z`` for ``+00:00``: the same text,
    the date and time of day formatted once per second."""
    global _second, _second_text
    now = time.time_ns() // 1000
    second, micros = divmod(now, 1_000_000)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{micros:06d}Z" if micros else f"{_second_text}Z"


def stamp_utc(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog's ``TimeStamper(fmt="iso", utc=True)`` (``timestamp``), cheaper."""
    event_dict["timestamp"] = _utc_iso()
    return event_dict


def _resolve_format(fmt: str, stream: TextIO) -> str:
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> str:
    """Configure structlog and stdlib logging; returns the format chosen (``console``/``json``).

    Safe to call again (tests, reload): the previous set-up is replaced, not stacked.
    """
    stream = stream if stream is not None else sys.stderr
    chosen = _resolve_format(fmt, stream)
    global _json_setup
    numeric = _LEVELS[level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        stamp_utc,
    ]
    renderer: Processor
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        # plain tracebacks: structlog would switch to rich's (slow, boxed) ones now that rich is
        # installed for ``aionet bench``; keep the server's console output as it was.
        renderer = structlog.dev.ConsoleRenderer(
            colors=_colors(stream), exception_formatter=structlog.dev.plain_traceback
        )
    processors: list[Processor] = [*shared, structlog.processors.StackInfoRenderer(), renderer]
    if _json_setup is not None:
        _json_setup.flush()
    _json_setup = _JsonSetup(processors, stream, numeric) if chosen == "json" else None
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_aionet", False):
            root.removeHandler(old)
    handler._aionet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    return chosen


def _colors(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def get_logger(name: str, **context: Any) -> Any:
    """A structlog logger carrying ``logger=name`` (e.g. ``aionet.access``)."""
    return structlog.get_logger(name).bind(logger=name, **context)


class HotLogger:
    """``get_logger(name, **context)`` for an event logged per request: ``info()`` renders the
    line itself while the JSON set-up of ``configure_logging`` that was in force when it was
    made still is (the same keys, order and text as structlog's), else calls the structlog
    logger; every other method is structlog's.

    The line is written piece by piece: the bound context encoded once (here), then each
    keyword's ``, "key": value``, the event, the level and the timestamp. Where that would
    differ from structlog's dict, the dict is built and encoded as before: a keyword naming a
    bound key or ``event``/``level``/``timestamp`` (the dict keeps the key in its first place),
    structlog context variables bound (merged in after the event), a bound value other than a
    str, int, float, None or bool (it may change, or encode differently, after binding).

    Like a structlog bound logger, it keeps the set-up it was made under: a later
    ``configure_logging`` applies to loggers made after it; a change made to that set-up's
    processors in place (structlog's ``capture_logs``) sends every event to structlog.
    """

    __slots__ = ("_context", "_log", "_prefix", "_reserved", "_setup")

    def __init__(self, name: str, **context: Any) -> None:
        self._log = get_logger(name, **context)
        self._context = {"logger": name, **context}
        setup = _json_setup
        self._setup = None if setup is None or setup.level > logging.INFO else setup
        self._reserved = frozenset(self._context).union(("event", "level", "timestamp"))
        constant = all(type(v) in _VALUE_TEXT for v in self._context.values())
        self._prefix = _encode(self._context)[:-1] if constant else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def info(self, event: str, **kw: Any) -> None:
        setup = self._setup
        if (
            setup is None
            or setup.changed()  # e.g. capture_logs
            or "exc_info" in kw
            or "stack_info" in kw
        ):
            self._log.info(event, **kw)
            return
        setup.write(self._line(event, kw))

    def _line(self, event: Any, kw: dict[str, Any]) -> str:
        prefix = self._prefix
        if prefix is None or not self._reserved.isdisjoint(kw) or _contextvars_bound():
            return _dict_line(self._context, event, kw)
        keys = _key_text
        values = _VALUE_TEXT
        parts = [prefix]
        for key, value in kw.items():
            parts.append(keys.get(key) or _key(key))
            parts.append(values.get(type(value), _encode)(value))
        parts.append(', "event": ')
        parts.append(values.get(type(event), _encode)(event))
        parts.append(', "level": "info", "timestamp": "')
        parts.append(_utc_iso())
        parts.append('"}\n')
        return "".join(parts)


@atexit.register
def _flush_at_exit() -> None:
    if _json_setup is not None:
        _json_setup.flush()
