"""The FTP jail: a client path → a real path that is certainly inside the user's root.

Rules (each refused with ``550``, tested one by one):

* a NUL byte, a backslash, or a percent-encoded separator or dot (``%2f``, ``%5c``, ``%2e``)
  anywhere in the argument: clients do not send them, attacks do;
* ``..`` that would climb above the virtual root (``/..``, ``a/../../x``); ``..`` that stays
  inside is resolved like a shell would;
* an absolute path is taken relative to the user's root (``/etc/passwd`` is
  ``ROOT/etc/passwd``), so it cannot name anything outside;
* after that, the **real** path (``os.path.realpath``: every symlink followed) of the target,
  or of its nearest existing ancestor when it does not exist yet, must be the root or inside it;
  a symlink pointing out of the root is refused whatever it points to.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ProtocolError

__all__ = ["Jail", "Refused"]

_BAD = re.compile(r"[\x00\\]|%(2[fFeE]|5[cC]|00)")


class Refused(ProtocolError):
    """A command must be answered with ``code message`` (the session goes on); ``reply`` is
    that line as bytes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}", reply=f"{code} {message}\r\n".encode())
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Jail:
    """One user's root: ``root`` is the real, resolved directory."""

    root: Path

    @classmethod
    def at(cls, root: Path) -> Jail:
        return cls(Path(os.path.realpath(root)))

    def virtual(self, cwd: PurePosixPath, arg: str | PurePosixPath) -> PurePosixPath:
        """The normalised virtual path of ``arg`` seen from ``cwd``.

        Raises:
            Refused: 550 for forbidden characters or a ``..`` above the root.
        """
        text = str(arg)
        if _BAD.search(text):
            raise Refused("550", "Forbidden characters in path.")
        path = PurePosixPath(text)
        if not path.is_absolute():
            path = cwd / path
        parts: list[str] = []
        for part in path.parts[1:]:
            if part == "..":
                if not parts:
                    raise Refused("550", "Path outside the home directory.")
                parts.pop()
            elif part != ".":
                parts.append(part)
        return PurePosixPath("/", *parts)

    def real(self, virtual: PurePosixPath) -> Path:
        """The real path of a normalised virtual path, checked against symlink escapes.

        Raises:
            Refused: 550 when the path (or its nearest existing ancestor) resolves outside.
        """
        candidate = self.root.joinpath(*virtual.parts[1:])
        resolved = Path(os.path.realpath(candidate))
        if not self.contains(resolved):
            raise Refused("550", "Path outside the home directory.")
        return candidate

    def resolve(self, cwd: PurePosixPath, arg: str | PurePosixPath) -> tuple[Path, PurePosixPath]:
        """``(real, virtual)`` for ``arg`` from ``cwd``; see the module rules.

        Raises:
            Refused: 550 for anything that could reach outside the root.
        """
        virtual = self.virtual(cwd, arg)
        return self.real(virtual), virtual

    def contains(self, path: Path) -> bool:
        return path == self.root or path.is_relative_to(self.root)
