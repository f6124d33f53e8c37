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


def relative_imports(path: Path) -> set[str]:
    """Every ``from .x import`` / ``from ..x import`` target, at any depth (function-local
    imports included), as ``aionet.``-rooted dotted names."""
    package = path.resolve().relative_to(PKG.parent).with_suffix("").parts[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            out.add(".".join((*base, node.module or "")).rstrip("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_the_config_path_goes_one_way() -> None:
    """The loader and the positioned reader never climb into the core; the users store reads
    its file through the leaf reader, not the loader (issue 14)."""
    for name in ("loader.py", "source.py"):
        core = {m for m in relative_imports(PKG / "config" / name) if m.startswith("aionet.core")}
        assert not core, f"config/{name} imports {sorted(core)}"
    source = relative_imports(PKG / "config" / "source.py")
    assert {m for m in source if m.startswith("aionet.")} <= {"aionet.errors"}
    users = relative_imports(PKG / "auth" / "users.py")
    users_file = relative_imports(PKG / "auth" / "usersfile.py")
    assert "aionet.config.loader" not in users | users_file
    assert "aionet.config.source" in users_file
