"""The reload plan as a pure function: (old config, new config, bound listeners) → plan."""

from __future__ import annotations

import dataclasses
from typing import Any

from aionet.config.models import Config, ListenerConfig
from aionet.core.preflight import config_from_dict
from aionet.core.reload_plan import ReloadPlan, plan_reload


def listener(name: str, bind: str = "127.0.0.1:0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "protocol": "echo", "bind": bind, **extra}


def config(*listeners: dict[str, Any], **top: Any) -> Config:
    return config_from_dict({"listeners": list(listeners), **top})


def bound_as(cfg: Config, ports: dict[str, int] | None = None) -> dict[str, ListenerConfig]:
    """Every listener of ``cfg`` as the server records it once bound (port 0 → its port)."""
    out = {}
    for lc in cfg.listeners:
        port = (ports or {}).get(lc.name)
        if port is not None:
            lc = lc.model_copy(update={"bind": dataclasses.replace(lc.bind, port=port)})
        out[lc.name] = lc
    return out


def test_the_same_config_changes_nothing() -> None:
    old = config(listener("a", "127.0.0.1:7001"), listener("b", "127.0.0.1:7002"))
    new = config(listener("a", "127.0.0.1:7001"), listener("b", "127.0.0.1:7002"))
    plan = plan_reload(old, new, bound_as(old))
    assert plan == ReloadPlan(unchanged=("a", "b"))
    assert plan.build == ()


def test_added_and_removed() -> None:
    old = config(listener("a", "127.0.0.1:7001"), listener("gone", "127.0.0.1:7002"))
    new = config(listener("a", "127.0.0.1:7001"), listener("new", "127.0.0.1:7003"))
    plan = plan_reload(old, new, bound_as(old))
    assert (plan.added, plan.removed, plan.unchanged) == (("new",), ("gone",), ("a",))
    assert plan.build == ("new",)


def test_changed_options_keep_the_sockets() -> None:
    old = config(listener("a", "127.0.0.1:7001"))
    new = config(listener("a", "127.0.0.1:7001", limits={"max_connections": 5}))
    plan = plan_reload(old, new, bound_as(old))
    assert (plan.changed, plan.rebound, plan.unchanged) == (("a",), (), ())


def test_changed_bind_rebinds() -> None:
    old = config(listener("a", "127.0.0.1:7001"), listener("b", "127.0.0.1:7002"))
    new = config(listener("a", "127.0.0.1:7011"), listener("b", "127.0.0.1:7002", backlog=7))
    plan = plan_reload(old, new, bound_as(old))
    assert (plan.rebound, plan.changed) == (("a", "b"), ())


def test_a_port_0_bind_matches_the_port_it_got() -> None:
    old = config(listener("a"), listener("b"))
    bound = bound_as(old, {"a": 40001, "b": 40002})
    # "a" still asks for port 0; "b" now names the port it got: both keep their sockets.
    new = config(listener("a"), listener("b", "127.0.0.1:40002"))
    assert plan_reload(old, new, bound) == ReloadPlan(unchanged=("a", "b"))
    # With new limits, the port-0 listener keeps the port it got (changed, not rebound).
    changed = config(listener("a", limits={"max_connections": 5}), listener("b", "127.0.0.1:9"))
    plan = plan_reload(old, changed, bound)
    assert (plan.changed, plan.rebound) == (("a",), ("b",))


def test_a_listener_that_is_not_bound_is_added_again() -> None:
    old = config(listener("a", "127.0.0.1:7001"))
    new = config(listener("a", "127.0.0.1:7001", limits={"max_connections": 5}))
    plan = plan_reload(old, new, {})  # its bind failed at an earlier reload
    assert (plan.added, plan.changed) == (("a",), ())


def test_reload_always_and_new_stores_rebuild_every_handler() -> None:
    old = config(listener("a", "127.0.0.1:7001"), listener("b", "127.0.0.1:7002"))
    same = config(listener("a", "127.0.0.1:7001"), listener("b", "127.0.0.1:7002"))
    plan = plan_reload(old, same, bound_as(old), reload_always=["b"])
    assert (plan.changed, plan.unchanged) == (("b",), ("a",))
    auth = config(
        listener("a", "127.0.0.1:7001"),
        listener("b", "127.0.0.1:7002"),
        auth={"throttle": {"max_failures": 3}},
    )
    plan = plan_reload(old, auth, bound_as(old))
    assert plan.fresh_users and not plan.fresh_tls
    assert (plan.changed, plan.unchanged) == (("a", "b"), ())


def test_settings_only_a_restart_applies() -> None:
    old = config(listener("a", "127.0.0.1:7001"))
    new = config(
        listener("a", "127.0.0.1:7001"),
        server={"workers": 2, "shutdown_timeout": "3s"},
        logging={"level": "debug"},
    )
    plan = plan_reload(old, new, bound_as(old))
    assert plan.restart_required == ("workers", "logging")
    assert plan.unchanged == ("a",)
