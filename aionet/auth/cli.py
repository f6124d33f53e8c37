"""``aionet users add|passwd|remove|list --file USERS.yaml``: manage the user store.

Passwords are never taken from the command line: they are read from stdin when it is not a
TTY (one line; only the line ending is stripped), else prompted for twice. ``list`` prints
names and roles, never hashes.

Exit codes: 0 ok; 2 usage or configuration error (a ``FILE:LINE:COL: path: message`` line per
problem in the users file, a bad name or role, an empty or mismatched password); 1 runtime
failure (unknown user for ``passwd``/``remove``, the file cannot be written).

``aionet.cli`` wires ``add_parser`` and ``cmd_users`` in; ``main`` runs them alone.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, TextIO

from ..errors import ConfigError
from .users import UnknownUserError, UserStore, check_name, check_role

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["PasswordInputError", "add_parser", "cmd_users", "main", "read_password"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class PasswordInputError(Exception):
    """The password could not be read: empty, or the two prompts did not match."""


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``users`` command (and its actions) to ``subparsers``; returns its parser."""
    users = subparsers.add_parser(
        "users",
        help="manage the user store (add, passwd, remove, list)",
        description="Manage the users file. Passwords come from stdin when it is not a TTY, "
        "else from a prompt (twice); never from the command line.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-f", "--file", required=True, metavar="USERS.yaml", help="the users file (auth.users_file)"
    )
    actions = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", parents=[common], help="add a user (--force: replace its password and roles)"
    )
    add.add_argument("name", help="user name")
    add.add_argument(
        "--force",
        action="store_true",
        help="replace an existing user's password and roles (its settings are kept)",
    )
    add.add_argument(
        "--role", action="append", default=[], metavar="ROLE", help="a role (repeatable)"
    )
    passwd = actions.add_parser("passwd", parents=[common], help="change a user's password")
    passwd.add_argument("name", help="user name")
    remove = actions.add_parser("remove", parents=[common], help="delete a user")
    remove.add_argument("name", help="user name")
    actions.add_parser("list", parents=[common], help="list users and their roles")
    return users


def read_password(
    stdin: TextIO | None = None, prompt: Callable[[str], str] = getpass.getpass
) -> str:
    """One line from ``stdin`` when it is not a TTY, else ``prompt`` twice.

    Raises:
        PasswordInputError: the password is empty or the two entries differ.
    """
    stdin = sys.stdin if stdin is None else stdin
    if stdin.isatty():
        password = prompt("Password: ")
        if prompt("Repeat password: ") != password:
            raise PasswordInputError("passwords do not match")
    else:
        line = stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r") if line.endswith("\n") else line
    if not password:
        raise PasswordInputError("empty password")
    return password


def _cmd_add(args: argparse.Namespace, password: Callable[[], str]) -> int:
    try:
        check_name(args.name)
        roles = tuple(check_role(r) for r in args.role)
    except ValueError as exc:
        print(f"aionet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    store = UserStore.load(args.file, missing_ok=True, watch=False)
    existed = args.name in store.snapshot
    if existed and not args.force:  # before prompting
        print(
            f"aionet: user {args.name!r} exists in {args.file}: `aionet users passwd "
            f"{args.name}` changes the password; `add --force` replaces password and roles",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    user = store.add(args.name, password(), roles)
    verb = "updated" if existed else "added"
    print(f"{verb} user {user.name} (roles: {', '.join(user.roles) or '-'})")
    return EXIT_OK


def _cmd_passwd(args: argparse.Namespace, password: Callable[[], str]) -> int:
    store = UserStore.load(args.file)
    if args.name not in store.snapshot:  # before prompting; set_password checks again
        raise UnknownUserError(f"no user {args.name!r} in {args.file}")
    store.set_password(args.name, password())
    print(f"changed the password of {args.name}")
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace, password: Callable[[], str]) -> int:
    UserStore.load(args.file).remove(args.name)
    print(f"removed user {args.name}")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace, password: Callable[[], str]) -> int:
    snapshot = UserStore.load(args.file).snapshot
    for name in snapshot:
        print(f"{name}\t{','.join(snapshot[name].roles) or '-'}")
    return EXIT_OK


_ACTIONS: dict[str, Callable[[argparse.Namespace, Callable[[], str]], int]] = {
    "add": _cmd_add,
    "passwd": _cmd_passwd,
    "remove": _cmd_remove,
    "list": _cmd_list,
}


def cmd_users(
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    """Run ``aionet users ACTION``; returns the exit code. ``stdin``/``prompt`` are for tests."""
    try:
        return _ACTIONS[args.users_command](args, lambda: read_password(stdin, prompt))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    except PasswordInputError as exc:
        print(f"aionet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UnknownUserError as exc:
        print(f"aionet: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (KeyboardInterrupt, EOFError):  # Ctrl-C or Ctrl-D at the password prompt
        print("\naionet: aborted", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"aionet: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """``aionet users ...`` alone (until ``aionet.cli`` wires it in); returns the exit code."""
    parser = argparse.ArgumentParser(prog="aionet", description="manage aionet users")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_parser(sub)
    return cmd_users(parser.parse_args(argv))
