"""Bare aioftp (its own Server, stream data path) on uvloop: ``aioftp_server.py PORT ROOT``."""

from __future__ import annotations

import sys

import aioftp
import uvloop


async def main(port: int, root: str) -> None:
    server = aioftp.Server([aioftp.User("bench", "bench", base_path=root)])
    await server.run("127.0.0.1", port)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
