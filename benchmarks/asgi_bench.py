"""Per-request cost in process: each throughput app's ASGI callable, called directly.

No socket, no uvicorn, no load generator: a GET's scope, receive and send, in a
loop, in this one process. What is left is the app's own cost per request
(routing, middleware, dependencies, serialisation), much steadier than wrk's
figures on a shared machine. ``--profile`` prints where the rendered service's
time goes (pyinstrument), to show what holds its throughput back.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import common
import serve
import throughput


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


async def _measure(apps: dict[str, Any], count: int, rounds: int) -> None:
    tasks = [await _lifespan_started(app) for app in apps.values()]
    rows = []
    try:
        for path in throughput.ROUTES:
            try:
                for app in apps.values():
                    await _requests(app, path, 200)  # warm up
            except LookupError as error:
                print(f"{path}: skipped ({error})")
                continue
            per: dict[str, list[float]] = {kind: [] for kind in apps}
            for _ in range(rounds):
                for kind, app in apps.items():
                    per[kind].append(await _requests(app, path, count))
            medians = {kind: common.median(v) for kind, v in per.items()}
            for kind in apps:
                rows.append(
                    [
                        path,
                        kind,
                        f"{medians[kind] * 1e6:.0f}",
                        f"{1 / medians[kind]:.0f}",
                        f"{medians['bare'] / medians[kind]:.2f}",
                    ]
                )
    finally:
        for task in tasks:
            await task.inbox.put({"type": "lifespan.shutdown"})  # type: ignore[attr-defined]
            await task
    print(common.table(rows, ["route", "app", "CPU us/request", "requests/s (one core)", "x bare speed"]))


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
        with common.inside_service(tree, env):
            apps = {"rendered": serve.rendered_app(tree / "src"), "bare": serve.bare_app(), "seed": serve.seed_app()}
            asyncio.run(_run_all(apps, count, rounds, profile))


async def _run_all(apps: dict[str, Any], count: int, rounds: int, profile: bool) -> None:
    await _measure(apps, count, rounds)
    if profile:
        from pyinstrument import Profiler

        tasks = [await _lifespan_started(apps["rendered"])]
        try:
            for path in throughput.ROUTES:
                try:
                    await _requests(apps["rendered"], path, 10)
                except LookupError:
                    continue
                profiler = Profiler(interval=0.0001, async_mode="enabled")
                profiler.start()
                await _requests(apps["rendered"], path, count * 2)
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
