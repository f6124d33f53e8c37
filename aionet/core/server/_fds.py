"""The descriptor budget: raise RLIMIT_NOFILE to what the configured limits can need.

Every connection holds one descriptor, so a server allowed 100,000 connections under the
usual soft limit of 1024 would start refusing (accept() failing with EMFILE) long before its
own caps. ``Server.start()`` (in ``aionet run``, before any socket is bound and before the
privilege drop) calls ``ensure_fd_limit``:

* the need is ``fds_needed(config)``: the most connections the caps allow (the server's
  ``max_connections``, or the sum of the listeners' when every listener has one and that is
  lower), FTP listeners counted three times (the control connection, a passive data listener
  and its data connection), plus ``FD_HEADROOM`` and two per listener (listening sockets, the
  loop's own descriptors, log and mail files, the storage pool's open files). No cap at all:
  the soft limit is raised to the hard one;
* the soft limit is raised to the need, up to the hard limit; when the hard limit is lower,
  the hard limit is raised too if the process may (root or CAP_SYS_RESOURCE), up to
  ``/proc/sys/fs/nr_open``;
* when that is still short, ONE warning (``fd_limit_too_low``) names the limit, the need and
  how to raise it, and the server starts anyway: the caps still hold, and once descriptors run
  out the accept loop backs off and logs ``accept_out_of_resources`` instead of crashing. It
  warns rather than refuses, like nginx (``worker_rlimit_nofile``) and uvicorn: a server that
  will rarely see its caps should not refuse to start over them.

A reload calls it again (then only the soft limit can grow once privileges are dropped).
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from ...config.models import Config

__all__ = ["FD_HEADROOM", "ensure_fd_limit", "fds_needed"]

#: Descriptors kept beside the connections: the loop's (epoll, signal and wake-up pipes), log
#: files, the user store, files opened by the storage pool's threads, a handler's own.
FD_HEADROOM = 256
#: Descriptors one connection of a protocol can hold (FTP: control, passive listener, data).
FDS_PER_CONNECTION = {"ftp": 3}
_NR_OPEN = Path("/proc/sys/fs/nr_open")

_log = structlog.get_logger("aionet.server")


def fds_needed(config: Config) -> int | None:
    """The descriptors ``config``'s caps can make this process hold; None: no cap bounds it."""
    server_cap = config.server.limits.max_connections
    caps = [lc.limits.max_connections for lc in config.listeners]
    per_listener: int | None = None
    if all(cap is not None for cap in caps):
        per_listener = sum(
            (cap or 0) * FDS_PER_CONNECTION.get(lc.protocol, 1)
            for lc, cap in zip(config.listeners, caps, strict=True)
        )
    if server_cap is None and per_listener is None:
        return None
    if server_cap is not None:
        factor = max((FDS_PER_CONNECTION.get(lc.protocol, 1) for lc in config.listeners), default=1)
        server_need = server_cap * factor
        connections = server_need if per_listener is None else min(server_need, per_listener)
    else:
        assert per_listener is not None
        connections = per_listener
    return connections + FD_HEADROOM + 2 * len(config.listeners)


def _nr_open() -> int:
    """The kernel's ceiling for a hard RLIMIT_NOFILE (Linux); the usual 1048576 elsewhere."""
    try:
        return int(_NR_OPEN.read_text())
    except (OSError, ValueError):
        return 1 << 20


def ensure_fd_limit(config: Config, log: FilteringBoundLogger | None = None) -> int:
    """Raise RLIMIT_NOFILE toward ``fds_needed(config)``; warn once if it stays short.

    Returns the soft limit in force afterwards.
    """
    log = log or _log
    infinity = resource.RLIM_INFINITY
    needed = fds_needed(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == infinity or (needed is not None and soft >= needed):
        return soft
    if needed is None:  # no cap bounds the connections: as many as the hard limit allows
        target = hard
    else:
        target = needed if hard == infinity else min(needed, hard)
        if hard != infinity and hard < needed:
            new_hard = min(needed, _nr_open())
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new_hard, new_hard))
            except (ValueError, OSError):  # not root, no CAP_SYS_RESOURCE
                pass
            else:
                soft = hard = new_hard
                target = new_hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if needed is not None and soft < needed:
        log.warning(
            "fd_limit_too_low",
            limit=soft,
            hard_limit=hard,
            needed=needed,
            fix=(
                f"raise the open-files limit to at least {needed}: `ulimit -n {needed}` in the "
                f"shell that starts aionet, `LimitNOFILE={needed}` in its systemd unit, "
                "`--ulimit nofile=N` for a container; or lower the max_connections limits"
            ),
        )
    return soft
