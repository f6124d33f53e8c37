"""The ``aionet`` command: run | check | version.

Exit codes: 0 ok, 2 usage or configuration error, 1 runtime failure (one line on stderr; the
traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import signal
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .auth.cli import add_parser as add_users_parser
from .auth.cli import cmd_users
from .config.loader import DEFAULT_CONFIG_NAME
from .core.certgen import DEFAULT_HOSTS, generate_self_signed
from .core.preflight import preflight
from .core.registry import resolve_listener
from .errors import AionetError, ConfigError, StartupError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .config.models import Config
    from .core.preflight import Checked
    from .core.privileges import Daemon

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aionet", description="asyncio multi-protocol server framework"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"aionet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", help="YAML config file (default: the embedded default)")
    run.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop implementation (default: uvloop)",
    )
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N worker processes with SO_REUSEPORT (overrides server.workers)",
    )
    run.add_argument(
        "--log-format", choices=["auto", "console", "json"], help="override logging.format"
    )
    run.add_argument(
        "--allow-root",
        action="store_true",
        default=_env_flag("AIONET_ALLOW_ROOT"),
        help="serve as root without server.user, like server.allow_root: true "
        "(default from AIONET_ALLOW_ROOT=1)",
    )
    run.add_argument(
        "--reload",
        action="store_true",
        help="for handler authors: restart when a .py or .yaml file under the working "
        "directory or the config's changes (not for production: SIGHUP reloads in place)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="override logging.level",
    )

    check = sub.add_parser("check", help="validate a config file without binding anything")
    check.add_argument("-c", "--config", help="YAML config file (default: the embedded default)")

    config = sub.add_parser("config", help="show the effective config, or its JSON Schema")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser(
        "show",
        help="the effective config as YAML: ${VAR}s and defaults resolved, relative paths made "
        "absolute, handler options validated, secrets masked",
    )
    show.add_argument("-c", "--config", help="YAML config file (default: the embedded default)")
    config_sub.add_parser(
        "schema", help="the JSON Schema of aionet.yaml (for editor completion and checks)"
    )

    sub.add_parser("version", help="print versions of aionet, Python, the loop and dependencies")
    # Parsed by aionet.bench.cli (its subcommands come from the bench target registry).
    sub.add_parser(
        "bench",
        help="load generator: aionet bench TARGET ... | merge FILE... | compare BASE NEW",
        add_help=False,
    ).add_argument("bench_args", nargs=argparse.REMAINDER)
    add_users_parser(sub)

    cert = sub.add_parser("cert", help="write a self-signed development certificate")
    cert.add_argument("--out", required=True, type=Path, help="directory for cert.pem, key.pem")
    cert.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or IP address for the certificate (repeatable; default: "
        "localhost, 127.0.0.1, ::1)",
    )
    completion = sub.add_parser(
        "completion", help="print a shell completion script: eval \"$(aionet completion bash)\""
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    init = sub.add_parser(
        "init",
        help="write a ready lab into DIR: every protocol on, TLS, a user, a DNS zone",
        description="Write DIR/aionet.yaml (every built-in protocol, STARTTLS offered), a "
        "development certificate, a users file with one user (its generated password is printed "
        "once), a DNS zone, a static site and an admin viewer token. Then: aionet run -c "
        "DIR/aionet.yaml",
    )
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--user", default="lab", help="the lab's user name (default: lab)")
    init.add_argument(
        "--force", action="store_true", help="write into DIR even if it is not empty"
    )
    token = sub.add_parser(
        "token",
        help="make a bearer token for the admin listener (the token on stdout, its tokens: "
        "entry on stderr)",
    )
    token.add_argument("--name", default="token", help="a name for the operator's benefit")
    token.add_argument("--role", choices=("viewer", "admin"), default="viewer")

    lockouts = sub.add_parser(
        "lockouts", help="list or clear auth lock-outs of a running daemon (its admin listener)"
    )
    lockouts.add_argument("action", choices=("list", "clear"))
    lockouts.add_argument(
        "--admin",
        default=os.environ.get("AIONET_ADMIN", "http://127.0.0.1:9090"),
        help="the admin listener's URL (default: $AIONET_ADMIN or http://127.0.0.1:9090)",
    )
    lockouts.add_argument(
        "--token",
        default=os.environ.get("AIONET_TOKEN"),
        help="a bearer token (default: $AIONET_TOKEN); clear needs an admin one",
    )
    lockouts.add_argument("--network", help="clear: only this client address (IPv6: its /64)")
    lockouts.add_argument("--user", help="clear: only this user name")
    return parser


def cmd_lockouts(args: argparse.Namespace) -> int:
    """``aionet lockouts list|clear``: ``GET /lockouts`` / ``POST /lockouts/clear``."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if args.action == "list":
        request = urllib.request.Request(args.admin.rstrip("/") + "/lockouts")
    else:
        query = {k: v for k, v in (("network", args.network), ("user", args.user)) if v}
        url = args.admin.rstrip("/") + "/lockouts/clear?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, method="POST", data=b"")
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            sys.stdout.write(response.read().decode())
    except urllib.error.HTTPError as exc:
        print(f"aionet: {args.admin}: {exc.code} {exc.read().decode().strip()}", file=sys.stderr)
        return EXIT_FAILURE
    except (urllib.error.URLError, OSError) as exc:
        print(f"aionet: cannot reach the admin listener {args.admin}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = [a for a in argv if a != "--debug"]
    if rest[:1] == ["bench"]:
        from .bench.cli import main as bench_main

        debug = ["--debug"] if "--debug" in argv[: argv.index("bench")] else []
        return bench_main(debug + argv[argv.index("bench") + 1 :])
    args = _parser().parse_args(argv)
    args.argv = argv
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "check": cmd_check,
        "version": cmd_version,
        "users": cmd_users,
        "cert": cmd_cert,
        "token": cmd_token,
        "lockouts": cmd_lockouts,
        "init": cmd_init,
        "completion": cmd_completion,
        "config": cmd_config,
    }
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_USAGE
    except AionetError as exc:
        if args.debug:
            raise
        print(f"aionet: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"aionet: unexpected error: {exc!r} (run with --debug for a traceback)", file=sys.stderr
        )
        return EXIT_FAILURE


def _print_config_error(exc: ConfigError) -> None:
    for issue in exc.issues:
        print(issue, file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    """Exactly what ``aionet run`` checks before it binds (``preflight``), then stop."""
    checked = preflight(args.config)
    checked.close()  # nothing is served: the stores were loaded only to check them
    config = checked.config
    name = args.config or DEFAULT_CONFIG_NAME
    n = len(config.listeners)
    print(f"{name}: ok ({n} listener{'' if n == 1 else 's'})")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    """``config show`` (after the same checks as ``check``) or ``config schema``."""
    import json

    import yaml

    from .config.models import Config

    if args.config_command == "schema":
        schema = Config.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "aionet.yaml"
        print(json.dumps(schema, indent=1))
        return EXIT_OK
    checked = preflight(args.config)
    checked.close()
    config = checked.config
    data = config.model_dump(mode="json")
    for item, listener in zip(data["listeners"], config.listeners, strict=True):
        _cls, options = resolve_listener(listener)
        item["options"] = options.model_dump(mode="json")
    print(yaml.safe_dump(_masked(data), sort_keys=False, allow_unicode=True), end="")
    return EXIT_OK


_SECRET_KEYS = ("password", "secret", "sha256", "token_value")


def _masked(value: Any) -> Any:
    """``value`` with what a secret key holds replaced by ``"***"``."""
    if isinstance(value, dict):
        return {
            k: "***" if any(s in str(k).lower() for s in _SECRET_KEYS) and v else _masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def cmd_cert(args: argparse.Namespace) -> int:
    try:
        cert, key = generate_self_signed(args.out, args.host or None)
    except OSError as exc:
        print(f"aionet: cannot write to {args.out}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {cert} and {key} (hosts: {', '.join(args.host or DEFAULT_HOSTS)})")
    return EXIT_OK


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
            raise StartupError("uvloop is not installed; use --loop asyncio") from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def cmd_run(args: argparse.Namespace) -> int:
    if args.reload:
        from .core.reloader import run_with_reload

        dirs = [Path.cwd()] + ([Path(args.config).resolve().parent] if args.config else [])
        return run_with_reload([a for a in args.argv if a != "--reload"], dirs)
    from .core.logging import configure_logging
    from .core.privileges import Daemon, PrivilegeError
    from .core.supervisor import Supervisor, worker_info

    def configure(config: Config) -> None:  # before the files load: what they log is logged
        configure_logging(
            args.log_format or config.logging.format, args.log_level or config.logging.level
        )

    # The checks ``aionet check`` runs (a config error exits 2); what they load is served.
    checked = preflight(args.config, before_files=configure)
    config = checked.config
    workers = args.workers if args.workers is not None else config.server.workers
    if workers < 1:
        print("aionet: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    info = worker_info()
    own = config
    if info is not None:  # the pid file is the supervisor's
        own = config.model_copy(
            update={"server": config.server.model_copy(update={"pid_file": None})}
        )
    try:
        daemon = Daemon.prepare(own, allow_root=args.allow_root)
    except PrivilegeError as exc:
        print(f"aionet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if info is None and workers > 1:
        unix = [lc.name for lc in config.listeners if lc.bind.kind == "unix"]
        if unix:
            print(
                f"aionet: --workers {workers}: unix-socket listeners cannot be shared by "
                f"several workers ({', '.join(unix)}); use one worker or a TCP bind",
                file=sys.stderr,
            )
            return EXIT_USAGE
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"workers": workers})}
        )
        passed = ["--loop", args.loop]
        if args.log_format:
            passed += ["--log-format", args.log_format]
        if args.log_level:
            passed += ["--log-level", args.log_level]
        if args.allow_root:
            passed.append("--allow-root")
        checked.close()  # each worker runs this command: its own preflight, its own stores
        supervisor = Supervisor(config, args.config, passed, daemon)
        try:
            return asyncio.run(supervisor.run())
        finally:
            daemon.cleanup()
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            return runner.run(_serve(checked, args.config, daemon))
    finally:
        daemon.cleanup()


async def _serve(checked: Checked, path: str | None = None, daemon: Daemon | None = None) -> int:
    from .core.server import Server
    from .core.supervisor import (
        PeerLockouts,
        PeerSamples,
        report_ready,
        watch_parent,
        worker_info,
        worker_transform,
    )
    from .core.systemd import Notifier

    info = worker_info()
    transform = worker_transform(info) if info is not None else None
    config = checked.config
    server = Server(
        transform(config) if transform else config,  # ports and SO_REUSEPORT: same stores
        path,
        after_bind=daemon.after_bind if daemon is not None else None,
        notifier=Notifier.from_env(),  # a worker's environment has no NOTIFY_SOCKET
        tls=checked.tls,  # loaded by preflight: not loaded again
        users=checked.users,
    )
    server.config_transform = transform
    server.manage_fd_limit = True
    peers: PeerSamples | None = None
    if info is not None:
        import structlog

        structlog.contextvars.bind_contextvars(worker=info.index)
        server.worker = (info.index, info.count)
        if info.secret is not None:
            server.secret = info.secret
            os.environ.pop("AIONET_WORKER_SECRET", None)  # not for the apps' subprocesses
        if any(lc.protocol == "admin" for lc in config.listeners):
            server.peer_samples = peers = PeerSamples(server, info)
            server.peer_lockouts = PeerLockouts(server, info)

        orphan_watch = asyncio.get_running_loop().create_task(watch_parent(server))

    async def when_ready() -> None:
        await server.ready.wait()
        # Everything imported and built at start-up (apps, handlers, zones) lives as long as
        # the process: move it out of the collector's way. Without this every full
        # collection walked it all — ~20 ms pauses a few times a second under load, which
        # were the p99 of HTTP at 256 connections.
        gc.freeze()
        if info is not None:
            if peers is not None:
                peers.start()
            report_ready(info)

    readiness = asyncio.get_running_loop().create_task(when_ready())
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            server.request_shutdown()
        else:
            server.force_shutdown()

    loop.add_signal_handler(signal.SIGTERM, server.request_shutdown)
    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGHUP, server.request_reload)
    try:
        await server.serve()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGHUP)
        readiness.cancel()
        if info is not None:
            # A late SIGTERM (systemd signals the whole cgroup, the supervisor forwards one
            # too) must not kill a worker that is already finishing cleanly.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            orphan_watch.cancel()
        if peers is not None:
            await peers.stop()
    return server.exit_code


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, Any]:
    from . import __version__

    return {
        "aionet": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "uvloop": _version("uvloop"),
        "pydantic": _version("pydantic"),
        "structlog": _version("structlog"),
        "pyyaml": _version("PyYAML"),
    }


def cmd_token(args: argparse.Namespace) -> int:
    """A random token alone on stdout (``TOKEN=$(aionet token)``); the YAML entry to put in the
    admin listener's ``tokens`` (its SHA-256 only) on stderr."""
    import secrets

    from .admin.app import hash_token

    value = secrets.token_urlsafe(32)
    print(value)
    print("# admin listener options.tokens entry (only the hash is stored):", file=sys.stderr)
    entry = f"- {{name: {args.name}, role: {args.role}, sha256: {hash_token(value)}}}"
    print(entry, file=sys.stderr)
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    """The completion script for ``args.shell``, drawn from this parser (``bench``'s targets
    included)."""
    from .bench.cli import build_parser
    from .bench.registry import available
    from .completion import completion_script

    parser = _parser()
    for action in parser._actions:  # give `bench` its real sub-commands for completion
        if isinstance(action, argparse._SubParsersAction):
            action.choices["bench"] = build_parser(available())
    print(completion_script(parser, args.shell), end="")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    """``aionet init DIR``: the lab (``aionet.lab``); its secrets are printed once."""
    from .lab import LabExists, write_lab

    try:
        lab = write_lab(args.dir, user=args.user, force=args.force)
    except (LabExists, ValueError) as exc:
        print(f"aionet: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILURE
    config = lab.config
    print(f"wrote an aionet lab into {config.parent}")
    print(f"  user {lab.user}, password {lab.password}  (shown once; users.yaml keeps a hash)")
    print(f"  admin viewer token {lab.viewer_token}  (shown once)")
    print(f"  dashboard {lab.dashboard}  (log in as {lab.user} in a browser)")
    print(f"  certificate {lab.cafile}  (clients: --cacert / cafile=)")
    print(f"start it:  aionet run -c {config}")
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    for name, value in versions().items():
        print(f"{name} {value}")
    return EXIT_OK
