"""``aionet completion bash|zsh``: the script is drawn from the CLI's parser and completes in
a real bash."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import run_aionet


def complete(script: str, line: str) -> list[str]:
    """What bash offers for ``line`` (a trailing space: a new word) with ``script`` loaded."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    driver = (
        script
        + f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        + '_aionet; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_actions_options_and_bench_targets() -> None:
    script = run_aionet("completion", "bash").stdout
    assert script.rstrip().endswith("complete -F _aionet aionet")
    assert complete(script, "aionet ru") == ["run"]
    assert complete(script, "aionet in") == ["init"]
    assert set(complete(script, "aionet run --lo")) == {"--loop", "--log-format", "--log-level"}
    assert complete(script, "aionet users add --f") == ["--file", "--force"]
    assert sorted(complete(script, "aionet config s")) == ["schema", "show"]
    assert complete(script, "aionet bench ft") == ["ftp"]
    assert complete(script, "aionet bench ftp --ft") == ["--ftps"]


def test_zsh_gets_the_same_function_through_bashcompinit() -> None:
    script = run_aionet("completion", "zsh").stdout
    assert script.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    assert "_aionet()" in script
