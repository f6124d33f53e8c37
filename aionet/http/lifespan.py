"""The ASGI lifespan protocol: startup before the listener binds, shutdown after it drained.

``mode`` is ``auto`` (the default: an app that raises before it ever calls ``receive()``, or
returns at once, does not support lifespan — fine), ``on`` (any failure is fatal) or ``off``.
A failing startup (``lifespan.startup.failed``, or an exception after the app received the
startup event) raises ``LifespanError`` with a one-line reason; the core turns it into a
``StartupError`` and ``aionet run`` exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from .types import ASGIApp, Message

__all__ = ["Lifespan", "LifespanError"]

LifespanMode = Literal["auto", "on", "off"]


class LifespanError(Exception):
    """The app's lifespan startup failed; the message is one line."""


class Lifespan:
    """Drives one app's lifespan task: ``await startup()`` … ``await shutdown()``."""

    def __init__(
        self,
        app: ASGIApp,
        log: FilteringBoundLogger,
        mode: LifespanMode = "auto",
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.log = log
        self.mode = mode
        self.shutdown_timeout = shutdown_timeout
        #: The lifespan ``state`` dict; each request scope gets a shallow copy.
        self.state: dict[str, Any] = {}
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: dict[str, asyncio.Future[str | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._received = False

    async def startup(self) -> dict[str, Any] | None:
        """Run startup; the state dict when the app supports lifespan, else None.

        Raises:
            LifespanError: the app reported or raised a startup failure.
        """
        if self.mode == "off":
            return None
        loop = asyncio.get_running_loop()
        self._replies = {"startup": loop.create_future(), "shutdown": loop.create_future()}
        self._task = loop.create_task(self._main())
        await self._events.put({"type": "lifespan.startup"})
        failure = await self._outcome("startup", None)
        if failure is _UNSUPPORTED:
            self.log.info("lifespan_unsupported")
            return None
        if failure is not None:
            raise LifespanError(f"ASGI lifespan startup failed: {_one_line(failure)}")
        return self.state

    async def shutdown(self) -> None:
        """Run shutdown (at most ``shutdown_timeout``); failures are logged, not raised."""
        task = self._task
        if task is None or task.done():
            return
        await self._events.put({"type": "lifespan.shutdown"})
        failure = await self._outcome("shutdown", self.shutdown_timeout)
        if failure is not None and failure is not _UNSUPPORTED:
            self.log.error("lifespan_shutdown_failed", reason=_one_line(failure))
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _outcome(self, phase: str, timeout: float | None) -> str | None:
        """None on success, the failure message, or ``_UNSUPPORTED``."""
        reply = self._replies[phase]
        assert self._task is not None
        waiters: set[asyncio.Future[Any]] = {reply, self._task}
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if reply in done:
            return reply.result()
        if not done:
            return f"no lifespan.{phase}.complete within {timeout}s"
        exc = self._task.exception()
        if exc is None or (self.mode == "auto" and not self._received):
            return _UNSUPPORTED
        return f"{type(exc).__name__}: {exc}"

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        await self.app(scope, self._receive, self._send)

    async def _receive(self) -> Message:
        self._received = True
        return await self._events.get()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        phase, _, outcome = kind.removeprefix("lifespan.").partition(".")
        reply = self._replies.get(phase)
        if reply is None or outcome not in ("complete", "failed"):
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
        if not reply.done():
            reply.set_result(None if outcome == "complete" else message.get("message") or "failed")


_UNSUPPORTED = "\0unsupported"


def _one_line(message: str) -> str:
    """The last non-empty line of a (possibly traceback-shaped) failure message."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[-1] if lines else "failed"
