"""FTP transfer speed over loopback: 256 MiB RETR and STOR with curl against bare aioftp,
pyftpdlib, aionet's ``ftp`` handler and vsftpd (the native reference, if installed), one run.

    python benchmarks/ftp.py [--size-mib 256] [--rounds 5] [--json out.json]

* aioftp: ``servers/aioftp_server.py`` — ``aioftp.Server`` as shipped (stream data path), uvloop.
* pyftpdlib: ``servers/pyftpdlib_server.py`` — its defaults (``sendfile`` for RETR).
* aionet: ``python -m aionet run`` with an ``ftp`` listener (uvloop), users from a users file;
  measured with its default ``fsync: false`` (as the others: the upload is renamed into place,
  then acknowledged) and once more with ``fsync: true`` (fsynced before the rename).
* vsftpd (Debian package ``vsftpd``, optional): anonymous read/upload, in the foreground.

Every server is pinned to core 0, curl to core 1 (``taskset``). Each round runs every server in
turn, the order rotating, so the noise of a shared machine spreads evenly; the table shows
medians. A transfer's MB/s is ``bytes / (time_total - time_pretransfer)`` from curl's
``--write-out``: the login is excluded, and for an upload the wait for the ``226`` is included.
Targets (issue 6): downloads >= 1.0x pyftpdlib, uploads >= 0.8x pyftpdlib.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    HERE,
    PY,
    add_baseline_option,
    baseline_tree,
    free_port,
    machine_facts,
    median,
    on_baseline,
    pinned,
    spawned,
    wait_listening,
)

SERVER_CORE, CLIENT_CORE = 0, 1


@dataclass
class Setup:
    argv: list[str]
    root: Path  # where big.bin is and uploads land
    url: str  # ftp://user:pass@host:port/ (directory of big.bin)


Factory = Callable[[int, Path, Path], Setup]


def _seed(root: Path, source: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    os.link(source, root / "big.bin")


def aioftp_server(port: int, tmp: Path, source: Path) -> Setup:
    root = tmp / "root"
    _seed(root, source)
    argv = [PY, str(HERE / "servers" / "aioftp_server.py"), str(port), str(root)]
    return Setup(argv, root, f"ftp://bench:bench@127.0.0.1:{port}/")


def pyftpdlib_server(port: int, tmp: Path, source: Path) -> Setup:
    root = tmp / "root"
    _seed(root, source)
    argv = [PY, str(HERE / "servers" / "pyftpdlib_server.py"), str(port), str(root)]
    return Setup(argv, root, f"ftp://bench:bench@127.0.0.1:{port}/")


def _aionet(fsync: bool, clear_login_option: bool = True) -> Factory:
    """``clear_login_option``: name ``auth_without_tls`` (revisions before it existed, which
    allowed clear-text logins anyway, refuse the unknown key)."""
    clear = ", auth_without_tls: true" if clear_login_option else ""

    def factory(port: int, tmp: Path, source: Path) -> Setup:
        from argon2 import PasswordHasher

        users = tmp / "users.yaml"
        users.write_text(
            f"users:\n  bench:\n    password_hash: '{PasswordHasher().hash('bench')}'\n"
        )
        root = tmp / "var" / "ftp" / "bench"
        _seed(root, source)
        config = tmp / "aionet.yaml"
        config.write_text(f"""
server:
  data_dir: {tmp / "var"}
logging: {{format: json, level: warning}}
auth: {{users_file: {users}}}
listeners:
  - name: ftp
    protocol: ftp
    bind: 127.0.0.1:{port}
    options: {{fsync: {str(fsync).lower()}{clear}}}
""")
        argv = [PY, "-m", "aionet", "run", "-c", str(config), "--log-level", "warning"]
        return Setup(argv, root, f"ftp://bench:bench@127.0.0.1:{port}/")

    return factory


def vsftpd_server(port: int, tmp: Path, source: Path) -> Setup:
    root = tmp / "anon"
    pub = root / "pub"
    _seed(pub, source)
    root.chmod(0o755)
    pub.chmod(0o777)
    (pub / "big.bin").chmod(0o644)
    empty = tmp / "empty"
    empty.mkdir()
    conf = tmp / "vsftpd.conf"
    conf.write_text(f"""listen=YES
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_umask=022
no_anon_password=YES
anon_root={root}
secure_chroot_dir={empty}
seccomp_sandbox=NO
xferlog_enable=NO
pasv_enable=YES
""")
    return Setup(["vsftpd", str(conf)], pub, f"ftp://anonymous:x@127.0.0.1:{port}/pub/")


SERVERS: dict[str, Factory] = {
    "aioftp": aioftp_server,
    "pyftpdlib": pyftpdlib_server,
    "aionet": _aionet(fsync=False),
    "aionet-fsync": _aionet(fsync=True),
}
if shutil.which("vsftpd") is not None and os.geteuid() == 0:
    SERVERS["vsftpd"] = vsftpd_server


@contextlib.contextmanager
def serving(factory: Factory, source: Path) -> Iterator[Setup]:
    port = free_port()
    with tempfile.TemporaryDirectory(dir=source.parent) as name:
        setup = factory(port, Path(name), source)
        with spawned(
            setup.argv,
            core=SERVER_CORE,
            env={**os.environ, "PYTHONPATH": str(HERE)},
        ) as proc:
            wait_listening(port, proc)
            time.sleep(0.3)
            yield setup


def curl(*args: str) -> float:
    """MB/s of one transfer (bytes / (time_total - time_pretransfer))."""
    fmt = "%{size_download} %{size_upload} %{time_pretransfer} %{time_total}"
    argv = pinned(CLIENT_CORE, ["curl", "-sS", "--max-time", "300", "-w", fmt, *args])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    down, up, pre, total = (float(x) for x in out.split())
    return max(down, up) / (total - pre) / 1e6


def measure(setup: Setup, source: Path, size: int) -> tuple[float, float]:
    down = curl("-o", os.devnull, setup.url + "big.bin")
    target = setup.root / "up.bin"
    up = curl("-T", str(source), setup.url + "up.bin")
    if target.stat().st_size != size:
        raise RuntimeError(f"upload incomplete: {target.stat().st_size} of {size}")
    target.unlink()
    return down, up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    add_baseline_option(parser)
    args = parser.parse_args()
    chosen = args.servers.split(",")
    if args.baseline:
        tree = baseline_tree(args.baseline)
        knows = "auth_without_tls" in (tree / "aionet" / "core" / "handler.py").read_text()
        old = _aionet(fsync=False, clear_login_option=knows)
        SERVERS["aionet@base"] = on_baseline(old, tree)
        chosen.append("aionet@base")
    if shutil.which("curl") is None:
        sys.exit("needs curl")
    size = args.size_mib * 1024 * 1024
    results: dict[str, dict[str, list[float]]] = {n: {"down": [], "up": []} for n in chosen}
    with tempfile.TemporaryDirectory(prefix="aionet-ftp-bench-") as name:
        source = Path(name) / "source.bin"
        with source.open("wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1024 * 1024))
        names = list(chosen)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for server in order:
                with serving(SERVERS[server], source) as setup:
                    down, up = measure(setup, source, size)
                results[server]["down"].append(down)
                results[server]["up"].append(up)
                print(f"round {r + 1} {server:15s} RETR {down:8.1f} MB/s  STOR {up:8.1f} MB/s")
    table = {n: {k: median(v) for k, v in d.items()} for n, d in results.items()}
    base = table.get("pyftpdlib") or next(iter(table.values()))
    print(f"\n{args.size_mib} MiB over loopback, medians of {args.rounds} rounds (MB/s)")
    print(f"{'server':15s} {'RETR':>8s} {'x pyftpdlib':>12s} {'STOR':>8s} {'x pyftpdlib':>12s}")
    for server, m in table.items():
        print(
            f"{server:15s} {m['down']:8.1f} {m['down'] / base['down']:12.2f} "
            f"{m['up']:8.1f} {m['up'] / base['up']:12.2f}"
        )
    facts = machine_facts()
    print("\n" + ", ".join(f"{k}: {v}" for k, v in facts.items()))
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "runs": results, "medians": table}))


if __name__ == "__main__":
    main()
