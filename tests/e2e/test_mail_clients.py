"""External mail clients against smtp and pop3: curl (smtp://, pop3://) and swaks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aionet.testing import serve

from .conftest import Pki
from .mail_helpers import delivered, mail_config, without_received


async def run(*argv: str) -> tuple[int, bytes, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(errors="replace")


@pytest.mark.tool("curl")
async def test_curl_sends_over_starttls_and_reads_over_stls(tmp_path: Path, pki: Pki) -> None:
    ca = str(pki.ca_file)
    body = b"Subject: curl\r\n\r\n.dotted\r\nhello from curl\r\n"
    (tmp_path / "m.eml").write_bytes(body)
    config = mail_config(tmp_path, pki, {"starttls": "mail"}, {"starttls": "mail"})
    async with serve(config, data_dir=tmp_path / "data") as server:
        smtp, pop3 = server.address("smtp")[1], server.address("pop3")[1]
        curl = ("curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", ca)
        rc, _, err = await run(
            *curl, f"smtp://127.0.0.1:{smtp}", "--mail-from", "c@x.test",
            "--mail-rcpt", "alice@localhost", "--upload-file", str(tmp_path / "m.eml"),
            "--user", "alice:alice-pw",
        )  # fmt: skip
        assert rc == 0, err
        rc, listing, err = await run(*curl, f"pop3://127.0.0.1:{pop3}/", "-u", "alice:alice-pw")
        assert rc == 0, err
        [(number, size)] = [line.split() for line in listing.splitlines()]
        rc, message, err = await run(*curl, f"pop3://127.0.0.1:{pop3}/1", "-u", "alice:alice-pw")
        assert rc == 0, err
        assert number == b"1" and int(size) == len(message)
        assert without_received(message) == body
        rc, _, err = await run(*curl, f"pop3://127.0.0.1:{pop3}/", "-u", "alice:wrong")
        assert rc == 67, err  # CURLE_LOGIN_DENIED
        relay = await run(
            *curl, f"smtp://127.0.0.1:{smtp}", "--mail-from", "c@x.test",
            "--mail-rcpt", "someone@far.test", "--upload-file", str(tmp_path / "m.eml"),
        )  # fmt: skip
        assert relay[0] == 55 and "550" in relay[2]  # relay refused


@pytest.mark.tool("swaks")
async def test_swaks_starttls_auth_pipelining(tmp_path: Path, pki: Pki) -> None:
    config = mail_config(tmp_path, pki, {"starttls": "mail"})
    async with serve(config, data_dir=tmp_path / "data") as server:
        host, port = server.address("smtp")[:2]
        rc, out, err = await run(
            "swaks", "--server", f"{host}:{port}", "--to", "bob@localhost", "--from", "s@x.test",
            "--tls", "--tls-ca-path", str(pki.ca_file), "--auth", "PLAIN",
            "--auth-user", "bob", "--auth-password", "bob-pw", "--pipeline",
            "--header", "Subject: from swaks", "--body", "hi from swaks",
        )  # fmt: skip
        assert rc == 0, out.decode() + err
        assert b"<~  250 2.0.0 OK: queued as" in out
        rc, out, _ = await run(
            "swaks", "--server", f"{host}:{port}", "--to", "x@elsewhere.test", "--quit-after",
            "RCPT",
        )  # fmt: skip
        assert rc != 0 and b"550 5.7.1" in out
    [stored] = delivered(tmp_path / "data", "bob")
    assert b"Subject: from swaks\r\n" in stored and b"with ESMTPSA" in stored


@pytest.mark.tool("swaks")
async def test_swaks_pipelines_an_envelope_with_a_refused_recipient(
    tmp_path: Path, pki: Pki
) -> None:
    """swaks sends MAIL, the RCPTs and DATA in one group and reads the replies that come back
    held together (RFC 2920): each matched to its command, the refused recipient skipped."""
    config = mail_config(tmp_path, pki, {"starttls": "mail"})
    async with serve(config, data_dir=tmp_path / "data") as server:
        host, port = server.address("smtp")[:2]
        rc, out, err = await run(
            "swaks", "--server", f"{host}:{port}", "--pipeline", "--from", "s@x.test",
            "--to", "bob@localhost,nobody@localhost,alice@localhost",
            "--header", "Subject: piped", "--body", "one group",
        )  # fmt: skip
        text = out.decode() + err
        assert rc == 0, text
        replies = [line[4:] for line in text.splitlines() if line[:3] in ("<- ", "<**")]
        assert replies[-7:-2] == [
            "250 2.1.0 OK",
            "250 2.1.5 OK",
            "550 5.1.1 Recipient address rejected: user unknown",
            "250 2.1.5 OK",
            "354 End data with <CR><LF>.<CR><LF>",
        ], text
        assert replies[-2].startswith("250 2.0.0 OK: queued as"), text
    for user in ("bob", "alice"):
        [stored] = delivered(tmp_path / "data", user)
        assert b"Subject: piped\r\n" in stored
