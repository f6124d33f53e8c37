"""``benchmarks/_harness.on_baseline``: a server started "as of REV" imports that tree's aionet,
wherever the benchmark runs from — the repository's root included, whose own ``aionet/``
``python -m`` would otherwise find first (it puts the working directory ahead of
``PYTHONPATH``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import on_baseline  # noqa: E402


def test_a_baseline_server_imports_aionet_from_its_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "aionet").mkdir(parents=True)
    (tree / "aionet" / "__init__.py").write_text("")
    show = [sys.executable, "-c", "import aionet; print(aionet.__file__)"]
    argv = on_baseline(lambda: show, tree)()
    seen = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert seen.strip() == str(tree / "aionet" / "__init__.py")
    # and the tree's own run (no baseline) from the root still imports the root's
    mine = subprocess.run(show, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert mine.strip() == str(ROOT / "aionet" / "__init__.py")
