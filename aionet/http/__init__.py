"""The HTTP/1.1 server behind ``protocol: http``: I/O glue around httptools and the apps it hosts.

Layout (the framing rules themselves are sans-IO, in ``aionet.proto.http``):

* ``protocol.py`` — ``HttpProtocol``, the ``asyncio.Protocol``: its state, the callbacks and
  the upgrade seam; one base per concern in private modules: ``_reading.py`` (parser
  callbacks, pipelining queue, strict-framing checks), ``_deadlines.py`` (refusals, timeouts,
  keep-alive, drain), ``_output.py`` (writes, flow control, ``sendfile``).
* ``cycle.py``    — ``RequestCycle``: one request's ASGI ``receive``/``send``, response
  framing (Content-Length, chunked, HEAD, 100-continue), the access log line.
* ``state.py``    — ``HttpState``: what every connection of one listener shares (clock, Date,
  limits, live connections, the timeout tick).
* ``target.py``   — request-target splitting and decoding, ASGI address pairs.
* ``lifespan.py`` — the ASGI lifespan protocol run at handler start/stop.
* ``wsgi.py``     — a PEP 3333 WSGI app hosted as an ASGI app on a bounded thread pool.
* ``static.py``   — the built-in app: files under ``static_dir`` and the status page.
"""
