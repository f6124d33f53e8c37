"""structlog, configured once for the whole process.

``configure_logging(format, level)`` sets up structlog's own (fast) path and routes the stdlib
``logging`` records of dependencies (aiosmtpd, asyncio) through the same processors and
renderer, so the output is one stream in one format: a console renderer on a TTY, JSON lines
otherwise. Events are snake_case verbs with key-value context.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:
    from structlog.typing import Processor

__all__ = ["configure_logging", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


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
    numeric = _LEVELS[level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        # plain tracebacks: structlog would switch to rich's (slow, boxed) ones now that rich is
        # installed for ``aionet bench``; keep the server's console output as it was.
        renderer = structlog.dev.ConsoleRenderer(
            colors=_colors(stream), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), renderer],
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
