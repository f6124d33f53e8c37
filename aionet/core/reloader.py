"""``aionet run --reload``: restart the server when a Python file or the config changes.

For handler authors, as uvicorn's ``--reload`` (its ``StatReload``): the server runs in a child
process (``aionet run`` with the same arguments); this parent polls the modification times of
``*.py``, ``*.yaml`` and ``*.yml`` under the watched directories (the working directory and the
config file's) twice a second, and on a change stops the child (SIGTERM: a normal drain) and
starts a new one. A child that exits on its own (a config error, a crash) is started again at
the next change. SIGINT/SIGTERM to the parent stop the child and end both. Not for production:
a restart drops every connection; SIGHUP reloads a production daemon in place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["run_with_reload", "snapshot"]

PATTERNS = ("*.py", "*.yaml", "*.yml")
POLL = 0.5
STOP_GRACE = 15.0
_log = structlog.get_logger("aionet.reload")
_SKIP = {".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache", ".ruff_cache"}


def snapshot(dirs: Iterable[Path]) -> dict[Path, int]:
    """``path → mtime_ns`` of the watched files under ``dirs`` (virtualenvs and caches skipped)."""
    seen: dict[Path, int] = {}
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if d not in _SKIP and not d.startswith(".")]
            for name in files:
                if name.endswith((".py", ".yaml", ".yml")):
                    path = Path(root, name)
                    try:
                        seen[path] = path.stat().st_mtime_ns
                    except OSError:
                        continue
    return seen


def _changed(before: dict[Path, int], after: dict[Path, int]) -> list[Path]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def _stop(child: subprocess.Popen[bytes]) -> int:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def run_with_reload(argv: Sequence[str], dirs: Sequence[Path]) -> int:
    """Run ``python -m aionet ARGV`` and restart it whenever a watched file changes."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    watched = [d.resolve() for d in dict.fromkeys(dirs)]
    _log.info("reload_watching", dirs=[str(d) for d in watched])
    state = snapshot(watched)
    child = subprocess.Popen([sys.executable, "-m", "aionet", *argv])
    try:
        while not stopping:
            time.sleep(POLL)
            now = snapshot(watched)
            changed = _changed(state, now)
            if not changed:
                continue
            state = now
            _log.info(
                "reload_restarting", changed=[str(p) for p in changed[:3]], more=len(changed) > 3
            )
            _stop(child)
            child = subprocess.Popen([sys.executable, "-m", "aionet", *argv])
    finally:
        code = _stop(child)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if code in (0, -signal.SIGTERM) else code
