"""``aionet cert``: a self-signed development certificate that real clients verify."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

from cryptography import x509

from aionet.core.certgen import generate_self_signed
from tests.conftest import run_aionet


def test_files_modes_and_sans(tmp_path: Path) -> None:
    result = run_aionet("cert", "--out", str(tmp_path / "certs"))
    assert result.returncode == 0, result.stderr
    cert_path, key_path = tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_custom_hosts_and_a_verified_handshake(tmp_path: Path) -> None:
    cert, key = generate_self_signed(tmp_path, ["dev.example.test", "127.0.0.1"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve_one() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(10))

        thread = threading.Thread(target=serve_one)
        thread.start()
        with (
            socket.create_connection(listener.getsockname()) as raw,
            client_ctx.wrap_socket(raw, server_hostname="dev.example.test") as tls,
        ):
            tls.sendall(b"ping")
            assert tls.recv(10) == b"ping"
        thread.join(5)


def test_regenerating_replaces_the_key_with_a_private_one(tmp_path: Path) -> None:
    _, key = generate_self_signed(tmp_path)
    key.chmod(0o644)
    _, key = generate_self_signed(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
