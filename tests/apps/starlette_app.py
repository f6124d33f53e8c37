"""A small Starlette app served by the HTTP tests (in-process and through ``aionet run``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"greeting": "hello from lifespan"}


async def home(request: Request) -> Response:
    return PlainTextResponse(request.state.greeting)


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "length": len(body),
            "content_type": request.headers.get("content-type"),
        }
    )


async def stream(request: Request) -> Response:
    count = int(request.query_params.get("n", "5"))

    async def parts() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"part {i}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")


async def boom(request: Request) -> Response:
    raise RuntimeError("secret internal detail")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/echo", echo, methods=["GET", "POST", "PUT"]),
        Route("/stream", stream),
        Route("/boom", boom),
    ],
    lifespan=lifespan,
)
