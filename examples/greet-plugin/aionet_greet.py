"""An example aionet plugin: a line protocol that greets every line it receives.

Install it (``pip install ./examples/greet-plugin``) and use ``protocol: greet`` in aionet.yaml,
or reference it without installing as ``protocol: "aionet_greet:Greet"`` when the module is on
``PYTHONPATH``.

    listeners:
      - name: greet
        protocol: greet
        bind: 127.0.0.1:7070
        options: {greeting: "hello", max_line: 1024}
"""

from __future__ import annotations

from pydantic import Field

from aionet import Connection, StreamHandler


class Greet(StreamHandler):
    """Answers each line with ``<greeting> <line>``; ``quit`` ends the session."""

    class Options(StreamHandler.Options):
        greeting: str = "hello"
        max_line: int = Field(default=1024, ge=16, le=65536)

    options: Options

    def refusal(self) -> bytes:
        return b"busy, try later\r\n"

    async def handle(self, conn: Connection) -> None:
        conn.log.info("greet_session_started")
        while True:
            line = await conn.reader.readline()
            if not line:
                return  # peer closed
            if len(line) > self.options.max_line:
                conn.writer.write(b"error: line too long\r\n")
                return
            text = line.rstrip(b"\r\n")
            if text == b"quit":
                conn.writer.write(b"bye\r\n")
                return
            if text == b"crash":
                raise RuntimeError("the client asked for a crash")  # exercised by the tests
            conn.writer.write(self.options.greeting.encode() + b" " + text + b"\r\n")
            await conn.writer.drain()
