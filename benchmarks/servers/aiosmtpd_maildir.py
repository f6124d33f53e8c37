"""The benchmark's peer: bare aiosmtpd (its ``SMTP`` protocol on a uvloop server) with a minimal
Maildir handler doing the same durable steps as aionet: write tmp/, fsync, rename into new/,
fsync new/ — then 250.

    python benchmarks/servers/aiosmtpd_maildir.py PORT MAILDIR [inline|executor|nofsync]

``inline`` does the file work on the event loop (the shortest handler one would write),
``executor`` on a thread pool (what aionet does, so a slow disk does not stall other sessions),
``nofsync`` skips both fsyncs (to show what fsync costs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from aiosmtpd.smtp import SMTP

logging.getLogger("mail.log").setLevel(logging.WARNING)
COUNTER = iter(range(1, 1 << 62))


class MaildirHandler:
    def __init__(self, root: Path, mode: str) -> None:
        self.root = root
        self.mode = mode
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def store(self, data: bytes) -> None:
        name = f"{int(time.time())}.P{os.getpid()}Q{next(COUNTER)}.bench"
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        if self.mode != "nofsync":
            os.fsync(fd)
        os.close(fd)
        os.rename(tmp, self.root / "new" / name)
        if self.mode != "nofsync":
            dfd = os.open(self.root / "new", os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.mode == "executor":
            await asyncio.get_running_loop().run_in_executor(None, self.store, envelope.content)
        else:
            self.store(envelope.content)
        return "250 OK"


async def main(port: int, root: Path, mode: str) -> None:
    handler = MaildirHandler(root, mode)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench", loop=loop), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    mode = sys.argv[3] if len(sys.argv) > 3 else "inline"
    uvloop.run(main(int(sys.argv[1]), Path(sys.argv[2]), mode))
