"""One error root: every protocol refusal is an ``aionet.ProtocolError`` carrying its reply."""

from __future__ import annotations

import asyncio

import aionet
from aionet import LineTooLong, ProtocolError
from aionet.ftp.jail import Refused
from aionet.proto.http import HttpError, error_response
from aionet.proto.proxy import ProxyProtocolError
from aionet.proto.sasl import SaslError


def test_protocol_refusals_share_one_root() -> None:
    for cls in (Refused, HttpError, ProxyProtocolError, SaslError, LineTooLong):
        assert issubclass(cls, ProtocolError), cls
        assert issubclass(cls, aionet.AionetError), cls


def test_an_ftp_refusal_carries_its_reply_line() -> None:
    refused = Refused("550", "Permission denied.")
    assert refused.reply == b"550 Permission denied.\r\n"
    assert (refused.code, refused.message, refused.close) == ("550", "Permission denied.", False)


def test_an_http_refusal_closes_and_renders_its_status() -> None:
    error = HttpError(431, "head too large")
    assert error.close and error.status == 431
    assert error_response(error.status).startswith(b"HTTP/1.1 431 ")


def test_what_is_never_raised_is_gone() -> None:
    assert not hasattr(aionet.errors, "AdmissionRefused")
    assert "extra" not in aionet.Services.__dataclass_fields__
    assert issubclass(LineTooLong, asyncio.LimitOverrunError)
