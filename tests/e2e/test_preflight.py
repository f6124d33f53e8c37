"""``aionet check`` and ``aionet run`` share one pre-bind check: a file the server would load
at start that does not load is a config error — the same ``FILE:LINE:COL: key.path: message``
from both, exit 2 — never a runtime failure of ``run`` (exit 1, which systemd restarts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import run_aionet

if TYPE_CHECKING:
    from pathlib import Path

# Every config binds port 0: a ``run`` that got past the check would serve (and time out).
CASES = {
    "missing certificate": (
        "tls:\n"
        "  certificates:\n"
        "    - {name: c, cert: missing.pem, key: missing-key.pem}\n"
        "listeners:\n"
        "  - {name: e, protocol: echo, bind: '127.0.0.1:0', tls: c}\n",
        "3:7: tls.certificates[0]: certificate 'c' ({dir}/missing.pem, {dir}/missing-key.pem): "
        "No such file or directory",
    ),
    "missing users file": (
        "auth:\n"
        "  users_file: nope/users.yaml\n"
        "listeners:\n"
        "  - {name: e, protocol: echo, bind: '127.0.0.1:0'}\n",
        "2:15: auth.users_file: cannot read users file: no such file",
    ),
    "missing static_dir": (
        "listeners:\n"
        "  - name: w\n"
        "    protocol: http\n"
        "    bind: '127.0.0.1:0'\n"
        "    options: {static_dir: ./public}\n",
        "5:27: listeners[0].options.static_dir: static_dir '{dir}/public' is not a directory",
    ),
    "broken zone file": (
        "listeners:\n"
        "  - name: d\n"
        "    protocol: dns\n"
        "    bind: '127.0.0.1:0'\n"
        "    options:\n"
        "      zones:\n"
        "        example.test: {zone_file: bad.zone}\n",
        "7:35: listeners[0].options.zones.example.test.zone_file: zone file {dir}/bad.zone:1: "
        "unknown rdatatype 'here'",
    ),
    "app that does not import": (
        "listeners:\n"
        "  - name: w\n"
        "    protocol: http\n"
        "    bind: '127.0.0.1:0'\n"
        "    options: {app: 'no_such_module_xyz:app'}\n",
        "5:20: listeners[0].options.app: cannot import module 'no_such_module_xyz': "
        "no module named 'no_such_module_xyz' (references import from the config file's "
        "directory, each http listener's app_dir and installed packages: put it there, set "
        "app_dir, or pip install it)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_and_run_report_an_unloadable_file_alike(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    (tmp_path / "bad.zone").write_text("garbage here\n")
    (tmp_path / "c.yaml").write_text(text)
    check = run_aionet("check", "-c", "c.yaml", cwd=tmp_path)
    run = run_aionet("run", "--loop", "asyncio", "-c", "c.yaml", cwd=tmp_path, timeout=20)
    assert (check.returncode, run.returncode) == (2, 2), (check.stderr, run.stderr)
    # Relative paths name files beside the config file, and messages say where they looked.
    assert check.stderr == run.stderr == f"c.yaml:{expected.format(dir=tmp_path)}\n"
    assert check.stdout == run.stdout == ""


def test_a_broken_users_file_is_reported_at_its_own_lines(tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("users:\n  alice: {roles: [nope], colour: red}\n")
    (tmp_path / "users.yaml").chmod(0o600)
    (tmp_path / "c.yaml").write_text(
        "auth: {users_file: users.yaml}\n"
        "listeners: [{name: e, protocol: echo, bind: '127.0.0.1:0'}]\n"
    )
    check = run_aionet("check", "-c", "c.yaml", cwd=tmp_path)
    run = run_aionet("run", "--loop", "asyncio", "-c", "c.yaml", cwd=tmp_path, timeout=20)
    assert (check.returncode, run.returncode) == (2, 2)
    assert check.stderr == run.stderr
    assert check.stderr.startswith(f"{tmp_path / 'users.yaml'}:2:")


def test_a_valid_config_with_its_files_passes_check(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "c.yaml").write_text(
        "listeners:\n"
        "  - {name: w, protocol: http, bind: '127.0.0.1:0', options: {static_dir: public}}\n"
    )
    check = run_aionet("check", "-c", "c.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout == "c.yaml: ok (1 listener)\n"


def test_relative_paths_and_references_are_the_config_files_not_the_cwd(tmp_path: Path) -> None:
    """As nginx and Postfix resolve theirs: the systemd unit runs in /var/lib/aionet with the
    config in /etc/aionet, and a users file beside the config must be found (issue 15.2)."""
    etc, elsewhere = tmp_path / "etc", tmp_path / "var"
    (etc / "www").mkdir(parents=True)
    (etc / "apps").mkdir()
    elsewhere.mkdir()
    assert run_aionet("users", "add", "-f", str(etc / "users.yaml"), "ann", input="pw\n")
    (etc / "site.zone").write_text(
        "@ 60 IN SOA ns.site.test. admin.site.test. 1 7200 900 1209600 60\n"
        "@ 60 IN NS ns.site.test.\nns 60 IN A 127.0.0.1\n"
    )
    (etc / "lab_handlers.py").write_text(
        "from aionet.handlers.echo import EchoHandler as Handler\n"
    )
    (etc / "apps" / "lab_app.py").write_text("async def app(scope, receive, send): ...\n")
    (etc / "aionet.yaml").write_text(
        "auth: {users_file: users.yaml}\n"
        "listeners:\n"
        # Listed before the listener whose app_dir holds its module: order does not matter.
        "  - {name: a, protocol: http, bind: '127.0.0.1:0', options: {app: 'lab_app:app'}}\n"
        "  - {name: b, protocol: http, bind: '127.0.0.1:0',\n"
        "     options: {app_dir: apps, static_dir: www}}\n"
        "  - {name: c, protocol: 'lab_handlers:Handler', bind: '127.0.0.1:0'}\n"
        "  - {name: d, protocol: dns, bind: '127.0.0.1:0',\n"
        "     options: {zones: {site.test: {zone_file: site.zone}}}}\n"
    )
    check = run_aionet("check", "-c", str(etc / "aionet.yaml"), cwd=elsewhere)
    assert check.returncode == 0, check.stderr
