"""A real browser against ``aionet run``: headless Chromium over CDP (``tests/browser.py``).

The page of ``tests/apps/ws_page.py`` talks WebSocket back to the listener that served it,
over plain HTTP and over TLS; the admin listener's ``/metrics`` is loaded with HTTP Basic
credentials given the way a user answers the browser's prompt. Screenshots are kept as
artefacts (``artifact_path``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aionet.auth.users import UserStore
from tests.browser import Browser, JSError, artifact_path
from tests.conftest import Daemon
from tests.e2e.conftest import Pki

pytestmark = pytest.mark.tool("chromium")

APPS_DIR = Path(__file__).resolve().parents[1] / "apps"


def web_config(pki: Pki | None) -> str:
    """``aionet run`` config (JSON is YAML): the ``ws_page`` app on an ephemeral port, behind
    TLS when ``pki`` is given."""
    listener: dict[str, Any] = {
        "name": "web",
        "protocol": "http",
        "bind": "127.0.0.1:0",
        "options": {"app": "ws_page:app"},
    }
    config: dict[str, Any] = {"logging": {"level": "info"}, "listeners": [listener]}
    if pki is not None:
        config["tls"] = {"certificates": [pki.certificate("default")]}
        listener["tls"] = "default"
    return json.dumps(config)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_page_round_trips_text_and_binary_over_websocket(
    daemon: Any, browser: Browser, tmp_path: Path, scheme: str
) -> None:
    pki = Pki(tmp_path / "pki") if scheme == "https" else None
    server: Daemon = daemon(web_config(pki), env={"PYTHONPATH": str(APPS_DIR)})
    host, port = server.address("web")
    page = browser.new_page()
    page.navigate(f"{scheme}://{host}:{port}/")
    assert page.evaluate("location.protocol") == f"{scheme}:"
    ws_scheme = "wss" if scheme == "https" else "ws"
    # The reply names the scope's scheme: the page really went through ws: or wss:.
    expected = f"echo({ws_scheme}): hello from the browser"
    assert page.wait_for("document.getElementById('out').textContent") == expected
    page.evaluate("sendBytes([0, 1, 2, 127, 128, 255])")
    # Reversed by the server, received as an ArrayBuffer (the page writes only those as hex).
    assert page.wait_for("document.getElementById('bin').textContent") == "ff 80 7f 02 01 00"
    assert page.evaluate("document.getElementById('err').textContent") == ""
    page.screenshot(artifact_path(f"browser/ws_page-{scheme}.png"))
    page.evaluate("ws.close(1000)")
    assert page.wait_for("document.getElementById('closed').textContent") == "1000"
    # The server's side of the same session: two messages each way, a clean close.
    entry = server.wait_for("websocket_session", path="/ws")
    assert (entry["code"], entry["messages_in"], entry["messages_out"]) == (1000, 2, 2)


def admin_config(users: Path) -> str:
    return json.dumps(
        {
            "logging": {"level": "info"},
            "auth": {"users_file": str(users)},
            "listeners": [{"name": "admin", "protocol": "admin", "bind": "127.0.0.1:0"}],
        }
    )


@pytest.fixture
def admin(daemon: Any, tmp_path: Path) -> str:
    """The base URL of an ``aionet run`` admin listener; user ``vic`` (viewer) may read it."""
    users = tmp_path / "users.yaml"
    store = UserStore.load(users, missing_ok=True)
    store.add("vic", "v1ewer-pass", ("viewer",))
    store.close()
    server: Daemon = daemon(admin_config(users))
    return "http://{}:{}".format(*server.address("admin"))


def test_basic_credentials_from_the_browser_prompt_open_metrics(
    admin: str, browser: Browser
) -> None:
    page = browser.new_page(credentials=("vic", "v1ewer-pass"))
    page.navigate(admin + "/metrics")
    # Chromium offered Basic: the challenge it answered was the Basic one of our realm.
    assert [(c["scheme"].lower(), c["realm"]) for c in page.auth_challenges] == [
        ("basic", "aionet")
    ]
    assert "aionet_connections_open" in page.text()
    page.screenshot(artifact_path("browser/admin-metrics.png"))


def test_wrong_or_no_credentials_leave_the_401(admin: str, browser: Browser) -> None:
    wrong = browser.new_page(credentials=("vic", "not-the-password"))
    wrong.navigate(admin + "/metrics")
    # Given once, refused, the second challenge is cancelled: the 401 body shows.
    assert len(wrong.auth_challenges) == 2
    assert wrong.text().strip() == "invalid credentials"
    dismissed = browser.new_page()  # a user who dismisses the prompt
    dismissed.navigate(admin + "/metrics")
    assert [c["scheme"].lower() for c in dismissed.auth_challenges] == ["basic"]
    assert dismissed.text().strip() == "credentials required"


# -- the harness itself: its failures must say what went wrong ---------------------------------

NOISY = (
    "data:text/html,<p id=p>quiet</p><script>"
    "console.error('from the page', 42); setTimeout(() => { throw new Error('late boom'); })"
    "</script>"
)


def test_wait_for_fails_with_the_last_value_and_the_page_log(browser: Browser) -> None:
    page = browser.new_page()
    page.navigate(NOISY)
    assert page.wait_for("document.getElementById('p').textContent") == "quiet"
    with pytest.raises(AssertionError) as failed:
        page.wait_for("document.getElementById('p').textContent === 'loud'", timeout=0.3)
    message = str(failed.value)
    assert "last value: False" in message
    assert "console.error: from the page 42" in message
    assert "Error: late boom" in message
    with pytest.raises(JSError, match="ReferenceError: nothing is not defined"):
        page.evaluate("nothing()")
    with pytest.raises(JSError, match="rejected"):
        page.evaluate("Promise.reject(new Error('rejected'))")


def test_a_browser_that_never_listens_fails_with_its_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"exited without a DevTools endpoint \(rc=3\)") as e:
        Browser.launch(str(fake))
    assert "cannot open display" in str(e.value)
    silent = tmp_path / "silent-chromium"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    silent.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"silent for 0.5 s"):
        Browser.launch(str(silent), timeout=0.5)


# -- the admin dashboard ---------------------------------------------------------------------


def dashboard_config(users: Path) -> str:
    return json.dumps(
        {
            "logging": {"level": "info"},
            "auth": {"users_file": str(users)},
            "listeners": [
                {"name": "admin", "protocol": "admin", "bind": "127.0.0.1:0"},
                {"name": "web", "protocol": "http", "bind": "127.0.0.1:0",
                 "options": {"app": "tests.apps.raw_apps:hello", "access_log": False}},
                {"name": "echo", "protocol": "echo", "bind": "127.0.0.1:0"},
            ],
        }
    )  # fmt: skip


#: Pixels of a canvas drawn in one colour (the 2xx line's, #16a34a), give or take antialiasing.
COLOURED_PIXELS = """
(() => {
  const card = document.querySelector('section.card[data-listener="web"]');
  const canvas = card.querySelector('canvas[data-chart="http"]');
  const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < px.length; i += 4) {
    if (Math.abs(px[i] - 22) < 40 && Math.abs(px[i + 1] - 163) < 40 && Math.abs(px[i + 2] - 74) < 40
        && px[i + 3] > 128) n++;
  }
  return n;
})()
"""


def test_the_dashboard_draws_live_data(daemon: Any, browser: Browser, tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    store = UserStore.load(users, missing_ok=True)
    store.add("vic", "v1ewer-pass", ("viewer",))
    store.close()
    server: Daemon = daemon(dashboard_config(users))
    admin = "http://{}:{}".format(*server.address("admin"))
    web = "http://{}:{}/".format(*server.address("web"))
    stop = threading.Event()

    def traffic() -> None:  # a steady trickle of requests for the charts to show
        with httpx.Client() as client:
            while not stop.is_set():
                client.get(web)
                time.sleep(0.01)

    loader = threading.Thread(target=traffic, daemon=True)
    loader.start()
    try:
        page = browser.new_page(credentials=("vic", "v1ewer-pass"))
        viewport = {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
        page.send("Emulation.setDeviceMetricsOverride", viewport)
        page.navigate(admin + "/dashboard")
        # The page opened its feed (with the ticket it carries) and frames keep coming.
        page.wait_for("window.aionetDashboard.connected && window.aionetDashboard.frames >= 3")
        cards = page.evaluate(
            "[...document.querySelectorAll('section.card')].map(c => c.dataset.listener)"
        )
        assert sorted(cards) == ["admin", "echo", "web"]
        # The requests show as a rate of 2xx answers, with a latency, on the web card.
        page.wait_for("Math.max(...window.aionetDashboard.listeners.web.http['2xx']) > 10")
        page.wait_for("window.aionetDashboard.listeners.web.latency.p99.some(v => v > 0)")
        assert page.evaluate(COLOURED_PIXELS) > 50  # the 2xx line is drawn, not just named
        page.screenshot(artifact_path("browser/dashboard.png"))
        # A dropped feed comes back with a fresh ticket, fetched with the browser's login.
        page.evaluate("window.aionetDashboard.socket.close()")
        page.wait_for("window.aionetDashboard.connects >= 2 && window.aionetDashboard.connected")
        frames = page.evaluate("window.aionetDashboard.frames")
        page.wait_for(f"window.aionetDashboard.frames > {frames}")
        assert page.evaluate("window.aionetDashboard.error") is None
        # Nothing was refused by the page's Content-Security-Policy, nothing failed.
        problems = [line for line in page.log if "error" in line.lower() or "refused" in line]
        assert problems == [], problems
    finally:
        stop.set()
        loader.join(timeout=5)


# -- HTTP/2 ------------------------------------------------------------------------------------


def test_a_page_over_tls_is_loaded_with_h2(daemon: Any, browser: Browser, tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    config = json.loads(web_config(pki))
    config["listeners"][0]["tls"] = {"certificates": ["default"], "alpn": ["h2", "http/1.1"]}
    server: Daemon = daemon(json.dumps(config), env={"PYTHONPATH": str(APPS_DIR)})
    host, port = server.address("web")
    page = browser.new_page()
    page.navigate(f"https://{host}:{port}/")
    assert page.evaluate("performance.getEntries()[0].nextHopProtocol") == "h2"
    # The page's WebSocket still works beside it (RFC 8441 is not offered: it goes over its
    # own HTTP/1.1 connection).
    assert page.wait_for("document.getElementById('out').textContent").startswith("echo(wss)")
    entry = server.wait_for("http_request", path="/")
    assert entry["http_version"] == "2"
