"""``HttpProtocol`` on a ``MemoryTransport`` (tier 2): ordering, framing, flow control, timeouts.

No sockets: the test feeds bytes into ``data_received`` and reads what the protocol wrote. The
apps are small closures so each test shows the one behaviour it checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from aionet.config.models import Limits
from aionet.core.connections import ConnectionManager, ListenerSlot, track
from aionet.core.handler import HandlerOptions, Services
from aionet.handlers.echo import EchoHandler
from aionet.http.cycle import ClientDisconnected
from aionet.http.protocol import MAX_QUEUE, HttpProtocol
from aionet.http.state import DRAIN_IDLE_GRACE, HttpLimits, HttpState
from aionet.testing import MemoryTransport
from tests.http_helpers import split_responses
from tests.waiting import wait_until

App = Callable[..., Any]
GET = b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n"


def make_slot() -> ListenerSlot:
    manager = ConnectionManager(Limits())
    services = Services(listener="web", data_dir=Path("."), log=structlog.get_logger())
    return manager.add_listener("web", EchoHandler(HandlerOptions(), services), Limits())


def connect(
    app: App, *, high_water: int = 1 << 20, access: bool = False, **limits: Any
) -> tuple[HttpProtocol, MemoryTransport, HttpState]:
    log = structlog.get_logger("test")
    state = HttpState(app, HttpLimits(**limits), log, access=log if access else None)
    state.clock = lambda: state.now  # the tests move time by hand: deadlines read their clock
    slot = make_slot()
    proto = track(HttpProtocol(state), slot)
    assert isinstance(proto, HttpProtocol)
    transport = MemoryTransport(high_water=high_water)
    transport.connect(proto)
    return proto, transport, state


async def settle(rounds: int = 10) -> None:
    """Let the loop run ``rounds`` turns (no time passes): the app tasks a request started
    run up to their next real wait."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def start(send: Any, status: int = 200, headers: list[Any] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})


async def path_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the path; ``/slow`` waits a little first."""
    if scope["path"] == "/slow":
        await asyncio.sleep(0.05)  # part of the tests: a response that takes time to come
    await start(send)
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def test_pipelined_requests_are_answered_in_order() -> None:
    proto, transport, _ = connect(path_app)
    proto.data_received(GET % b"slow" + GET % b"a" + GET % b"b")
    await wait_until(lambda: len(split_responses(bytes(transport.buffer))) == 3, 5)
    bodies = [r.body for r in split_responses(transport.take())]
    assert bodies == [b"/slow", b"/a", b"/b"]
    assert not transport.closed


async def test_a_deep_pipeline_pauses_reading_until_it_drains() -> None:
    release = asyncio.Event()

    async def gated(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await path_app(scope, receive, send)

    proto, transport, _ = connect(gated)
    proto.data_received(b"".join(GET % b"%d" % i for i in range(MAX_QUEUE + 2)))
    await settle()
    assert not transport.reading
    release.set()
    await settle(50)
    assert transport.reading
    assert len(split_responses(transport.take())) == MAX_QUEUE + 2


async def test_a_pipelined_flood_is_parsed_no_further_than_the_bound() -> None:
    release = asyncio.Event()

    async def gated(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await path_app(scope, receive, send)

    proto, transport, _ = connect(gated)
    flood = b"".join(GET % b"%d" % i for i in range(3000))  # one read, about 100 KB
    proto.data_received(flood)
    await settle()
    assert len(proto._queue) <= MAX_QUEUE + 1  # not 2999: the rest waits unparsed
    assert len(proto._backlog) < len(flood) and not transport.reading
    release.set()
    for _ in range(200):  # the queue drains, the rest of the read is parsed, in order
        await settle(50)
        if transport.reading:
            break
    assert transport.reading and not proto._backlog
    bodies = [r.body for r in split_responses(transport.take())]
    assert bodies == [b"/%d" % i for i in range(3000)]


async def echo_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await start(send)
    await send({"type": "http.response.body", "body": body})


async def test_100_continue_is_sent_only_when_the_app_reads_the_body() -> None:
    proto, transport, _ = connect(echo_body)
    proto.data_received(
        b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    await settle()
    assert transport.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    proto.data_received(b"hello")
    await settle()
    [response] = split_responses(transport.take())
    assert (response.status, response.body) == (200, b"hello")


async def test_no_100_continue_when_the_app_answers_without_reading() -> None:
    proto, transport, _ = connect(path_app)
    proto.data_received(
        b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    await settle()
    data = transport.take()
    assert b"100 Continue" not in data
    assert split_responses(data)[0].headers["connection"] == "close"
    assert transport.closed  # the unread body makes the connection unusable


async def test_head_has_headers_but_no_body() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send, 200, [(b"content-length", b"11")])
        await send({"type": "http.response.body", "body": b"hello world"})

    proto, transport, _ = connect(app)
    proto.data_received(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    await settle()
    head, _, rest = transport.take().partition(b"\r\n\r\n")
    assert b"content-length: 11" in head and rest == b""
    assert not transport.closed


async def test_body_without_length_is_chunked_and_single_body_gets_a_length() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send)
        if scope["path"] == "/parts":
            for part in (b"ab", b"", b"cde"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": b"whole"})

    proto, transport, _ = connect(app)
    proto.data_received(GET % b"parts" + GET % b"one")
    await settle(20)
    data = transport.take()
    assert b"transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n" in data
    parts, one = split_responses(data)
    assert parts.body == b"abcde" and one.headers["content-length"] == "5"


async def test_http_1_0_keep_alive_and_close() -> None:
    proto, transport, _ = connect(path_app)
    proto.data_received(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await settle()
    [kept] = split_responses(transport.take())
    assert kept.headers["connection"] == "keep-alive" and not transport.closed
    proto.data_received(b"GET /c HTTP/1.0\r\n\r\n")
    await settle()
    [closed] = split_responses(transport.take())
    assert closed.headers["connection"] == "close" and transport.closed


async def test_send_waits_while_the_transport_is_paused() -> None:
    progress: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send, 200, [(b"content-length", b"300000")])
        for i in range(3):
            await send({"type": "http.response.body", "body": b"x" * 100000, "more_body": i < 2})
            progress.append(i)

    proto, transport, _ = connect(app, high_water=50000)
    proto.data_received(GET % b"")
    await settle()
    assert progress == [0] and proto.write_paused
    transport.take()  # the client reads: the transport drains and resumes writing
    await settle()
    assert progress == [0, 1]
    transport.take()
    await settle()
    assert progress == [0, 1, 2]


async def test_an_upload_the_app_does_not_read_pauses_reading() -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await echo_body(scope, receive, send)

    proto, transport, _ = connect(app)
    proto.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\n")
    for _ in range(3):
        proto.data_received(b"u" * 50000)
    await settle()
    assert not transport.reading
    release.set()
    await settle()
    assert transport.reading
    for _ in range(3):
        proto.data_received(b"u" * 50000)
    await settle()
    [response] = split_responses(transport.take())
    assert len(response.body) == 300000


async def test_slow_head_gets_408_and_idle_keep_alive_is_closed() -> None:
    proto, transport, state = connect(path_app, header_timeout=1.0, keepalive_timeout=2.0)
    proto.data_received(b"GET / HTTP/1.1\r\nHost")
    proto.check_timeouts(state.now + 0.9)
    assert not transport.closed
    proto.check_timeouts(state.now + 1.0)
    assert split_responses(transport.take())[0].status == 408 and transport.closed

    proto, transport, state = connect(path_app, header_timeout=1.0, keepalive_timeout=2.0)
    proto.data_received(GET % b"")
    await settle()
    transport.take()
    proto.check_timeouts(state.now + 1.9)
    assert not transport.closed
    proto.check_timeouts(state.now + 2.0)
    assert transport.closed and transport.take() == b""


POST_10 = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"


async def test_a_stalled_body_gets_408_at_body_timeout() -> None:
    proto, transport, state = connect(echo_body, body_timeout=1.0)
    proto.data_received(POST_10 + b"ab")
    await settle()
    proto.check_timeouts(state.now + 0.9)
    assert not transport.closed
    state.now += 0.5
    proto.data_received(b"cd")  # a read: the body timeout runs from here
    proto.check_timeouts(state.now + 0.9)
    assert not transport.closed
    proto.check_timeouts(state.now + 1.0)
    assert split_responses(transport.take())[0].status == 408 and transport.closed


async def test_a_stalled_body_after_the_response_started_closes_without_a_reply() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"early", "more_body": True})
        while (message := await receive())["type"] == "http.request":
            pass
        seen.append(message["type"])

    proto, transport, state = connect(app, body_timeout=1.0)
    proto.data_received(POST_10 + b"ab")
    await settle()
    transport.take()
    proto.check_timeouts(state.now + 1.0)
    await settle()
    assert transport.closed and transport.take() == b""
    assert seen == ["http.disconnect"]


async def test_no_body_timeout_while_the_client_waits_for_100_continue() -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await echo_body(scope, receive, send)

    proto, transport, state = connect(app, body_timeout=1.0)
    proto.data_received(POST_10.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    proto.check_timeouts(state.now + 5.0)  # the app has not asked for the body yet
    assert not transport.closed
    state.now += 5.0
    release.set()
    await settle()
    assert transport.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    proto.check_timeouts(state.now + 0.9)  # the client's time starts with the 100
    assert not transport.closed
    proto.data_received(b"0123456789")
    await settle()
    assert split_responses(transport.take())[0].body == b"0123456789"


async def test_send_timeout_aborts_when_the_write_buffer_stops_draining() -> None:
    failures: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send, 200, [(b"content-length", b"300000")])
        try:
            for i in range(3):
                body = b"x" * 100000
                await send({"type": "http.response.body", "body": body, "more_body": i < 2})
        except ClientDisconnected as exc:
            failures.append(exc)

    proto, transport, state = connect(app, high_water=50000, send_timeout=1.0)
    proto.data_received(GET % b"")
    await settle()
    assert proto.write_paused
    now = state.now
    proto.check_timeouts(now)  # the stall starts
    proto.check_timeouts(now + 0.9)
    assert not transport.aborted
    del transport.buffer[:1000]  # the client read a little: progress
    proto.check_timeouts(now + 1.5)
    assert not transport.aborted
    proto.check_timeouts(now + 2.4)
    assert not transport.aborted
    proto.check_timeouts(now + 2.5)  # 1 s without progress
    assert transport.aborted
    await settle()
    assert len(failures) == 1  # the app's send() saw the disconnect


async def test_a_half_close_mid_body_disconnects_the_app_at_once() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (message := await receive())["type"] == "http.request":
            pass
        seen.append(message["type"])

    proto, _transport, _ = connect(app)
    proto.data_received(POST_10 + b"ab")
    await settle()
    assert proto.eof_received() is None  # the transport closes
    await settle()
    assert seen == ["http.disconnect"]


async def test_trailer_fields_do_not_join_the_request_headers() -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await echo_body(scope, receive, send)
        seen.append(list(scope["headers"]))

    proto, transport, _ = connect(app)
    proto.data_received(
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nHost: evil\r\nX-T: 1\r\n\r\n"
    )
    await settle()
    assert split_responses(transport.take())[0].body == b"abc"
    assert seen == [[(b"host", b"t"), (b"transfer-encoding", b"chunked")]]


async def test_drain_closes_idle_after_a_grace_and_busy_after_its_response() -> None:
    _idle, idle_transport, state = connect(path_app)
    busy, busy_transport, _ = connect(path_app)
    busy.state = state  # both under one listener state
    state.protocols.add(busy)
    busy.data_received(GET % b"slow")
    await settle()
    loop = asyncio.get_running_loop()
    state.drain()
    drained = loop.time()
    assert not idle_transport.closed and not busy_transport.closed
    await wait_until(lambda: busy_transport.closed, 5, what="the busy one closing")
    [response] = split_responses(busy_transport.take())
    assert response.headers["connection"] == "close"
    # Ordering, not timing: the busy one (50 ms of work) closed while the idle one waits out
    # DRAIN_IDLE_GRACE (250 ms); a stalled loop runs the earlier timer first all the same.
    assert not idle_transport.closed
    await wait_until(lambda: idle_transport.closed, 5, what="the idle one closing")
    assert loop.time() - drained >= DRAIN_IDLE_GRACE - 0.005  # not before its grace
    assert idle_transport.take() == b""


async def test_a_request_arriving_in_the_drain_grace_is_answered_then_closed() -> None:
    # The client reused its keep-alive connection just as the drain began.
    proto, transport, state = connect(path_app)
    state.drain()
    proto.data_received(GET % b"late")
    await settle()
    [response] = split_responses(transport.take())
    assert response.status == 200 and response.body.endswith(b"late")
    assert response.headers["connection"] == "close" and transport.closed


async def test_app_errors_500_then_the_connection_survives() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("secret detail")
        if scope["path"] == "/mute":
            return
        await path_app(scope, receive, send)

    proto, transport, _ = connect(app)
    with capture_logs() as logs:
        proto.data_received(GET % b"boom" + GET % b"mute" + GET % b"ok")
        await settle(30)
    boom, mute, ok = split_responses(transport.take())
    assert (boom.status, mute.status, ok.status, ok.body) == (500, 500, 200, b"/ok")
    assert b"secret" not in boom.body
    errors = [e for e in logs if e["event"] == "http_app_error"]
    assert len(errors) == 2 and errors[0]["exc_info"] is not None
    assert not transport.closed


async def test_app_error_after_the_response_started_closes() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("mid-response")

    proto, transport, _ = connect(app)
    proto.data_received(GET % b"")
    await settle()
    assert transport.take().endswith(b"7\r\npartial\r\n")  # no last chunk: truncated
    assert transport.closed


async def test_request_id_is_reused_when_sane_and_generated_otherwise() -> None:
    proto, transport, _ = connect(path_app)
    proto.data_received(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: abc-123\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: bad id\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: " + b"a" * 129 + b"\r\n\r\n"
    )
    await settle(30)
    ids = [r.headers["x-request-id"] for r in split_responses(transport.take())]
    assert ids[0] == "abc-123"
    assert ids[1] != "bad id" and ids[2] != "a" * 129 and len(set(ids)) == 3


async def test_access_log_has_one_event_per_request() -> None:
    proto, _transport, _ = connect(path_app, access=True)
    with capture_logs() as logs:
        proto.data_received(GET % b"a" + b"GET / HTTP/1.1\r\n\r\n")
        await settle()
    events = [e for e in logs if e["event"] == "http_request"]
    assert [(e["path"], e["status"]) for e in events] == [("/a", 200), ("/", 400)]
    assert events[0]["method"] == "GET" and events[0]["bytes"] == 2
    assert events[0]["peer"] == "127.0.0.1:50000" and events[0]["duration"] >= 0


async def test_switch_protocol_hands_over_the_connection_still_tracked() -> None:
    class Inner(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = b""
            self.lost = False

        def data_received(self, data: bytes) -> None:
            self.data += data

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost = True

    proto, transport, state = connect(path_app)
    proto.data_received(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nearly"
    )
    inner = Inner()
    proto.switch_protocol(inner)
    proto.data_received(b" later")
    assert inner.data == b"early later"
    rec = proto._aionet_rec
    assert rec is not None and rec.bytes_in > 0
    transport.close()
    assert inner.lost and proto not in state.protocols
    assert rec.id not in rec.slot.manager.live  # released through the HTTP protocol


@pytest.mark.parametrize("chunks", [1, 3, 7])
async def test_any_split_of_the_input_gives_the_same_responses(chunks: int) -> None:
    stream = (
        b"POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n" + GET % b"z"
    )
    proto, transport, _ = connect(echo_body)
    size = -(-len(stream) // chunks)
    for i in range(0, len(stream), size):
        proto.data_received(stream[i : i + size])
        await settle()
    await settle()
    bodies = [r.body for r in split_responses(transport.take())]
    assert bodies == [b"abcde", b""]


async def test_disconnect_reaches_a_waiting_app_and_send_raises() -> None:
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(await receive())  # the (empty) body
        seen.append(await receive())  # blocks until the client goes away
        try:
            await start(send)
        except OSError as exc:
            seen.append(exc)

    proto, transport, state = connect(app)
    proto.data_received(GET % b"")
    await settle()
    assert seen == [{"type": "http.request", "body": b"", "more_body": False}]
    transport.close()
    await settle()
    assert seen[1] == {"type": "http.disconnect"}
    assert isinstance(seen[2], ClientDisconnected)
    assert not state.tasks


async def test_wsgi_start_response_exc_info_after_headers_reraises() -> None:
    from aionet.http.wsgi import _Call

    class Bridge:
        sent: list[Any] = []

        def call(self, awaitable: Any) -> None:
            awaitable.close()

        def send(self, message: Any) -> Any:
            self.sent.append(message)

            async def done() -> None:
                return None

            return done()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        write = start_response("200 OK", [("X", "1")])
        write(b"sent")  # headers are out now
        try:
            raise KeyError("late")
        except KeyError:
            import sys

            start_response("500 Oops", [], sys.exc_info())
        return []

    scope = {"method": "GET", "path": "/", "query_string": b"", "http_version": "1.1"}
    call = _Call(app, scope | {"headers": []}, Bridge())  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="late"):
        call.run()
    assert [m["type"] for m in Bridge.sent] == ["http.response.start", "http.response.body"]
