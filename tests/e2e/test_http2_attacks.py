"""The 2023-2024 HTTP/2 attack classes, each reproduced with raw frames against the http
listener: the connection is cut (GOAWAY with the RFC's code), the server keeps serving, and a
well-behaved client on another connection is answered meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
from h2.errors import ErrorCodes
from hpack import Decoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from aionet.testing import serve
from tests.h2_helpers import RawH2, goaway, request_block


def config(tmp_path: Path, **options: Any) -> dict[str, Any]:
    return {
        "server": {"data_dir": str(tmp_path / "var"), "shutdown_timeout": "5s"},
        "logging": {"level": "warning"},
        "listeners": [{
            "name": "web", "protocol": "http", "bind": "127.0.0.1:0",
            "options": {"app": "tests.apps.raw_apps:slow_path", "http2": True,
                        "access_log": False, **options},
        }],
    }  # fmt: skip


async def attacked(server: Any, attack: Any, polite: str = "/polite") -> list[Any]:
    """Run ``attack(port)`` (blocking, raw frames) while a polite client keeps being served;
    the frames the attacker got back."""
    _host, port = server.address("web")
    url = f"http://127.0.0.1:{port}/polite"
    task = asyncio.create_task(asyncio.to_thread(attack, port))
    answered = 0
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        while not task.done():
            assert (await client.get(url)).text == polite
            answered += 1
        frames: list[Any] = await task
        assert (await client.get(url)).text == polite  # and after
    assert answered >= 1
    return frames


async def test_rapid_reset(tmp_path: Path) -> None:
    def attack(port: int) -> list[Any]:  # CVE-2023-44487: open, cancel, repeat
        raw = RawH2(port)
        with contextlib.suppress(OSError):
            for i in range(2000):
                stream = 1 + 2 * i
                raw.send(raw.headers(stream, request_block(raw.encoder, "/slow/1000")),
                         RstStreamFrame(stream, error_code=ErrorCodes.CANCEL))  # fmt: skip
        return raw.read_all()

    async with serve(config(tmp_path, keepalive_timeout="2s")) as server:
        frames = await attacked(server, attack)
    end = goaway(frames)
    assert end is not None and end.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert end.additional_data == b"rapid_reset"  # cut at twice the stream limit of resets
    started = {f.stream_id for f in frames if isinstance(f, HeadersFrame)}
    assert len(started) <= 200  # answered before the cut: bounded, not 2000


async def test_continuation_flood_bytes(tmp_path: Path) -> None:
    def attack(port: int) -> list[Any]:
        raw = RawH2(port)
        block = request_block(raw.encoder)
        raw.send(HeadersFrame(1, block))  # no END_HEADERS: a header block is open
        filler = ContinuationFrame(1, b"\x00" * 16000)
        with contextlib.suppress(OSError):
            for _ in range(60):  # ~1 MiB, far past max_header_size
                raw.send(filler)
        return raw.read_all()

    async with serve(config(tmp_path, max_header_size="16KiB")) as server:
        frames = await attacked(server, attack)
    end = goaway(frames)
    assert end is not None and end.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert end.additional_data == b"header_block_too_large"


async def test_continuation_flood_frames(tmp_path: Path) -> None:
    def attack(port: int) -> list[Any]:
        raw = RawH2(port)
        raw.send(HeadersFrame(1, request_block(raw.encoder)))
        with contextlib.suppress(OSError):
            raw.send(*[ContinuationFrame(1, b"") for _ in range(10_000)])  # empty, endless
        return raw.read_all()

    async with serve(config(tmp_path)) as server:
        frames = await attacked(server, attack)
    end = goaway(frames)
    assert end is not None and end.error_code != ErrorCodes.NO_ERROR


async def test_hpack_bomb(tmp_path: Path) -> None:
    def attack(port: int) -> list[Any]:
        raw = RawH2(port)
        # One 4 KiB header goes into the dynamic table, then the block names it 200 times by
        # index: a few hundred bytes on the wire, 800 KiB decoded.
        big = [("x-bomb", "b" * 4000)]
        first = raw.encoder.encode(big)
        repeats = raw.encoder.encode(big * 200)
        block = request_block(raw.encoder) + first + repeats
        raw.send(raw.headers(1, block))
        return raw.read_all()

    async with serve(config(tmp_path, max_header_size="64KiB")) as server:
        frames = await attacked(server, attack)
    end = goaway(frames)
    assert end is not None and end.error_code != ErrorCodes.NO_ERROR
    assert not any(isinstance(f, HeadersFrame) for f in frames)  # never reached the app


async def test_settings_ping_and_empty_data_floods(tmp_path: Path) -> None:
    floods = {
        "settings": lambda raw: [SettingsFrame(0, {}) for _ in range(5000)],
        "ping": lambda raw: [PingFrame(0, b"12345678") for _ in range(5000)],
        "empty data": lambda raw: [
            raw.headers(1, request_block(raw.encoder, "/slow/5000"), end_stream=False),
            *[DataFrame(1, b"") for _ in range(5000)],
        ],
    }
    async with serve(config(tmp_path)) as server:
        for name, frames_of in floods.items():

            def attack(port: int, frames_of: Any = frames_of) -> list[Any]:
                raw = RawH2(port)
                with contextlib.suppress(OSError):
                    raw.send(*frames_of(raw))
                return raw.read_all()

            frames = await attacked(server, attack)
            end = goaway(frames)
            assert end is not None and end.error_code == ErrorCodes.ENHANCE_YOUR_CALM, name
            assert end.additional_data == b"control_flood", name
            acks = [f for f in frames if isinstance(f, PingFrame)]
            assert len(acks) <= 1001, name  # answered up to the burst, not 5000


async def test_a_zero_window_reader_is_timed_out_alone(tmp_path: Path) -> None:
    def attack(port: int) -> list[Any]:
        raw = RawH2(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        raw.send(raw.headers(1, request_block(raw.encoder, "/" + "z" * 200)))
        return raw.read_all()  # never a WINDOW_UPDATE

    async with serve(config(tmp_path, send_timeout="1s", keepalive_timeout="2s")) as server:
        frames = await attacked(server, attack)
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.CANCEL)]
    assert not any(isinstance(f, DataFrame) and f.data for f in frames)


async def test_stream_id_abuse(tmp_path: Path) -> None:
    def even(port: int) -> list[Any]:  # clients open odd streams only
        raw = RawH2(port)
        raw.send(raw.headers(2, request_block(raw.encoder)))
        return raw.read_all()

    def reused(port: int) -> list[Any]:  # a closed stream opened again
        raw = RawH2(port)
        raw.send(raw.headers(3, request_block(raw.encoder)))
        raw.send(raw.headers(1, request_block(raw.encoder)))  # lower than one already used
        return raw.read_all()

    def data_on_closed(port: int) -> list[Any]:
        raw = RawH2(port)
        raw.send(raw.headers(1, request_block(raw.encoder)))  # END_STREAM: half-closed
        raw.send(DataFrame(1, b"late"))
        return raw.read_all()

    async with serve(config(tmp_path, keepalive_timeout="1s")) as server:
        for attack in (even, reused):
            end = goaway(await attacked(server, attack))
            assert end is not None and end.error_code == ErrorCodes.PROTOCOL_ERROR
        frames = await attacked(server, data_on_closed)
        codes = {f.error_code for f in frames if isinstance(f, RstStreamFrame)}
        end = goaway(frames)
        assert ErrorCodes.STREAM_CLOSED in codes or (
            end is not None and end.error_code == ErrorCodes.STREAM_CLOSED
        )


async def test_a_stalled_body_gets_408_and_a_refused_upload_is_reset(tmp_path: Path) -> None:
    def slow_post(port: int) -> list[Any]:  # HEADERS without END_STREAM, then nothing
        raw = RawH2(port)
        block = raw.encoder.encode([(":method", "POST"), (":path", "/upload"),
                                    (":scheme", "http"), (":authority", "x")])  # fmt: skip
        raw.send(raw.headers(1, block, end_stream=False), DataFrame(1, b"a little"))
        return raw.read_all()

    cfg = config(tmp_path, body_timeout="1s", keepalive_timeout="2s")
    cfg["listeners"][0]["options"]["app"] = "tests.apps.raw_apps:echo"
    async with serve(cfg) as server:
        frames = await attacked(server, slow_post, polite="")  # echo: an empty body back
    heads = [Decoder().decode(f.data) for f in frames if isinstance(f, HeadersFrame)]
    assert len(heads) == 1 and (":status", "408") in heads[0]
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    # Answered before the body ended: the rest of it is not wanted (RFC 9113 §8.1).
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.NO_ERROR)]


async def test_streams_past_the_limit_cost_the_connection(tmp_path: Path) -> None:
    def burst(port: int) -> list[Any]:
        # 150 streams at once against a limit of 100 (h2 applies our SETTINGS at once).
        raw = RawH2(port)
        raw.send(*[raw.headers(1 + 2 * i, request_block(raw.encoder, "/slow/300"))
                   for i in range(150)])  # fmt: skip
        return raw.read_all()

    async with serve(config(tmp_path)) as server:
        frames = await attacked(server, burst)
    end = goaway(frames)
    assert end is not None and end.error_code == ErrorCodes.PROTOCOL_ERROR
    assert end.last_stream_id == 199  # the 100th stream; the 101st broke the limit


async def test_host_must_match_authority(tmp_path: Path) -> None:
    def lying(port: int) -> list[Any]:
        raw = RawH2(port)
        raw.send(raw.headers(1, request_block(raw.encoder, "/", host="other.example")))
        return raw.read_all()

    async with serve(config(tmp_path)) as server:
        frames = await attacked(server, lying)
    end = goaway(frames)  # malformed (RFC 9113 §8.3.1): h2 makes it a connection error
    assert end is not None and end.error_code == ErrorCodes.PROTOCOL_ERROR
    assert not any(isinstance(f, HeadersFrame) for f in frames)


async def test_connection_specific_and_uppercase_fields_are_malformed(tmp_path: Path) -> None:
    bad_fields = [("connection", "keep-alive"), ("transfer-encoding", "chunked"),
                  ("X-Upper", "1"), ("te", "gzip")]  # fmt: skip
    async with serve(config(tmp_path)) as server:
        for name, value in bad_fields:

            def bad(port: int, name: str = name, value: str = value) -> list[Any]:
                raw = RawH2(port)
                block = raw.encoder.encode([(":method", "GET"), (":path", "/"),
                                            (":scheme", "http"), (":authority", "x"),
                                            (name, value)])  # fmt: skip
                raw.send(raw.headers(1, block))
                return raw.read_all()

            frames = await attacked(server, bad)
            end = goaway(frames)
            resets = [f.error_code for f in frames if isinstance(f, RstStreamFrame)]
            # RFC 9113 §8.2.2 / §8.2: a malformed request, never passed to the app.
            assert (end is not None and end.error_code == ErrorCodes.PROTOCOL_ERROR) or resets == [
                ErrorCodes.PROTOCOL_ERROR
            ], name
            assert not any(isinstance(f, HeadersFrame) for f in frames), name


async def test_a_header_list_over_the_limit_gets_431(tmp_path: Path) -> None:
    def big(port: int) -> list[Any]:
        raw = RawH2(port)
        # 12,000 bytes decoded, one frame on the wire: over the 8 KiB limit, under twice it.
        raw.send(raw.headers(1, request_block(raw.encoder, "/", **{"x-big": "y" * 12_000})))
        return raw.read_all()

    async with serve(config(tmp_path, max_header_size="8KiB", keepalive_timeout="1s")) as server:
        frames = await attacked(server, big)
    heads = [Decoder().decode(f.data) for f in frames if isinstance(f, HeadersFrame)]
    assert len(heads) == 1 and (":status", "431") in heads[0]
    end = goaway(frames)
    assert end is not None and end.error_code == ErrorCodes.NO_ERROR  # the connection lived on
