"""``aionet init DIR`` → ``aionet run -c DIR/aionet.yaml``: a first user's lab, driven by
clients nobody here wrote — smtplib, poplib (STLS), curl over FTPS, dig, and an HTTP client.

The lab is used as written, but for its ports: they become ephemeral (a developer may have
aionet running on the default ones)."""

from __future__ import annotations

import poplib
import re
import smtplib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_aionet

PORTS = ("7007", "8080", "8053", "8025", "8110", "8143", "8021", "9090")


def _init(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    lab = tmp_path / "lab"
    done = run_aionet("init", str(lab))
    assert done.returncode == 0, done.stderr
    found = re.search(r"user (\S+), password (\S+)", done.stdout)
    token = re.search(r"admin viewer token (\S+)", done.stdout)
    assert found and token, done.stdout
    assert "dashboard http://127.0.0.1:9090/dashboard" in done.stdout
    assert found.group(2) not in (lab / "users.yaml").read_text()  # only a hash is stored
    config = lab / "aionet.yaml"
    text = config.read_text()
    for port in PORTS:
        text = text.replace(f':{port}"', ':0"')
    config.write_text(text.replace('"50000-50099"', '"0"'))
    return lab, {"user": found.group(1), "password": found.group(2), "token": token.group(1)}


def test_init_refuses_a_directory_in_use_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "notes.txt").write_text("mine")
    refused = run_aionet("init", str(tmp_path / "lab"))
    assert refused.returncode == 1 and "not empty" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "lab").iterdir()) == ["notes.txt"]
    assert run_aionet("init", str(tmp_path / "lab"), "--force").returncode == 0
    assert (tmp_path / "lab" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "lab" / "aionet.yaml").exists()


@pytest.mark.tool("curl")
@pytest.mark.tool("dig")
def test_a_lab_serves_mail_ftps_dns_and_http(daemon: Any, tmp_path: Path) -> None:
    lab, secrets = _init(tmp_path)
    user, password = secrets["user"], secrets["password"]
    d = daemon(None, "-c", str(lab / "aionet.yaml"), "--log-level", "info")
    tls = ssl.create_default_context(cafile=str(lab / "tls" / "cert.pem"))

    # A mail sent with smtplib (STARTTLS) is read back with poplib (STLS).
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as smtp:
        smtp.starttls(context=tls)
        smtp.sendmail("friend@example.test", [f"{user}@localhost"], "Subject: hi\r\n\r\nhello lab")
    pop = poplib.POP3(*d.address("pop3"), timeout=10)
    pop.stls(context=tls)
    pop.user(user)
    pop.pass_(password)
    assert pop.stat()[0] == 1
    assert b"hello lab" in b"\n".join(pop.retr(1)[1])
    pop.quit()

    # A file put and got over FTPS (AUTH TLS, PROT P) with curl.
    port = d.address("ftp")[1]
    (tmp_path / "up.txt").write_text("to the lab and back")
    common = ["curl", "-sS", "--ssl-reqd", "--cacert", str(lab / "tls" / "cert.pem"),
              "--user", f"{user}:{password}", "--max-time", "20"]  # fmt: skip
    url = f"ftp://localhost:{port}/up.txt"
    subprocess.run([*common, "-T", str(tmp_path / "up.txt"), url], check=True, timeout=30)
    got = subprocess.run([*common, url], check=True, capture_output=True, text=True, timeout=30)
    assert got.stdout == "to the lab and back"

    # dig gets the zone's answer; the site and the admin's metrics (viewer token) answer.
    dns_host, dns_port = d.address("dns", "udp")
    answer = subprocess.run(
        ["dig", "+short", "+time=3", "+tries=1", f"@{dns_host}", "-p", str(dns_port),
         "www.aionet.test"], check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert answer.stdout == "127.0.0.1\n"
    web = httpx.get("http://{}:{}/".format(*d.address("http")), timeout=10)
    assert web.status_code == 200 and "aionet lab" in web.text
    admin = "http://{}:{}/metrics".format(*d.address("admin"))
    metrics = httpx.get(admin, headers={"Authorization": f"Bearer {secrets['token']}"})
    assert metrics.status_code == 200
    accepted = 'aionet_smtp_messages_accepted_total{listener="smtp"} 1.0'
    assert accepted in metrics.text.splitlines()
    # The lab user opens the dashboard with the login a browser prompts for.
    dashboard = "http://{}:{}/dashboard".format(*d.address("admin"))
    page = httpx.get(dashboard, auth=(secrets["user"], secrets["password"]), timeout=10)
    assert page.status_code == 200 and "aionet-ticket" in page.text


def test_version_flag_and_an_empty_listener_list(tmp_path: Path) -> None:
    from aionet import __version__

    version = run_aionet("--version")
    assert (version.returncode, version.stdout) == (0, f"aionet {__version__}\n")
    (tmp_path / "empty.yaml").write_text("listeners: []\n")
    empty = run_aionet("check", "-c", str(tmp_path / "empty.yaml"))
    assert empty.returncode == 2
    assert empty.stderr.startswith(f"{tmp_path / 'empty.yaml'}:1:12: listeners: no listeners")


def test_unknown_keys_get_the_nearest_known_one(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "auth: {user_file: u.yaml}\n"
        "listeners:\n"
        "  - {name: e, protocol: echo, bind: '127.0.0.1:0', limits: {max_conections: 3}}\n"
        "  - {name: s, protocol: smtp, bind: '127.0.0.1:0', options: {max_recipents: 3}}\n"
    )
    done = run_aionet("check", "-c", "c.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "c.yaml:1:8: auth.user_file: unknown key (did you mean 'users_file'?)",
        "c.yaml:3:61: listeners[0].limits.max_conections: unknown key "
        "(did you mean 'max_connections'?)",
        "c.yaml:4:62: listeners[1].options.max_recipents: unknown key "
        "(did you mean 'max_recipients'?)",
    ]


def test_config_show_and_schema(tmp_path: Path) -> None:
    import json

    import yaml

    lab, secrets = _init(tmp_path)
    shown = run_aionet("config", "show", "-c", str(lab / "aionet.yaml"), cwd=tmp_path.root)
    assert shown.returncode == 0, shown.stderr
    data = yaml.safe_load(shown.stdout)
    assert data["server"]["data_dir"] == str(lab / "data")  # resolved against the config
    assert data["auth"]["users_file"] == str(lab / "users.yaml")
    admin = next(item for item in data["listeners"] if item["name"] == "admin")
    assert admin["options"]["tokens"][0]["sha256"] == "***"
    smtp = next(item for item in data["listeners"] if item["name"] == "smtp")
    assert smtp["options"]["max_recipients"] == 100  # a handler default, shown
    assert secrets["password"] not in shown.stdout
    schema = json.loads(run_aionet("config", "schema").stdout)
    assert set(schema["properties"]) == {"server", "logging", "tls", "auth", "listeners"}
    listener = schema["$defs"]["ListenerConfig"]
    assert {"name", "protocol", "bind"} <= set(listener["required"])


def _quick_start() -> list[str]:
    """The two ``sh`` blocks of README's "A lab in one command", as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## A lab in one command", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "README's quick start changed shape: update this test"
    return blocks


@pytest.mark.tool("curl")
@pytest.mark.tool("dig")
def test_the_readmes_quick_start_as_written(daemon: Any, tmp_path: Path) -> None:
    import sys

    setup, clients = _quick_start()
    init, run = [line.split("#")[0].split() for line in setup.strip().splitlines()]
    assert init[:2] == ["aionet", "init"] and run[:2] == ["aionet", "run"]
    done = run_aionet(*init[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    password = re.search(r"password (\S+)", done.stdout)
    assert password
    config = tmp_path / run[-1]
    text = config.read_text()
    for port in PORTS:
        text = text.replace(f':{port}"', ':0"')
    config.write_text(text.replace('"50000-50099"', '"0"'))
    d = daemon(None, *run[2:-1], str(config))
    actual = {
        "8025": d.address("smtp")[1],
        "8110": d.address("pop3")[1],
        "8021": d.address("ftp")[1],
        "8053": d.address("dns", "udp")[1],
    }
    script = clients.replace("PW", password.group(1)).replace("python -", f"{sys.executable} -")
    for documented, port in actual.items():
        script = script.replace(documented, str(port))
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "hello" in lines[lines.index("Subject: hi") + 1 :]  # the mail, read back
    assert lines[-2:] == ["hello", "127.0.0.1"]  # the file got back over FTPS; dig's answer
