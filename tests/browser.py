"""A real browser for the tests: headless Chromium driven over the Chrome DevTools Protocol.

No browser-automation dependency: CDP is JSON over one WebSocket, spoken here with the sync
client of ``websockets`` (already a dependency). The pieces:

- ``Browser.launch()`` starts ``chromium --headless=new --remote-debugging-port=0`` in its own
  process group, reads the ``DevTools listening on ws://...`` line from its stderr and connects
  to that browser endpoint. ``close()`` kills the whole group and removes the profile.
- ``Browser.new_page()`` creates a page target and attaches to it with a flat session
  (``Target.attachToTarget(flatten=True)``): the page's commands and events travel on the same
  socket, tagged with the ``sessionId``.
- ``Page`` navigates (waiting for the load event), evaluates JavaScript, polls a condition
  (``wait_for``), takes PNG screenshots, and answers HTTP authentication challenges the way a
  user fills in the browser's prompt (``Fetch.authRequired`` → ``ProvideCredentials``).

One thread, no background reader: every wait (a command's reply, the load event, a poll's
pause) reads the socket and dispatches each event it meets to the page it belongs to, so no
event is lost while a reply is awaited. Replies the helper asks for on its own (continuing a
paused request, answering an auth challenge) are not awaited: their errors are recorded in
the page's ``log`` instead.

Failures carry what is needed to debug them: ``wait_for`` raises with the last value and the
page's console messages, exceptions and log entries; a browser that never starts raises with
the tail of its stderr. ``artifact_path`` says where screenshots and other artefacts go.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

__all__ = ["Browser", "CDPError", "JSError", "Page", "artifact_path"]

ROOT = Path(__file__).resolve().parent.parent

#: How long Chromium may take to print its DevTools endpoint (a cold start on a busy CI box).
LAUNCH_TIMEOUT = 30.0
#: How long any one CDP command may take to be answered.
COMMAND_TIMEOUT = 30.0
#: Between two looks at a ``wait_for`` condition.
POLL_INTERVAL = 0.05


def artifact_path(name: str) -> Path:
    """Where the artefact ``name`` (a relative path) is written: under ``$AIONET_TEST_ARTIFACTS``
    if set, else ``<repo>/.artifacts/``. The parent directories are created."""
    base = os.environ.get("AIONET_TEST_ARTIFACTS")
    path = (Path(base) if base else ROOT / ".artifacts") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class CDPError(Exception):
    """A CDP command failed (its reply carried an ``error``), or the browser went away."""


class JSError(Exception):
    """The evaluated JavaScript threw; the message is the exception's text and description."""


class Browser:
    """A headless Chromium process and the CDP connection to its browser endpoint.

    Resource handling: use it as a context manager, or call ``close()``; either kills the whole
    process group (renderer, GPU and utility processes included) and removes the temporary
    profile, even when the connection is already broken.
    """

    def __init__(self, proc: subprocess.Popen[str], profile: Path, stderr: deque[str]) -> None:
        self.proc = proc
        self.profile = profile
        self.stderr = stderr
        self.ws: ClientConnection | None = None
        self._exit = contextlib.ExitStack()  # the connection, entered as its API asks
        self.reader: threading.Thread | None = None
        self._closed = False
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        self._pages: dict[str, Page] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def launch(cls, executable: str = "chromium", timeout: float = LAUNCH_TIMEOUT) -> Browser:
        """Start Chromium headless and connect to it.

        Raises:
            RuntimeError: the DevTools line did not come within ``timeout`` or the process
                exited first; the message holds the tail of its stderr.
        """
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError(f"{executable} is not on PATH")
        profile = Path(tempfile.mkdtemp(prefix="aionet-chromium-"))
        argv = [
            path,
            "--headless=new",
            "--remote-debugging-port=0",  # the kernel picks; stderr tells which
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--ignore-certificate-errors",  # the tests' servers use throw-away certificates
        ]
        if os.geteuid() == 0:
            # Chromium's sandbox refuses to start as root ("Running as root without
            # --no-sandbox is not supported"); CI runs the suite as root in a container.
            argv.append("--no-sandbox")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: close() kills all its children
        )
        tail: deque[str] = deque(maxlen=100)
        browser = cls(proc, profile, tail)
        endpoint: list[str] = []
        found = threading.Event()

        def read() -> None:
            # Drains stderr for the browser's whole life (a full pipe would block Chromium).
            # Other lines (the /usr/bin/chromium wrapper's shell warning, dbus complaints) are
            # kept in the tail for error messages only.
            assert proc.stderr is not None
            for line in proc.stderr:
                tail.append(line)
                if not endpoint and line.startswith("DevTools listening on "):
                    endpoint.append(line.removeprefix("DevTools listening on ").strip())
                    found.set()
            found.set()  # EOF: the process is gone

        browser.reader = threading.Thread(target=read, name="chromium-stderr", daemon=True)
        browser.reader.start()
        try:
            if not found.wait(timeout) or not endpoint:
                if found.is_set():  # stderr closed: the process is exiting, let it finish
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)
                state = "exited" if proc.poll() is not None else f"silent for {timeout} s"
                raise RuntimeError(
                    f"chromium {state} without a DevTools endpoint (rc={proc.poll()}); "
                    f"stderr tail:\n{''.join(tail)[-3000:]}"
                )
            browser.ws = browser._exit.enter_context(
                connect(endpoint[0], max_size=None, open_timeout=timeout)
            )
        except BaseException:
            browser.close()
            raise
        return browser

    def close(self) -> None:
        """Kill the process group, close the socket, remove the profile. Idempotent."""
        if self._closed:
            return  # the group id may belong to someone else by now: signal it only once
        self._closed = True
        with contextlib.suppress(Exception):
            self._exit.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.reader is not None:
            self.reader.join(5)  # EOF on stderr once every holder of the pipe is gone
        if self.proc.stderr is not None and not (self.reader and self.reader.is_alive()):
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pages ---------------------------------------------------------------------------------

    def new_page(self, credentials: tuple[str, str] | None = None) -> Page:
        """A fresh ``about:blank`` tab with console capture on.

        ``credentials`` (user, password) answer HTTP authentication challenges as a user
        would type them into the prompt; without them every challenge is cancelled (the page
        then shows the 401 body, as when a user dismisses the prompt).
        """
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, target, session["sessionId"], credentials)
        self._pages[page.session] = page
        page.start()
        return page

    # -- the wire ------------------------------------------------------------------------------

    def post(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        """Send a command without waiting; its id (the reply is kept for ``send`` to find)."""
        if self.ws is None:
            raise CDPError("not connected")
        message: dict[str, Any] = {"id": next(self._ids), "method": method}
        message["params"] = params or {}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        return int(message["id"])

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str = "",
        timeout: float = COMMAND_TIMEOUT,
    ) -> dict[str, Any]:
        """Send a command and return its result, dispatching the events that come meanwhile.

        Raises:
            CDPError: the reply is an error, or none came within ``timeout``.
        """
        ident = self.post(method, params, session)
        deadline = time.monotonic() + timeout
        while ident not in self._replies:
            if not self.pump(deadline - time.monotonic()):
                raise CDPError(f"{method}: no reply within {timeout} s")
        reply = self._replies.pop(ident)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')} ({reply['error']})")
        return dict(reply.get("result", {}))

    def pump(self, timeout: float) -> bool:
        """Read and handle one message within ``timeout``; False if none came.

        Replies are stored by id; events go to the page whose session they name.
        """
        if self.ws is None:
            raise CDPError("not connected")
        try:
            raw = self.ws.recv(timeout=max(timeout, 0.0))
        except TimeoutError:
            return False
        except Exception as exc:  # the browser died under us
            raise CDPError(
                f"CDP connection lost: {exc!r}; rc={self.proc.poll()}; stderr tail:\n"
                f"{''.join(self.stderr)[-2000:]}"
            ) from exc
        message = json.loads(raw)
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            page = self._pages.get(message.get("sessionId", ""))
            if page is not None:
                page.dispatch(message["method"], message.get("params", {}))
        return True

    def pump_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Handle messages until ``done()`` is true.

        Raises:
            TimeoutError: not done within ``timeout``; the message names ``what``.
        """
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: not within {timeout} s")
            self.pump(left)


class Page:
    """One tab, attached with a flat session. Made by ``Browser.new_page``.

    ``log`` collects, as readable lines, the console calls, uncaught exceptions, browser log
    entries (failed WebSocket handshakes, mixed content…) and failed helper commands;
    ``auth_challenges`` the ``authChallenge`` of every ``Fetch.authRequired`` seen.
    """

    def __init__(
        self,
        browser: Browser,
        target: str,
        session: str,
        credentials: tuple[str, str] | None,
    ) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        self.credentials = credentials
        self.log: list[str] = []
        self.auth_challenges: list[dict[str, Any]] = []
        self._loads = 0
        self._answered: set[str] = set()  # requests already given the credentials once

    def start(self) -> None:
        """Turn on the domains the helpers rely on."""
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")
        # Every request pauses until continued; auth challenges come as Fetch.authRequired.
        self.send("Fetch.enable", {"handleAuthRequests": True})

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> dict[str, Any]:
        """A command in this page's session (see ``Browser.send``)."""
        return self.browser.send(method, params, self.session, timeout)

    # -- events --------------------------------------------------------------------------------

    def dispatch(self, method: str, params: dict[str, Any]) -> None:
        """Handle one event of this session."""
        if method == "Page.loadEventFired":
            self._loads += 1
        elif method == "Fetch.requestPaused":
            self._post("Fetch.continueRequest", {"requestId": params["requestId"]})
        elif method == "Fetch.authRequired":
            self._answer_auth(params)
        elif method == "Runtime.consoleAPICalled":
            args = " ".join(_remote_text(arg) for arg in params.get("args", []))
            self.log.append(f"console.{params.get('type')}: {args}")
        elif method == "Runtime.exceptionThrown":
            self.log.append(f"exception: {_exception_text(params['exceptionDetails'])}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            self.log.append(f"log.{entry.get('level')}: {entry.get('text')}{where}")

    def _answer_auth(self, params: dict[str, Any]) -> None:
        """Provide the credentials once per request; cancel a repeated challenge (they were
        refused) or any challenge when the page has none, as a user dismissing the prompt."""
        self.auth_challenges.append(params["authChallenge"])
        request = params["requestId"]
        if self.credentials is None or request in self._answered:
            response: dict[str, Any] = {"response": "CancelAuth"}
        else:
            self._answered.add(request)
            user, password = self.credentials
            response = {"response": "ProvideCredentials", "username": user, "password": password}
        self._post(
            "Fetch.continueWithAuth", {"requestId": request, "authChallengeResponse": response}
        )

    def _post(self, method: str, params: dict[str, Any]) -> None:
        # Not awaited (we may be inside another command's wait); a failure is only logged:
        # continuing a request whose tab navigated away is a normal race.
        try:
            self.browser.post(method, params, self.session)
        except Exception as exc:
            self.log.append(f"helper: {method} failed: {exc!r}")

    # -- actions -------------------------------------------------------------------------------

    def navigate(self, url: str, timeout: float = COMMAND_TIMEOUT) -> None:
        """Load ``url`` and wait for its load event.

        Raises:
            CDPError: the navigation failed at the network level (refused, TLS, DNS…).
            TimeoutError: no load event within ``timeout``.
        """
        before = self._loads
        result = self.send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise CDPError(f"navigate {url}: {result['errorText']}; page log: {self.log}")
        self.browser.pump_until(lambda: self._loads > before, timeout, f"load event of {url}")

    def evaluate(self, expression: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON-able Python.

        Raises:
            JSError: it threw (or its promise rejected); the message has the exception text.
        """
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in result:
            raise JSError(f"{expression}: {_exception_text(result['exceptionDetails'])}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll ``expression`` until its value is truthy; that value.

        An exception thrown by the expression counts as not yet (it is kept as the last value).

        Raises:
            AssertionError: not truthy within ``timeout``, with the last value and the log.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.evaluate(expression, timeout=max(deadline - time.monotonic(), 1.0))
            except JSError as exc:
                last = exc
            else:
                if last:
                    return last
            left = deadline - time.monotonic()
            if left <= 0:
                log = "\n  ".join(self.log) or "(empty)"
                raise AssertionError(
                    f"{expression!r} not truthy within {timeout} s; last value: {last!r}; "
                    f"page log:\n  {log}"
                )
            pause = time.monotonic() + min(POLL_INTERVAL, left)
            while time.monotonic() < pause:  # handle events meanwhile, not an idle sleep
                self.browser.pump(pause - time.monotonic())

    def text(self) -> str:
        """The page's visible text (``document.body.innerText``)."""
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def screenshot(self, path: Path) -> Path:
        """Write a PNG of the viewport to ``path``; ``path``."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def _remote_text(obj: dict[str, Any]) -> str:
    """A console argument (a ``Runtime.RemoteObject``) as text."""
    if "value" in obj:
        return str(obj["value"])
    return str(obj.get("description") or obj.get("unserializableValue") or obj.get("type"))


def _exception_text(details: dict[str, Any]) -> str:
    """``Runtime.ExceptionDetails`` as one line: the text and the exception's description."""
    text = str(details.get("text", ""))
    exception = details.get("exception") or {}
    description = exception.get("description") or exception.get("value")
    return f"{text} {description}" if description else text
