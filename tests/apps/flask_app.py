"""A small Flask app served by the HTTP tests through WSGI."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, request

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello, World!"


@app.route("/echo", methods=["POST", "PUT"])
def echo() -> dict[str, object]:
    data = request.get_data()
    return {"length": len(data), "first": data[:8].decode("latin-1"), "path": request.path}


@app.route("/stream")
def stream() -> Response:
    count = int(request.args.get("n", "5"))

    def parts() -> Iterator[str]:
        for i in range(count):
            yield f"line {i}\n"

    return Response(parts(), mimetype="text/plain")


@app.route("/boom")
def boom() -> str:
    raise RuntimeError("secret internal detail")
