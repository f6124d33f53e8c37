"""Architecture rules that a test can hold: sans-IO codecs, the public API."""

from __future__ import annotations

import ast
from pathlib import Path

import aionet

PKG = Path(aionet.__file__).resolve().parent
FORBIDDEN_IN_PROTO = {"asyncio", "socket", "selectors", "ssl", "uvloop", "trio"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_proto_modules_do_no_io() -> None:
    files = list((PKG / "proto").rglob("*.py"))  # codec packages too
    assert files, "aionet/proto must exist"
    for path in files:
        bad = imported_modules(path) & FORBIDDEN_IN_PROTO
        assert not bad, f"{path.name} imports {sorted(bad)}: codecs in aionet/proto are sans-IO"


def test_public_api_is_exported() -> None:
    for name in aionet.__all__:
        assert hasattr(aionet, name), name
    assert {
        "StreamHandler",
        "ProtocolHandler",
        "DatagramHandler",
        "Connection",
        "register",
        "Server",
    } <= set(aionet.__all__)


def test_handlers_do_not_bind_sockets_themselves() -> None:
    for path in (PKG / "handlers").glob("*.py"):
        text = path.read_text()
        for call in ("create_server(", "start_server(", ".bind(", "create_datagram_endpoint("):
            assert call not in text, f"{path.name} calls {call}: the core owns listening sockets"
