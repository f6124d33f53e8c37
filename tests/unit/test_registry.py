"""Handler registry: built-ins, @register, module:Class strings, entry points, precise errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from aionet import DatagramHandler, StreamHandler, register
from aionet.core import registry
from aionet.errors import RegistryError
from aionet.handlers.echo import EchoHandler

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "greet-plugin"


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith(("regmod", "aionet_greet"))]:
        del sys.modules[name]


def test_builtin_names_resolve_lazily() -> None:
    assert registry.resolve("echo") is EchoHandler
    assert issubclass(registry.resolve("udp-echo"), DatagramHandler)


def test_register_decorator() -> None:
    @register("test-registered")
    class Mine(StreamHandler):
        async def handle(self, conn: object) -> None:
            return None

    assert registry.resolve("test-registered") is Mine
    assert "test-registered" in registry.available()


def test_register_rejects_non_handlers() -> None:
    with pytest.raises(RegistryError, match="is not a handler class"):
        register("bad")(int)  # type: ignore[type-var]


def test_module_class_reference(on_path: Path) -> None:
    (on_path / "regmod.py").write_text(
        textwrap.dedent("""
        from aionet import StreamHandler
        class H(StreamHandler):
            async def handle(self, conn): pass
        NOT_A_HANDLER = 3
    """)
    )
    assert registry.resolve("regmod:H").__name__ == "H"
    with pytest.raises(RegistryError, match=r"'regmod:NOT_A_HANDLER' is not a handler class"):
        registry.resolve("regmod:NOT_A_HANDLER")
    with pytest.raises(RegistryError, match=r"module 'regmod' has no attribute 'Missing'"):
        registry.resolve("regmod:Missing")


def test_missing_module_is_named() -> None:
    with pytest.raises(
        RegistryError,
        match=r"cannot import module 'no_such_mod\.sub': no module "
        r"named 'no_such_mod'",
    ):
        registry.resolve("no_such_mod.sub:X")


def test_broken_import_inside_a_module_is_not_reported_as_missing(on_path: Path) -> None:
    (on_path / "regmod_broken.py").write_text("import not_installed_dependency_xyz\n")
    with pytest.raises(
        RegistryError,
        match=r"importing 'regmod_broken' failed: No module named "
        r"'not_installed_dependency_xyz'",
    ):
        registry.resolve("regmod_broken:X")


def test_malformed_reference() -> None:
    with pytest.raises(RegistryError, match=r"must be in the form 'package\.module:Class'"):
        registry.resolve("pkg.mod:")


def test_abstract_bases_are_not_handlers() -> None:
    with pytest.raises(RegistryError, match="is not a handler class"):
        registry.resolve("aionet:StreamHandler")


def test_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(RegistryError, match=r"unknown protocol 'smtpx' \(available: .*echo"):
        registry.resolve("smtpx")


def install_example_plugin(site: Path) -> None:
    """Make the example plugin discoverable exactly as `pip install` would: its module on the
    path and a dist-info whose entry_points.txt comes from the plugin's own pyproject."""
    import tomllib

    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    project = meta["project"]
    dist = site / f"aionet_greet-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    eps = project["entry-points"]["aionet.handlers"]
    lines = ["[aionet.handlers]", *(f"{k} = {v}" for k, v in eps.items())]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (site / "aionet_greet.py").write_text((EXAMPLE / "aionet_greet.py").read_text())


def test_entry_point_plugin_by_name(on_path: Path) -> None:
    install_example_plugin(on_path)
    cls = registry.resolve("greet")
    assert cls.__name__ == "Greet"
    assert "greet" in registry.available()


def test_broken_entry_point_is_reported(on_path: Path) -> None:
    dist = on_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[aionet.handlers]\nbroken = regmod_nothere:X\n")
    with pytest.raises(RegistryError, match=r"plugin 'broken' \(regmod_nothere:X\) failed to load"):
        registry.resolve("broken")
