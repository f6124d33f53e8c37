"""The deployment files: systemd unit, Dockerfile, Kubernetes manifests.

No systemd or Docker engine runs in CI, so these tests check what can be checked without them:
the files parse and agree with each other and with aionet's config (ports, paths, probes, the
drain deadline). That the Dockerfile's build steps work in a plain venv is a slow test of its
own: tests/e2e/test_deploy_build.py.
"""

from __future__ import annotations

import configparser
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from aionet.config.models import Config
from aionet.core.preflight import load_config_text
from aionet.core.registry import available, resolve_listener

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
UNIT = ROOT / "config" / "aionet.service"
PROBE_PORT = 9090  # the admin listener: /healthz, /readyz, /metrics


# -- systemd -------------------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_systemd_unit_settings() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"] == "/usr/local/bin/aionet run -c /etc/aionet/aionet.yaml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a config error: restarting won't help
    assert service["User"] == "aionet"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/aionet"
    assert service["Environment"] == "AIONET_DATA_DIR=/var/lib/aionet"  # the default config's
    # The drain must finish before systemd's SIGKILL: TimeoutStopSec > shutdown_timeout.
    default = load_config_text((ROOT / "config" / "aionet.yaml").read_text())
    stop = int(service["TimeoutStopSec"].removesuffix("s"))
    assert stop >= default.server.shutdown_timeout + 5


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    aionet = Path(sys.executable).with_name("aionet")
    assert aionet.exists(), "the aionet console script next to the interpreter"
    unit = tmp_path / "aionet.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/aionet", str(aionet)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # Warnings about this unit (unknown keys, bad values) fail too; other units' noise does not.
    assert "aionet.service" not in result.stderr, result.stderr


# -- Dockerfile ----------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, args = line.partition(" ")
        steps.append((instruction.upper(), args.strip()))
    assert not pending
    return steps


def _one(steps: list[tuple[str, str]], instruction: str) -> str:
    found = [args for name, args in steps if name == instruction]
    assert len(found) == 1, (instruction, found)
    return found[0]


def test_dockerfile_shape() -> None:
    steps = _dockerfile()
    froms = [args for name, args in steps if name == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim"]  # multi-stage, slim
    final = steps[[i for i, (name, _) in enumerate(steps) if name == "FROM"][-1] :]
    assert _one(final, "USER") == "aionet"
    assert json.loads(_one(final, "CMD")) == ["aionet", "run", "-c", "/etc/aionet/aionet.yaml"]
    assert _one(final, "STOPSIGNAL") == "SIGTERM"
    assert ("COPY", "config/aionet.yaml /etc/aionet/aionet.yaml") in final
    assert ("COPY", "--from=build /wheels /wheels") in final
    env = _one(final, "ENV")
    assert "AIONET_HOST=0.0.0.0" in env and "AIONET_DATA_DIR=/var/lib/aionet" in env
    healthcheck = _one(final, "HEALTHCHECK")
    assert f"http://127.0.0.1:{PROBE_PORT}/healthz" in healthcheck
    # The non-root uid the Deployment's securityContext runs as.
    assert "--uid 10001" in " ".join(args for name, args in final if name == "RUN")


def test_dockerfile_exposes_every_listener_of_its_config() -> None:
    exposed = set(_one(_dockerfile(), "EXPOSE").split())
    config = load_config_text(
        (ROOT / "config" / "aionet.yaml").read_text(), environ={"AIONET_HOST": "0.0.0.0"}
    )
    wanted = {f"{port}/{proto}" for port, proto in _listener_ports(config)}
    wanted.add(f"{PROBE_PORT}/tcp")  # admin
    assert wanted <= exposed, wanted - exposed
    assert all(lc.bind.host == "0.0.0.0" for lc in config.listeners)  # reachable when published


def _healthcheck_code() -> str:
    argv = json.loads(_one(_dockerfile(), "HEALTHCHECK").split("CMD", 1)[1])
    assert argv[:2] == ["python", "-c"]
    return str(argv[2])


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "rc"), [(200, 0), (503, 1)])
def test_dockerfile_healthcheck_command(
    health_server: HTTPServer, monkeypatch: pytest.MonkeyPatch, status: int, rc: int
) -> None:
    monkeypatch.setattr(_Health, "status", status)
    code = _healthcheck_code().replace(
        f"127.0.0.1:{PROBE_PORT}", f"127.0.0.1:{health_server.server_address[1]}"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.returncode == rc, result.stderr


def test_dockerfile_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code = _healthcheck_code().replace(f"127.0.0.1:{PROBE_PORT}", f"127.0.0.1:{port}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.returncode != 0


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "var"} <= ignored
    copied = {"pyproject.toml", "README.md", "aionet", "config"}  # what the build stage COPYs
    assert not copied & ignored


# -- Kubernetes ----------------------------------------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[doc["kind"]] = doc
    return out


def _configmap_text() -> str:
    return str(_manifests()["ConfigMap"]["data"]["aionet.yaml"])


def configmap_file(tmp_path: Path) -> Path:
    path = tmp_path / "configmap.yaml"
    path.write_text(_configmap_text())
    return path


def _configmap_config() -> Config:
    """The ConfigMap's config, validated like `aionet check` does. Until the admin handler
    is in this tree, the admin listener is checked for shape only."""
    text = _configmap_text()
    if "admin" in available():
        return load_config_text(text, "configmap.yaml")
    data = yaml.safe_load(text)
    admin = [lc for lc in data["listeners"] if lc["protocol"] == "admin"]
    assert admin == [{"name": "admin", "protocol": "admin", "bind": f"0.0.0.0:{PROBE_PORT}"}]
    rest = [lc for lc in data["listeners"] if lc not in admin]
    return load_config_text(yaml.safe_dump({**data, "listeners": rest}), "configmap.yaml")


def _listener_ports(config: Config) -> set[tuple[int, str]]:
    ports = set()
    for lc in config.listeners:
        cls, _ = resolve_listener(lc)
        for transport in cls.transports():
            ports.add((lc.bind.port, transport))
    return ports


def _container() -> dict[str, Any]:
    spec = _manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return dict(container)


def test_manifests_parse_and_label_one_app() -> None:
    manifests = _manifests()
    assert set(manifests) == {"ConfigMap", "Deployment", "Service", "PodMonitor", "Kustomization"}
    deployment = manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert manifests["Service"]["spec"]["selector"].items() <= labels.items()
    assert manifests["PodMonitor"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    kustomized = set(manifests["Kustomization"]["resources"])
    assert kustomized == {"configmap.yaml", "deployment.yaml", "service.yaml"}


def test_configmap_config_is_valid_and_binds_all_interfaces() -> None:
    config = _configmap_config()
    assert config.listeners
    assert all(lc.bind.host == "0.0.0.0" for lc in config.listeners)


def test_container_ports_match_the_configmap_listeners() -> None:
    declared = {(p["containerPort"], p["protocol"].lower()) for p in _container()["ports"]}
    wanted = _listener_ports(_configmap_config()) | {(PROBE_PORT, "tcp")}
    assert declared == wanted


def test_probes_target_the_admin_listener() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == PROBE_PORT
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ports[container["livenessProbe"]["httpGet"]["port"]] == PROBE_PORT
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = _manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PROBE_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    (endpoint,) = _manifests()["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert ports[endpoint["port"]] == PROBE_PORT and endpoint["path"] == "/metrics"


def test_service_targets_declared_container_ports() -> None:
    container_ports = {(p["name"], p["protocol"]) for p in _container()["ports"]}
    for port in _manifests()["Service"]["spec"]["ports"]:
        assert (port["targetPort"], port["protocol"]) in container_ports, port
        assert port["targetPort"] != "admin"


def test_termination_grace_covers_prestop_and_drain() -> None:
    pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    container = _container()
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = _configmap_config().server.shutdown_timeout
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + drain


def test_pod_runs_the_image_as_non_root_with_a_read_only_root() -> None:
    pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's aionet user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "resources" in container and container["resources"]["limits"]["memory"]
    # The config the image's command reads comes from the ConfigMap...
    args = container["args"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = Path(args[args.index("-c") + 1])
    assert args == json.loads(_one(_dockerfile(), "CMD"))
    assert str(config_path.parent) == mounts["config"]
    assert volumes["config"]["configMap"]["items"] == [
        {"key": "aionet.yaml", "path": config_path.name}
    ]
    # ...and data_dir is a writable volume, since the root filesystem is not.
    data_dir = str(_configmap_config().server.data_dir)
    writable = [name for name, path in mounts.items() if path == data_dir]
    assert writable and "emptyDir" in volumes[writable[0]]
