"""The example plugin (examples/greet-plugin) served end to end, by name and by module:Class."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES
from tests.unit.test_registry import install_example_plugin


@pytest.fixture
def greet_on_path() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES / "greet-plugin"))
    yield
    sys.path.remove(str(EXAMPLES / "greet-plugin"))
    sys.modules.pop("aionet_greet", None)


async def test_aionet_server_fixture_serves_a_plugin_by_module_class(
    aionet_server: Any, greet_on_path: None
) -> None:
    server = await aionet_server(
        {
            "listeners": [
                {
                    "name": "greet",
                    "protocol": "aionet_greet:Greet",
                    "bind": "127.0.0.1:0",
                    "options": {"greeting": "hey"},
                }
            ]
        }
    )
    reader, writer = await asyncio.open_connection(*server.address("greet"))
    writer.write(b"you\nquit\n")
    assert await reader.read() == b"hey you\r\nbye\r\n"
    writer.close()


async def test_plugin_options_are_validated_by_the_plugin(greet_on_path: None) -> None:
    from aionet.core.preflight import load_config_text
    from aionet.errors import ConfigError

    text = (
        "listeners:\n  - name: g\n    protocol: aionet_greet:Greet\n    bind: 127.0.0.1:0\n"
        "    options: {max_line: 2}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "g.yaml")
    assert [str(i) for i in info.value.issues] == [
        "g.yaml:5:25: listeners[0].options.max_line: Input should be greater than or equal to 16"
    ]


def test_installed_plugin_is_served_by_name(daemon: Any, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_example_plugin(site)
    config = """
listeners:
  - name: hello
    protocol: greet
    bind: 127.0.0.1:0
    options: {greeting: bonjour}
"""
    d = daemon(config, env={"PYTHONPATH": str(site)})
    with socket.create_connection(d.address("hello"), timeout=5) as s:
        s.sendall(b"monde\n")
        assert s.recv(100) == b"bonjour monde\r\n"
