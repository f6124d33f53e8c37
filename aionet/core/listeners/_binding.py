"""Binding a listener's sockets, per transport: TCP/UDP over IPv4 and IPv6, unix sockets.

The listener binds its own sockets (so it controls ``SO_REUSEADDR``/``SO_REUSEPORT``,
``IPV6_V6ONLY`` and stale unix socket files) before any handler starts: the Server binds every
listener first, so privileged ports are bound before root privileges are dropped. Plain
sockets, no event loop: a failure is a ``StartupError`` naming the listener.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import TYPE_CHECKING, Any

from ...errors import StartupError

if TYPE_CHECKING:
    from ...config.types import BindAddress

__all__ = ["bind_inet", "bind_unix", "unlink_unix_socket"]


def bind_inet(
    bind: BindAddress, sock_type: int, reuse_port: bool, what: str
) -> list[socket.socket]:
    host = bind.host or None
    if host in ("*",):
        host = None
    try:
        infos = socket.getaddrinfo(
            host, bind.port, type=sock_type, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
        )
    except socket.gaierror as exc:
        raise StartupError(f"{what}: cannot resolve {bind.host!r}: {exc.strerror}") from None
    seen: set[tuple[Any, ...]] = set()
    sockets: list[socket.socket] = []
    try:
        for family, stype, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, stype, proto)
            sockets.append(sock)
            if sock_type == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(f"{what}: cannot bind: {exc.strerror or exc}") from None
    return sockets


def bind_unix(path: str, sock_type: int, what: str) -> socket.socket:
    _remove_stale_unix_socket(path, sock_type, what)
    sock = socket.socket(socket.AF_UNIX, sock_type)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise StartupError(f"{what}: cannot bind: {exc.strerror or exc}") from None
    return sock


def _remove_stale_unix_socket(path: str, sock_type: int, what: str) -> None:
    """Unlink a socket file left by a dead process; refuse if something live owns it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartupError(f"{what}: cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{what}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, sock_type)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: nobody is listening
        return
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise StartupError(f"{what}: cannot bind: {path} is in use by a running server")


def unlink_unix_socket(path: str) -> None:
    """At stop: remove the socket file a unix listener bound (nothing else at that path)."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
