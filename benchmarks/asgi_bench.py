"""Per-request cost in process: each app's ASGI callable, called directly.

No socket, no uvicorn, no load generator: a GET's scope, receive and send, in a
loop, in this one process. What is left is the app's own cost per request
(routing, middleware, dependencies, serialisation, the database driver's work
in this process), much steadier than wrk's figures on a shared machine.
``/health/live`` compares the rendered default service with bare FastAPI and
the seed's style; ``/api/v1/items`` (a page of 100 items and the total, from
SQLite) compares it with the hand-written reference app on the same file.
``--profile`` prints where the rendered service's time goes (pyinstrument).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks import common, serve
from benchmarks.reference_app import reference_app
from benchmarks.routes_bench import ROWS, seed

# Each route, and the app that the others are compared with on it.
BASELINES = {"/health/live": "bare", "/api/v1/items": "reference"}


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _lifespan_started(app: Any) -> asyncio.Task[None]:
    """Run the app's lifespan up to its start; the task finishes it on shutdown."""
    started = asyncio.Event()
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith("failed"):
            raise RuntimeError(message.get("message", "lifespan failed"))

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    await started.wait()
    task.inbox = inbox  # type: ignore[attr-defined]
    return task


async def _requests(app: Any, path: str, count: int) -> float:
    """CPU seconds (this process's, all threads) per request, over ``count`` sequential requests.

    CPU time rather than wall time: on a shared machine, the wall clock also
    counts the moments when another process had the core.
    """
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    start = time.process_time()
    for _ in range(count):
        await app(_scope(path), receive, send)
    elapsed = (time.process_time() - start) / count
    if status >= 400:
        raise LookupError(f"{path} answered {status}")
    return elapsed


async def _measure(apps: dict[str, dict[str, Any]], count: int, rounds: int) -> None:
    """Time each route's apps in turn, round after round; print the medians."""
    every = {id(app): app for route_apps in apps.values() for app in route_apps.values()}
    tasks = [await _lifespan_started(app) for app in every.values()]
    rows = []
    try:
        for path, route_apps in apps.items():
            for app in route_apps.values():
                await _requests(app, path, 200)  # warm up
            per: dict[str, list[float]] = {kind: [] for kind in route_apps}
            for _ in range(rounds):
                for kind, app in route_apps.items():
                    per[kind].append(await _requests(app, path, count))
            medians = {kind: common.median(v) for kind, v in per.items()}
            baseline = medians[BASELINES[path]]
            rows.extend(
                [
                    path,
                    kind,
                    f"{medians[kind] * 1e6:.0f}",
                    f"{1 / medians[kind]:.0f}",
                    f"{baseline / medians[kind]:.2f}",
                ]
                for kind in route_apps
            )
    finally:
        for task in tasks:
            await task.inbox.put({"type": "lifespan.shutdown"})  # type: ignore[attr-defined]
            await task
    print(common.table(rows, ["route", "app", "CPU us/request", "requests/s (one core)", "x the route's first app"]))


def run(template: Path, count: int, rounds: int, profile: bool) -> None:
    """Render, build the three apps in this process, time them, optionally profile."""
    common.header("Per-request cost in process (ASGI, no network)")
    print(
        f"{rounds} rounds of {count} sequential GETs per app and route, apps in turn; medians of this"
        " process's CPU time per request (steadier than wall time on a shared machine)."
    )
    with common.workdir("bench-asgi-") as work:
        tree = common.render_default(template, work)
        env = common.service_env(tree)
        common.migrate(tree, env)
        asyncio.run(seed(env["DATABASE_URL"], ROWS))
        with common.inside_service(tree, env):
            rendered = serve.rendered_app(tree / "src")
            apps = {
                "/health/live": {"bare": serve.bare_app(), "rendered": rendered, "seed": serve.seed_app()},
                "/api/v1/items": {"reference": reference_app(env["DATABASE_URL"]), "rendered": rendered},
            }
            asyncio.run(_run_all(apps, count, rounds, profile))


async def _run_all(apps: dict[str, dict[str, Any]], count: int, rounds: int, profile: bool) -> None:
    await _measure(apps, count, rounds)
    if profile:
        from pyinstrument import Profiler

        rendered = apps["/health/live"]["rendered"]
        tasks = [await _lifespan_started(rendered)]
        try:
            for path in apps:
                await _requests(rendered, path, 10)
                profiler = Profiler(interval=0.0001, async_mode="enabled")
                profiler.start()
                await _requests(rendered, path, count * 2)
                profiler.stop()
                print(f"\n--- pyinstrument: the rendered service, {count * 2} x GET {path} in process ---")
                print(profiler.output_text(unicode=False, color=False, show_all=False))
        finally:
            for task in tasks:
                await task.inbox.put({"type": "lifespan.shutdown"})  # type: ignore[attr-defined]
                await task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    group = parser.add_argument_group("asgi")
    group.add_argument("--asgi-requests", type=int, default=2000, help="sequential requests per round (2000)")
    group.add_argument("--asgi-rounds", type=int, default=5, help="rounds of A B C per route (5)")
    group.add_argument("--profile", action="store_true", help="print a pyinstrument profile of the rendered service")


def main(args: argparse.Namespace) -> None:
    """Run from ``run.py``."""
    run(args.template, args.asgi_requests, args.asgi_rounds, args.profile)
