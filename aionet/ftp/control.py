"""The control connection's loop: greet, read a command line, check its preconditions, run it.

Lines are cut by the shared ``proto.lines.LineBuffer`` (bounded memory, O(n) work; its pending
bytes are what AUTH TLS discards before the handshake). A line over ``MAX_LINE`` is answered
``500`` and ends the session, as vsftpd does. Telnet IAC sequences (RFC 959 §4.1.3: the
``ABOR`` "synch" some clients send as urgent data) are removed before the command is parsed.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import ssl
from typing import TYPE_CHECKING

from ..proto.lines import TOO_LONG
from .commands import COMMANDS, DURING_TRANSFER, preconditions
from .jail import Refused

if TYPE_CHECKING:
    from .session import FtpSession

__all__ = ["READ_SIZE", "serve"]

READ_SIZE = 4096
_IAC = re.compile(rb"\xff[\xf0-\xfe]?")
_CLOSING = "Service closing control connection (server shutting down)."


async def serve(s: FtpSession) -> None:
    """Greet, then read and run commands until QUIT, EOF, drain or a fatal error."""
    with contextlib.suppress(OSError):
        sock = s.writer.get_extra_info("socket")
        if sock is not None:  # ABOR sent as urgent data stays in the stream
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    with s.config.sessions.track(s):
        try:
            s.reply("220", s.config.banner)
            while True:
                await s.writer.drain()
                line = await _read_line(s)
                if line is None:
                    return
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if s.config.sessions.draining:
                    await s.finish_transfer()
                    s.reply("421", _CLOSING)
                    return
                if not await _run(s, verb, arg):
                    return
        finally:
            await s.close()


async def _read_line(s: FtpSession) -> str | None:
    """The next command line (IAC removed, decoded), or None: EOF, or a line too long."""
    lines, reader = s.lines, s.conn.reader
    while (raw := lines.next_line()) is None:
        s.reading = True
        try:
            data = await reader.read(READ_SIZE)
        except (ConnectionError, ssl.SSLError):
            return None
        finally:
            s.reading = False
        if not data:
            return None
        lines.feed(data)
    if raw is TOO_LONG:
        s.reply("500", "Command line too long.")
        return None
    s.conn.touch()
    return _IAC.sub(b"", raw).decode("utf-8", "surrogateescape").lstrip()


async def _run(s: FtpSession, verb: str, arg: str) -> bool:
    """Run one command; False ends the session."""
    command = COMMANDS.get(verb)
    if command is None:
        s.reply("502", f"Command {verb[:16]!s} not implemented.")
        return True
    if verb not in DURING_TRANSFER:
        await s.finish_transfer()
    try:
        preconditions(s, verb, command, arg)
        result = await command.run(s, arg)
    except Refused as refused:
        s.reply(refused.code, refused.message)
        result = None
    except OSError as exc:
        s.log.info("ftp_command_failed", command=verb, error=str(exc))
        s.reply("550", _os_message(exc))
        result = None
    if verb not in ("REST", "RETR", "STOR", "APPE"):
        s.restart = 0
    if verb != "RNFR":
        s.rename_from = None
    return result is not False


def _os_message(exc: OSError) -> str:
    return {
        "ENOENT": "No such file or directory.",
        "EEXIST": "File exists.",
        "ENOTEMPTY": "Directory not empty.",
        "ENOTDIR": "Not a directory.",
        "EISDIR": "Is a directory.",
        "EACCES": "Permission denied.",
        "ENOSPC": "No space left on device.",
    }.get(errno.errorcode.get(exc.errno or 0, ""), "Requested action not taken.")
