"""The ``aionet`` command: run | check | version.

Exit codes: 0 ok, 2 usage or configuration error, 1 runtime failure (one line on stderr; the
traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .auth.cli import add_parser as add_users_parser
from .auth.cli import cmd_users
from .config.loader import DEFAULT_CONFIG_NAME, load_config
from .core.certgen import DEFAULT_HOSTS, generate_self_signed
from .errors import AionetError, ConfigError, StartupError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .config.models import Config
    from .core.privileges import Daemon

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aionet", description="asyncio multi-protocol server framework"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
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
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="override logging.level",
    )

    check = sub.add_parser("check", help="validate a config file without binding anything")
    check.add_argument("-c", "--config", help="YAML config file (default: the embedded default)")

    sub.add_parser("version", help="print versions of aionet, Python, the loop and dependencies")
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
    return parser


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "check": cmd_check,
        "version": cmd_version,
        "users": cmd_users,
        "cert": cmd_cert,
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
    config = load_config(args.config)
    name = args.config or DEFAULT_CONFIG_NAME
    n = len(config.listeners)
    print(f"{name}: ok ({n} listener{'' if n == 1 else 's'})")
    return EXIT_OK


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
    from .core.logging import configure_logging
    from .core.privileges import Daemon, PrivilegeError

    config = load_config(args.config)
    if config.server.workers != 1:
        print("aionet: server.workers: only 1 worker is supported by this version", file=sys.stderr)
        return EXIT_USAGE
    try:
        daemon = Daemon.prepare(config, allow_root=args.allow_root)
    except PrivilegeError as exc:
        print(f"aionet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(
        args.log_format or config.logging.format, args.log_level or config.logging.level
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            return runner.run(_serve(config, args.config, daemon))
    finally:
        daemon.cleanup()


async def _serve(config: Config, path: str | None = None, daemon: Daemon | None = None) -> int:
    from .core.server import Server
    from .core.systemd import Notifier

    server = Server(
        config,
        path,
        after_bind=daemon.after_bind if daemon is not None else None,
        notifier=Notifier.from_env(),
    )
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


def cmd_version(args: argparse.Namespace) -> int:
    for name, value in versions().items():
        print(f"{name} {value}")
    return EXIT_OK
