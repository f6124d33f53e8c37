"""``aionet completion bash|zsh``: a shell completion script drawn from the CLI's own parser.

The words come from the argparse parser at the time the script is printed (commands, their
actions, their options and choices), so the script never drifts from the CLI. File options
(``-c``, ``--config``, ``-f``, ``--file``, ``--out``, ``--json``, ``--html``) complete paths.
zsh runs the same function through ``bashcompinit``.

    eval "$(aionet completion bash)"        # or put it in ~/.bashrc
    eval "$(aionet completion zsh)"         # or ~/.zshrc
"""

from __future__ import annotations

import argparse
import shlex

__all__ = ["completion_script"]

_FILE_OPTIONS = ("-c", "--config", "-f", "--file", "--out", "--json", "--html")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _words(parser: argparse.ArgumentParser) -> list[str]:
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            words += list(action.choices)
        elif action.option_strings:
            words += [o for o in action.option_strings if o.startswith("--") or len(o) == 2]
            if action.choices:
                words += [str(c) for c in action.choices]
        elif action.choices:
            words += [str(c) for c in action.choices]
    return list(dict.fromkeys(words))


def _arms(parser: argparse.ArgumentParser, *, nested: bool) -> str:
    """``case`` arms: each command (``nested``: each ``command action``) → the words after it."""
    arms: list[str] = []
    for name, sub in sorted(_subparsers(parser).items()):
        if not nested:
            arms.append(f"      {shlex.quote(name)}) words={shlex.quote(' '.join(_words(sub)))} ;;")
            continue
        for action, subsub in sorted(_subparsers(sub).items()):
            key, words = shlex.quote(f"{name} {action}"), " ".join(_words(subsub))
            arms.append(f"      {key}) words={shlex.quote(words)} ;;")
    return "\n".join(arms)


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    files = "|".join(_FILE_OPTIONS)
    body = f"""_aionet() {{
  local cur prev words
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  case "$prev" in
    {files}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  words={shlex.quote(" ".join(_words(parser)))}
  if [ "$COMP_CWORD" -gt 1 ]; then
    case "${{COMP_WORDS[1]}}" in
{_arms(parser, nested=False)}
    esac
  fi
  if [ "$COMP_CWORD" -gt 2 ]; then
    case "${{COMP_WORDS[1]}} ${{COMP_WORDS[2]}}" in
{_arms(parser, nested=True)}
    esac
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
"""
    prelude = "autoload -U +X bashcompinit && bashcompinit\n" if shell == "zsh" else ""
    return prelude + body + "complete -F _aionet aionet\n"
