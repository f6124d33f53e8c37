"""The Server (the runner): owns the loop-side lifecycle of every listener and handler.

Private modules behind this face (h11 style), one base of ``Server`` each:

* ``_server`` — ``Server``: start (bind every listener, then start the handlers), the one drain
  mechanism (``shutdown()``), ``serve()``, what handlers and the admin endpoint see.
* ``_reload`` — SIGHUP: read the new config, plan it (``core.reload_plan``), execute the plan.
* ``_setup``  — the steps start and reload share: the user and TLS stores, a handler per
  listener from its validated options, its security, bind, serve.
"""

from ._server import LockoutPeers as LockoutPeers
from ._server import Server as Server

__all__ = ["LockoutPeers", "Server"]
