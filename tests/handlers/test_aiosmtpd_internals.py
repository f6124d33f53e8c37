"""aiosmtpd internals: every private name ``aionet.smtp._aiosmtpd`` uses still exists.

aiosmtpd has no public API for what aionet's SMTP engine needs (swap the transport after
STARTTLS, mark implicit TLS, wrap every command, per-connection AUTH-over-TLS), so
``aionet/smtp/_aiosmtpd.py`` reaches into its private names, and only that module does. When an
aiosmtpd upgrade moves one, this test fails naming it, before a session does.
"""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import version
from pathlib import Path

import aiosmtpd.smtp

from aionet.smtp import _aiosmtpd
from tests.waiting import wait_until

SMTP_PACKAGE = Path(_aiosmtpd.__file__).parent
MODULE = Path(_aiosmtpd.__file__)
FACE = SMTP_PACKAGE.parent / "handlers" / "smtp.py"


class _Transport(asyncio.Transport):
    """Enough of a transport for a connection that never sends anything."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return True  # so no writer's ``__del__`` has anything to warn about

    def close(self) -> None:
        pass


async def _owners() -> dict[str, object]:
    """One object per owner in ``PRIVATE_NAMES``, in the state aionet's engine finds them in
    (instance attributes exist only after ``__init__``, some only after ``connection_made``)."""
    loop = asyncio.get_running_loop()
    smtp = aiosmtpd.smtp.SMTP(object(), loop=loop)
    transport = _Transport()
    smtp.connection_made(transport)
    await wait_until(lambda: transport.written, 5, what="the session task's greeting")
    owners: dict[str, object] = {
        "SMTP": smtp,
        "Session": aiosmtpd.smtp.Session(loop),
        "StreamReader": asyncio.StreamReader(loop=loop),
        "StreamWriter": next(
            (v for v in vars(smtp).values() if isinstance(v, asyncio.StreamWriter)), None
        ),
    }
    smtp.connection_lost(None)
    await asyncio.sleep(0)  # one turn of the loop: the cancelled session task unwinds
    return owners


async def test_every_private_name_still_exists() -> None:
    owners = await _owners()
    assert set(owners) == set(_aiosmtpd.PRIVATE_NAMES)
    missing = [
        f"{owner}.{name}"
        for owner, names in _aiosmtpd.PRIVATE_NAMES.items()
        for name in names
        if not hasattr(owners[owner], name)
    ]
    assert not missing, (
        f"aiosmtpd {version('aiosmtpd')} no longer has {', '.join(missing)}: "
        "aionet/smtp/_aiosmtpd.py must follow the move (then widen the pin in pyproject.toml)"
    )


def _private_uses(path: Path) -> set[str]:
    """The ``._name`` attribute accesses in ``path`` (dunders excluded)."""
    return {m for m in re.findall(r"\.(_[a-z]\w*)", path.read_text()) if not m.startswith("__")}


def test_the_list_covers_every_private_access_of_the_module() -> None:
    listed = {name for names in _aiosmtpd.PRIVATE_NAMES.values() for name in names}
    used = _private_uses(MODULE) - {"_aiosmtpd"}  # the module's own name in its docstring
    assert used <= listed, f"not in PRIVATE_NAMES: {sorted(used - listed)}"


def test_no_other_module_touches_those_names() -> None:
    listed = {name for names in _aiosmtpd.PRIVATE_NAMES.values() for name in names}
    for path in [*SMTP_PACKAGE.glob("*.py"), FACE]:
        if path != MODULE:
            leaked = _private_uses(path) & listed
            assert not leaked, f"{path.name} uses aiosmtpd's private {sorted(leaked)}"


def test_pin_matches_the_tested_minor() -> None:
    pyproject = (SMTP_PACKAGE.parent.parent / "pyproject.toml").read_text()
    major, minor = version("aiosmtpd").split(".")[:2]
    assert f'"aiosmtpd>={major}.{minor}' in pyproject
    assert f",<{major}.{int(minor) + 1}" in pyproject
