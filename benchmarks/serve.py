"""Serve one of the throughput benchmark's apps with uvicorn, the same way for all.

    python -m benchmarks.serve rendered --port 8101 --src /tmp/x/service/src
    python -m benchmarks.serve bare --port 8102
    python -m benchmarks.serve seed --port 8103
    python -m benchmarks.serve bare --port 8104 --loop asyncio --http h11
    python -m benchmarks.serve reference --port 8105 --database-url sqlite+aiosqlite:////tmp/x/bench.db

``rendered`` is the rendered service's ``create_app()`` (settings from the
environment); ``bare`` is a FastAPI app with the same two routes and nothing
else; ``seed`` is ``bare`` plus a request ID set by ``@app.middleware("http")``,
the seed's style, which runs through Starlette's ``BaseHTTPMiddleware``;
``upstream`` is the client benchmark's stand-in upstream; ``reference`` is the
hand-written items API of ``reference_app.py``. ``--loop`` and ``--http`` pick
uvicorn's server stack (``auto``: uvloop and httptools where installed).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from benchmarks.reference_app import reference_app

PACKAGE = "example_service"


def bare_app() -> FastAPI:
    """The two routes, written the plain FastAPI way, and nothing else."""
    app = FastAPI()
    items: list[dict[str, object]] = []

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "pass"}

    @app.get("/api/v1/items")
    async def list_items() -> list[dict[str, object]]:
        return items

    return app


def seed_app() -> FastAPI:
    """``bare_app`` with a request ID set by an ``@app.middleware("http")`` function."""
    app = bare_app()

    @app.middleware("http")
    async def request_id(request: Request, call_next: RequestResponseEndpoint) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        return response

    return app


def upstream_app() -> FastAPI:
    """A stand-in upstream for the client benchmark: one item at ``/api/v1/items/{item_id}``."""
    app = FastAPI()
    body = b'{"id":1,"name":"an item"}'

    @app.get("/api/v1/items/{item_id}")
    async def read_item(item_id: int) -> Response:
        return Response(body, media_type="application/json")

    return app


def rendered_app(src: Path) -> FastAPI:
    """The rendered service's app, its settings read from the environment."""
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    main = importlib.import_module(f"{PACKAGE}.main")
    app: FastAPI = main.create_app()
    return app


def main() -> None:
    """Build the app named on the command line and serve it on loopback."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["rendered", "bare", "seed", "upstream", "reference"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--src", type=Path, help="the rendered tree's src folder (for rendered)")
    parser.add_argument("--database-url", help="the database of the reference app")
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    args = parser.parse_args()
    if args.kind == "rendered":
        app = rendered_app(args.src)
    elif args.kind == "reference":
        app = reference_app(args.database_url)
    else:
        app = {"bare": bare_app, "seed": seed_app, "upstream": upstream_app}[args.kind]()
    # The same settings for all: one worker, loopback, quiet, no access log.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_level="warning",
        access_log=False,
        loop=args.loop,
        http=args.http,
    )


if __name__ == "__main__":
    main()
