"""Config loading: every error kind positioned at FILE:LINE:COL, all at once; values parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aionet.config.loader import default_config_text
from aionet.config.types import BindAddress, parse_bind, parse_duration, parse_size
from aionet.core.preflight import load_config, load_config_text
from aionet.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def issues_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml", environ or {})
    return [str(i) for i in info.value.issues]


def test_embedded_default_is_the_repository_config_byte_for_byte() -> None:
    assert default_config_text() == (ROOT / "config" / "aionet.yaml").read_text()
    assert (ROOT / "aionet" / "config" / "default.yaml").read_bytes() == (
        ROOT / "config" / "aionet.yaml"
    ).read_bytes()


def test_default_config_is_valid_and_binds_loopback_only() -> None:
    config = load_config()
    assert {lc.name for lc in config.listeners} >= {"echo", "udp-echo"}
    assert all(lc.bind.host == "127.0.0.1" for lc in config.listeners)


def test_unknown_key_points_at_the_key() -> None:
    text = "server:\n  shutdown_timeout: 5s\n  colour: blue\n"
    assert issues_of(text) == ["c.yaml:3:3: server.colour: unknown key"]


def test_wrong_type_points_at_the_value() -> None:
    text = "server:\n  workers: many\n"
    [issue] = issues_of(text)
    assert issue.startswith("c.yaml:2:12: server.workers: ")
    assert "integer" in issue


def test_bad_bind_string() -> None:
    text = "listeners:\n  - name: e\n    protocol: echo\n    bind: localhost\n"
    [issue] = issues_of(text)
    assert issue.startswith("c.yaml:4:11: listeners[0].bind: expected host:port")


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("127.0.0.1:70000", "port must be a number from 0 to 65535"),
        ("::1:80", "write IPv6 addresses in brackets"),
        ("[nothex]:80", "is not an IPv6 address"),
        ("unix:", "needs a socket path"),
    ],
)
def test_bind_errors(bind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bind(bind)


def test_bind_forms() -> None:
    assert parse_bind("127.0.0.1:80") == BindAddress("inet", "127.0.0.1", 80)
    assert parse_bind("[::1]:0") == BindAddress("inet", "::1", 0)
    assert parse_bind("unix:/tmp/a.sock") == BindAddress("unix", path="/tmp/a.sock")
    assert str(parse_bind("[::1]:8080")) == "[::1]:8080"


def test_duplicate_listener_name_and_address() -> None:
    text = (
        "listeners:\n"
        "  - {name: a, protocol: echo, bind: '127.0.0.1:7001'}\n"
        "  - {name: a, protocol: echo, bind: '127.0.0.1:7002'}\n"
        "  - {name: c, protocol: echo, bind: '127.0.0.1:7001'}\n"
        "  - {name: d, protocol: udp-echo, bind: '127.0.0.1:7001'}\n"  # udp: no clash
        "  - {name: e, protocol: echo, bind: '0.0.0.0:7002'}\n"  # wildcard clashes with a
    )
    assert issues_of(text) == [
        "c.yaml:3:12: listeners[1].name: duplicate listener name 'a' (first used by listeners[0])",
        "c.yaml:4:37: listeners[2].bind: 127.0.0.1:7001 (tcp) is already used by listeners[0]",
        "c.yaml:6:37: listeners[4].bind: 0.0.0.0:7002 (tcp) is already used by listeners[1]",
    ]


def test_port_zero_never_clashes() -> None:
    text = (
        "listeners:\n"
        "  - {name: a, protocol: echo, bind: '127.0.0.1:0'}\n"
        "  - {name: b, protocol: echo, bind: '127.0.0.1:0'}\n"
    )
    assert len(load_config_text(text, "c.yaml", {}).listeners) == 2


def test_all_errors_at_once_sorted_by_position() -> None:
    text = (
        "server:\n"
        "  workers: 0\n"
        "  shutdown_timeout: soon\n"
        "logging: {format: xml}\n"
        "listeners:\n"
        "  - name: x\n"
        "    protocol: nope\n"
        "    bind: 1.2.3.4:1\n"
        "    extra: 1\n"
    )
    found = issues_of(text)
    assert [f.split(": ")[0] for f in found] == [
        "c.yaml:2:12",
        "c.yaml:3:21",
        "c.yaml:4:19",
        "c.yaml:7:15",
        "c.yaml:9:5",
    ]
    assert found[3].startswith("c.yaml:7:15: listeners[0].protocol: unknown protocol 'nope'")
    assert found[4] == "c.yaml:9:5: listeners[0].extra: unknown key"
    assert found[1].endswith("expected a duration like 250ms, 10s, 5m; got 'soon'")


def test_unknown_protocol_is_positioned() -> None:
    text = "listeners:\n  - name: x\n    protocol: nope\n    bind: 127.0.0.1:1\n"
    [issue] = issues_of(text)
    assert issue.startswith("c.yaml:3:15: listeners[0].protocol: unknown protocol 'nope'")
    assert "echo" in issue  # lists what is available


def test_handler_options_are_validated_by_the_handler_and_positioned() -> None:
    text = (
        "listeners:\n"
        "  - name: u\n"
        "    protocol: udp-echo\n"
        "    bind: 127.0.0.1:1\n"
        "    options:\n"
        "      max_datagram: 0\n"
        "      colour: red\n"
    )
    assert issues_of(text) == [
        "c.yaml:6:21: listeners[0].options.max_datagram: "
        "Input should be greater than or equal to 1",
        "c.yaml:7:7: listeners[0].options.colour: unknown key",
    ]


def test_yaml_syntax_error_is_positioned() -> None:
    [issue] = issues_of("server:\n  limits: {max_connections: 1\n")
    assert issue.startswith("c.yaml:3:1: YAML syntax error")


def test_duplicate_yaml_key() -> None:
    assert issues_of("server:\n  workers: 1\n  workers: 2\n") == [
        "c.yaml:3:3: server.workers: duplicate key"
    ]


def test_top_level_must_be_a_mapping() -> None:
    assert issues_of("- 1\n- 2\n") == [
        "c.yaml:1:1: the top level must be a mapping (server:, listeners:, ...)"
    ]


def test_missing_required_key_points_at_the_mapping() -> None:
    assert issues_of("listeners:\n  - name: x\n    protocol: echo\n") == [
        "c.yaml:2:5: listeners[0].bind: required key is missing"
    ]


def test_env_interpolation() -> None:
    text = (
        "server:\n"
        "  data_dir: ${DATA:-/srv/aionet}\n"
        "  shutdown_timeout: ${GRACE}\n"
        "listeners:\n"
        "  - {name: e, protocol: echo, bind: '${HOST:-127.0.0.1}:${PORT}'}\n"
        "  - {name: f, protocol: echo, bind: 'unix:/tmp/$${literal}'}\n"
    )
    config = load_config_text(text, "c.yaml", {"GRACE": "250ms", "PORT": "9000"})
    assert str(config.server.data_dir) == "/srv/aionet"
    assert config.server.shutdown_timeout == 0.25
    assert config.listeners[0].bind == BindAddress("inet", "127.0.0.1", 9000)
    assert config.listeners[1].bind.path == "/tmp/${literal}"


def test_missing_env_var_is_an_error_at_its_value() -> None:
    assert issues_of("server:\n  data_dir: ${NOPE}\n") == [
        "c.yaml:2:13: server.data_dir: environment variable NOPE is not set"
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.yaml:1:1: cannot read config"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (3, 3.0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10 parsecs", "-1s", True, "s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64KiB", 65536),
        ("10MiB", 10 * 1024**2),
        ("1GiB", 1024**3),
        ("10kb", 10000),
        ("512", 512),
        (1024, 1024),
        ("1.5KiB", 1536),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "ten", "-1", "5 lightyears", False])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_units_inside_config() -> None:
    text = "server:\n  shutdown_timeout: 250ms\n  limits: {idle_timeout: 5m}\n"
    config = load_config_text(text, "c.yaml", {})
    assert config.server.shutdown_timeout == 0.25
    assert config.server.limits.idle_timeout == 300.0
    assert config.server.limits.max_connections == 10000  # defaults it does not name stay
    assert config.server.limits.max_connections_per_ip == 256
