"""pyftpdlib with its defaults (sendfile on): ``pyftpdlib_server.py PORT ROOT``."""

from __future__ import annotations

import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main(port: int, root: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user("bench", "bench", root, perm="elradfmwMT")
    FTPHandler.authorizer = authorizer
    FTPServer(("127.0.0.1", port), FTPHandler).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
