"""Shared by the e2e tests: both event loops for every in-process test, the ``pki`` fixture and
the ``browser`` fixture (headless Chromium, see ``tests/browser.py``)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop

from tests.browser import Browser


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class Pki:
    """A throw-away CA (trustme) and a server certificate for ``localhost`` and ``127.0.0.1``,
    written as PEM files under ``dir``: ``ca_file``, ``cert`` and ``key``.

    ``issue(name, *hosts)`` writes another pair ``<name>.pem``/``<name>.key`` signed by the same
    CA; ``certificate(name)`` is a ``tls.certificates`` entry of the config; ``client()`` is a
    client context that trusts the CA, ``server()`` a server context with the certificate (for
    third-party servers the tests start themselves).
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.cert, self.key = self.issue("server", "localhost", "127.0.0.1")

    def issue(self, name: str, *hosts: str) -> tuple[Path, Path]:
        """A certificate for ``hosts`` as ``<name>.pem`` and ``<name>.key``; (cert, key) paths."""
        issued = self.ca.issue_cert(*hosts)
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        issued.private_key_pem.write_to_path(str(key))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        return cert, key

    def certificate(self, name: str, files: str = "server") -> dict[str, str]:
        """The config entry ``{name, cert, key}`` for the pair issued as ``files``."""
        return {
            "name": name,
            "cert": str(self.dir / f"{files}.pem"),
            "key": str(self.dir / f"{files}.key"),
        }

    def client(self, **attributes: Any) -> ssl.SSLContext:
        """A client context trusting the CA; ``attributes`` are set on it (e.g. versions)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        for name, value in attributes.items():
            setattr(ctx, name, value)
        return ctx

    def server(self) -> ssl.SSLContext:
        """A server context presenting the ``localhost``/``127.0.0.1`` certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A fresh CA and server certificate in ``tmp_path / "pki"`` (see ``Pki``)."""
    return Pki(tmp_path / "pki")


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium of its own for one test (a launch takes well under a second), killed
    with its whole process group after. Tests using it carry ``@pytest.mark.tool("chromium")``,
    which skips them when it is not installed."""
    with Browser.launch() as launched:
        yield launched
