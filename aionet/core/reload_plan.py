"""What a reload does, decided without sockets: (old config, new config, bound listeners) → plan.

``Server.reload()`` only executes the plan. Listeners are diffed by name:

* **unchanged** — equal as written, or equal to how it was bound (a ``port: 0`` bind compared
  with the port it got): keeps its sockets, handler and connections;
* **changed** — options, limits, TLS or access rules differ but the sockets can stay (same
  bind, protocol, ``reuse_port``, backlog): a new handler takes new connections while the old
  one's finish;
* **rebound** — bound now, but its sockets cannot stay: unbound and bound anew;
* **added** — not bound now (new, or its bind failed at an earlier reload): bound;
* **removed** — gone from the new config: stops accepting and drains.

A new user store or certificate store, or a new ``data_dir``, gives every listener a new
handler; a handler class with ``reload_always`` (zone files re-read) always gets one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from ..config.models import Config, ListenerConfig

__all__ = ["RESTART_KEYS", "ReloadPlan", "plan_reload", "same_sockets"]

#: ``server:`` keys a reload cannot apply (logged as ``restart_required``).
RESTART_KEYS = ("data_dir", "workers", "user", "group", "allow_root", "pid_file")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadPlan:
    """Listener names by fate, each in new-config order (``removed``: old-config order)."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    rebound: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    #: Settings that only a restart applies.
    restart_required: tuple[str, ...] = ()
    #: ``auth:`` changed: load a new user store (and portal).
    fresh_users: bool = False
    #: ``tls:`` changed: load a new certificate store.
    fresh_tls: bool = False

    @property
    def build(self) -> tuple[str, ...]:
        """Listeners that get a new handler."""
        return (*self.added, *self.changed, *self.rebound)


def same_sockets(a: ListenerConfig, b: ListenerConfig) -> bool:
    """Whether a reload can keep ``a``'s bound sockets for ``b`` (same endpoint, same kind)."""
    return (a.bind, a.protocol, a.reuse_port, a.backlog) == (
        b.bind,
        b.protocol,
        b.reuse_port,
        b.backlog,
    )


def plan_reload(
    old: Config,
    new: Config,
    bound: Mapping[str, ListenerConfig],
    *,
    reload_always: Collection[str] = (),
) -> ReloadPlan:
    """The plan that takes a server running ``old`` to ``new``.

    Args:
        old: the configuration running now.
        new: the configuration to apply (already validated and resolved).
        bound: every listener bound now, as bound (a port-0 bind with the port it got).
        reload_always: listeners whose current handler must be rebuilt on every reload.
    """
    restart = [k for k in RESTART_KEYS if getattr(old.server, k) != getattr(new.server, k)]
    if old.logging != new.logging:
        restart.append("logging")
    fresh_users = new.auth != old.auth
    fresh_tls = new.tls != old.tls
    rebuild_all = fresh_users or fresh_tls or "data_dir" in restart
    before = {lc.name: lc for lc in old.listeners}

    def same(lc: ListenerConfig, compare: Callable[[ListenerConfig], bool]) -> bool:
        """``compare`` to the listener as written or as bound (port 0 → its port)."""
        written, as_bound = before.get(lc.name), bound.get(lc.name)
        return (written is not None and compare(written)) or (
            as_bound is not None and compare(as_bound)
        )

    names = {lc.name for lc in new.listeners}
    fates: dict[str, list[str]] = {k: [] for k in ("added", "changed", "rebound", "unchanged")}
    for lc in new.listeners:
        if not (rebuild_all or lc.name in reload_always or not same(lc, lc.__eq__)):
            fates["unchanged"].append(lc.name)
        elif lc.name not in bound:
            fates["added"].append(lc.name)
        elif same(lc, functools.partial(same_sockets, b=lc)):
            fates["changed"].append(lc.name)
        else:
            fates["rebound"].append(lc.name)
    return ReloadPlan(
        added=tuple(fates["added"]),
        changed=tuple(fates["changed"]),
        rebound=tuple(fates["rebound"]),
        removed=tuple(n for n in before if n not in names),
        unchanged=tuple(fates["unchanged"]),
        restart_required=tuple(restart),
        fresh_users=fresh_users,
        fresh_tls=fresh_tls,
    )
