"""The ``aionet_server`` fixture in a handler author's own project, as README's "Testing a
handler" shows it: pytest-asyncio in its default (strict) mode, no configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HANDLER = """
from aionet import Connection, StreamHandler

class Greet(StreamHandler):
    async def handle(self, conn: Connection) -> None:
        name = await conn.reader.readline()
        conn.writer.write(b"hello " + name)
        await conn.writer.drain()
"""

TEST = """
import asyncio

async def test_greet(aionet_server):
    server = await aionet_server({"listeners": [
        {"name": "greet", "protocol": "greet:Greet", "bind": "127.0.0.1:0"}]})
    reader, writer = await asyncio.open_connection(*server.address("greet"))
    writer.write(b"lab\\n")
    assert await reader.readline() == b"hello lab\\n"
    writer.close()
    await writer.wait_closed()

def test_plain():
    assert True
"""


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "greet.py").write_text(HANDLER)
    (project / "test_greet.py").write_text(TEST)
    (project / "pytest.ini").write_text("[pytest]\n")  # strict mode: pytest-asyncio's default
    return project


def _pytest(project: Path, *, block_asyncio: bool) -> subprocess.CompletedProcess[str]:
    path = [str(project)]
    args = ["-q", "-p", "no:cacheprovider"]
    if block_asyncio:  # as if not installed: its plugin not loaded, its import failing
        shadow = project.parent / "shadow" / "pytest_asyncio"
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text("raise ImportError('no pytest-asyncio here')\n")
        path.insert(0, str(shadow.parent))
        args += ["-p", "no:asyncio"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin", "AIONET_ALLOW_ROOT": "1"},
    )


def test_the_readme_snippet_runs_in_strict_mode(tmp_path: Path) -> None:
    done = _pytest(_project(tmp_path), block_asyncio=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_without_pytest_asyncio_the_plugin_says_what_is_missing(tmp_path: Path) -> None:
    done = _pytest(_project(tmp_path), block_asyncio=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout  # the project's other tests are untouched
    assert "pip install 'aionet[testing]'" in done.stdout + done.stderr
