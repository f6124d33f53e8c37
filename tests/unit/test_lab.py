"""``aionet.lab.write_lab``: what ``aionet init`` writes, for a host given by AIONET_HOST."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from aionet.core.preflight import load_config
from aionet.lab import LabExists, write_lab


def test_the_lab_names_and_serves_aionet_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIONET_HOST", "192.0.2.10")
    lab = write_lab(tmp_path / "lab", user="ops")
    cert = x509.load_pem_x509_certificate(lab.cafile.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.0.2.10") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    config = load_config(lab.config)
    assert {lc.bind.host for lc in config.listeners} == {"192.0.2.10"}
    dns = next(lc for lc in config.listeners if lc.protocol == "dns")
    records = dns.options["zones"]["aionet.test"]["records"]
    assert {"name": "www", "type": "A", "value": "192.0.2.10"} in records
    assert lab.user == "ops" and lab.password not in (tmp_path / "lab" / "users.yaml").read_text()
    with pytest.raises(LabExists):
        write_lab(tmp_path / "lab")


def test_a_wildcard_host_binds_everywhere_and_names_resolve_to_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIONET_HOST", "0.0.0.0")
    lab = write_lab(tmp_path / "lab")
    config = load_config(lab.config)
    assert {lc.bind.host for lc in config.listeners} == {"0.0.0.0"}
    dns = next(lc for lc in config.listeners if lc.protocol == "dns")
    assert dns.options["zones"]["aionet.test"]["records"][0]["value"] == "127.0.0.1"
