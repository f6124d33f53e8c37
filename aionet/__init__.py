"""aionet: an asyncio multi-protocol server framework.

General layout (three layers, none skipped; CONTRIBUTING.md says where a new protocol goes):

* ``aionet.proto``    — sans-IO codecs: bytes in, events/replies out; no asyncio, no sockets.
  Shared by every line protocol: ``lines`` (bounded CRLF lines), ``sasl`` (AUTH decoding).
* ``aionet.handlers`` — the faces: each protocol's ``Options`` model and ``Handler`` class.
* ``aionet.http``, ``aionet.ftp``, ``aionet.smtp`` — engine packages, where a driver outgrows
  its face (IMAP's goes in ``aionet.imap``; WebSocket and HTTP/2 in ``aionet.http``, behind
  the request cycle's ``HttpConnection`` protocol).
* ``aionet.core``     — lifecycle: listeners and admission, the connection manager, the one
  STARTTLS path (``core.starttls``), the sessions set and drain of every line service
  (``core.sessions``), pre-bind checks (``core.preflight``), the reload plan,
  the server, workers, metrics, logging.
* ``aionet.auth``, ``aionet.storage`` — services beside the handlers: users and the auth
  portal; the Maildir and durable writes.
* ``aionet.config``   — the YAML schema and the positioned reader (a leaf: no core import).
* ``aionet.testing``  — test doubles and the pytest plugin for handler authors.

The names below are the public API, re-exported from where they live.
"""

from .config.models import Config as Config
from .core.handler import Connection as Connection
from .core.handler import DatagramHandler as DatagramHandler
from .core.handler import Handler as Handler
from .core.handler import HandlerOptions as HandlerOptions
from .core.handler import InBandTlsOptions as InBandTlsOptions
from .core.handler import LineTooLong as LineTooLong
from .core.handler import ProtocolHandler as ProtocolHandler
from .core.handler import ServerView as ServerView
from .core.handler import Services as Services
from .core.handler import StreamHandler as StreamHandler
from .core.preflight import config_from_dict as config_from_dict
from .core.preflight import load_config as load_config
from .core.registry import register as register
from .core.server import Server as Server
from .errors import AionetError as AionetError
from .errors import ConfigError as ConfigError
from .errors import ProtocolError as ProtocolError
from .errors import StartupError as StartupError

__version__ = "0.1.0"

__all__ = [
    "AionetError",
    "Config",
    "ConfigError",
    "Connection",
    "DatagramHandler",
    "Handler",
    "HandlerOptions",
    "InBandTlsOptions",
    "LineTooLong",
    "ProtocolError",
    "ProtocolHandler",
    "Server",
    "ServerView",
    "Services",
    "StartupError",
    "StreamHandler",
    "__version__",
    "config_from_dict",
    "load_config",
    "register",
]
