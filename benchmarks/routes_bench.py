"""Database routes: the rendered default service's items routes against the
hand-written reference (``reference_app.py``), on SQLite and on PostgreSQL,
loaded in turn by wrk.

For each database, the default service (every default feature on) is
rendered with that database, migrated, and given the same rows; it runs as
``python -m``, the reference under ``serve.py``, both on the default server
stack (uvloop and httptools) and on the same database. Each route is loaded
on one server, then the other, round after round: ``GET /api/v1/items`` (a
page of 100 and the total), ``GET /api/v1/items/42`` and ``POST
/api/v1/items``, last, as it adds rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

import flag_matrix as matrix
from benchmarks import common, throughput

ROWS = 1000
MEMORY = Path("/dev/shm")
LIST, ONE, CREATE = "/api/v1/items", "/api/v1/items/42", "POST /api/v1/items"
ROUTES = [LIST, ONE, CREATE]
GOAL = 0.90
POST_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{"name": "a new item"}'
wrk.headers["Content-Type"] = "application/json"
"""


async def _execute(url: str, statement: str, rows: list[dict[str, object]] | None = None, **engine: object) -> None:
    db = create_async_engine(url, **engine)
    try:
        async with db.begin() as connection:
            await connection.execute(text(statement), rows)
    finally:
        await db.dispose()


async def seed(url: str, rows: int) -> None:
    """Give the migrated database at ``url`` that many items."""
    await _execute(url, "INSERT INTO items (name) VALUES (:name)", [{"name": f"item {n}"} for n in range(rows)])


@contextmanager
def database(kind: str, work: Path) -> Iterator[str | None]:
    """A database of this run's own, as a URL for the service's driver; None if there is no server."""
    if kind == "sqlite":
        # In memory where the machine has a tmpfs: each commit's fsync would
        # otherwise bound both apps' writes alike and hide what they cost.
        folder = Path(tempfile.mkdtemp(prefix="bench-routes-", dir=MEMORY if MEMORY.is_dir() else work))
        try:
            yield f"sqlite+aiosqlite:///{folder / 'routes.db'}"
        finally:
            shutil.rmtree(folder)
        return
    admin = os.environ.get("TEST_POSTGRES_URL", matrix.DEFAULT_POSTGRES_URL)
    name = f"bench_{secrets.token_hex(6)}"
    try:
        asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"', isolation_level="AUTOCOMMIT"))
    except (OSError, DBAPIError) as error:
        print(f"PostgreSQL: skipped, no server at {make_url(admin).host}:{make_url(admin).port} ({error})")
        yield None
        return
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE "{name}" WITH (FORCE)', isolation_level="AUTOCOMMIT"))


def measure(template: Path, kind: str, rounds: int, load: throughput.Load) -> dict[str, float]:
    """Render the default service on ``kind``, serve it beside the reference, load each route."""
    with common.workdir(f"bench-routes-{kind}-") as work, database(kind, work) as url:
        if url is None:
            return {}
        snap = common.template_snapshot(template, work / "template")
        tree = matrix.render(snap, work / "service", {"database": kind})
        env = {**common.service_env(tree), "DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}
        common.migrate(tree, env)
        asyncio.run(seed(url, ROWS))
        script = work / "post.lua"
        script.write_text(POST_SCRIPT)
        commands = {
            "rendered": throughput.python_m(tree, env),
            "reference": (
                [*throughput.SERVE, "reference", "--port", "{port}", "--database-url", url],
                throughput.SERVE_ENV,
            ),
        }
        figures = {}
        with throughput.servers(commands, tree) as started:
            for route in ROUTES:
                method, _, path = route.rpartition(" ")
                route_load = replace(load, script=script) if method == "POST" else load
                runs = throughput.interleaved(started, path, route_load, rounds)
                ratio = runs.paired("rendered", "reference")
                figures[route] = ratio
                figures[f"{route} per CPU"] = runs.paired_cpu("rendered", "reference")
                medians = {name: common.median(values) for name, values in runs.rates.items()}
                print(
                    f"{kind} {route}: rendered {medians['rendered']:.0f} req/s, reference"
                    f" {medians['reference']:.0f} req/s: {ratio:.2f} ({throughput.verdict(ratio, GOAL)});"
                    f" per CPU second of each server: {figures[f'{route} per CPU']:.2f}",
                    flush=True,
                )
        return figures


def run(template: Path, databases: list[str], rounds: int, load: throughput.Load) -> dict[str, dict[str, float]]:
    """Each database in turn; print the table of ratios and return it."""
    common.header("Database routes: the rendered service against the hand-written reference (wrk)")
    print(
        f"wrk -t{load.threads} -c{load.connections}, {rounds} rounds x {load.seconds} s per server and route,"
        f" in turn; {ROWS} rows before the first round; both on uvloop + httptools, quiet; the figure is the"
        " median of the rounds' ratios rendered / reference."
    )
    results = {kind: measure(template, kind, rounds, load) for kind in databases}
    rows = [
        [
            route,
            *(
                f"{results[kind][route]:.2f} ({results[kind][f'{route} per CPU']:.2f})"
                if route in results[kind]
                else "skipped"
                for kind in databases
            ),
        ]
        for route in ROUTES
    ]
    print()
    print(common.table(rows, ["rendered / reference: req/s (req per CPU s)", *databases]))
    missed = [f"{kind} {route}" for kind in databases for route in ROUTES if results[kind].get(route, GOAL) < GOAL]
    print(f"goal every route >= {GOAL} x the reference: " + (f"NOT met ({', '.join(missed)})" if missed else "met"))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options (the load's are ``throughput``'s)."""
    group = parser.add_argument_group("routes")
    group.add_argument(
        "--databases", default="sqlite,postgresql", help="databases to measure, comma-separated (sqlite,postgresql)"
    )


def main(args: argparse.Namespace) -> None:
    """Run from ``run.py``."""
    run(args.template, args.databases.split(","), args.rounds, throughput.load_of(args))
