"""smtp/pop3 listener options: validated like the rest of the config, errors at their keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aionet.errors import ConfigError
from aionet.handlers.pop3 import Pop3Options
from aionet.handlers.smtp import SmtpOptions
from aionet.testing import serve


def test_smtp_defaults_and_units() -> None:
    opts = SmtpOptions(max_message_size="1KiB", timeout="30s", domains=["Example.TEST."])
    assert opts.max_message_size == 1024 and opts.timeout == 30.0
    assert opts.domains == ["example.test"]
    assert SmtpOptions().domains == ["localhost"]
    assert SmtpOptions().auth_without_tls is False  # AUTH only under TLS unless allowed


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"on_message": "no_such_module_x:hook"}, "on_message"),
        ({"on_message": "os:sep"}, "on_message"),  # not callable
        ({"max_recipients": 0}, "max_recipients"),
        ({"domains": []}, "domains"),
        ({"relay": True}, "relay"),  # unknown key
        ({"catch_all": "../etc"}, "catch_all"),
        ({"postmaster": "../etc"}, "postmaster"),
        ({"postmaster": ""}, "postmaster"),
    ],
)
def test_smtp_bad_options_name_their_key(options: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        SmtpOptions(**options)
    assert info.value.errors()[0]["loc"][0] == where


def test_pop3_options() -> None:
    assert Pop3Options().max_line == 255
    with pytest.raises(ValidationError):
        Pop3Options(max_line=10)


async def test_starttls_needs_a_configured_certificate(tmp_path: Path) -> None:
    config = {
        "listeners": [
            {"name": "smtp", "protocol": "smtp", "bind": "127.0.0.1:0",
             "options": {"starttls": "missing"}}
        ]
    }  # fmt: skip
    # Caught when the config is read (aionet check reports it at the option), not at start.
    with pytest.raises(ConfigError, match=r"options\.starttls: unknown certificate 'missing'"):
        async with serve(config, data_dir=tmp_path):
            pass
