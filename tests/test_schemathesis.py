"""Schemathesis, every check, against two rendered services: the default one
(SQLite) and one with every flag on PostgreSQL. No request it generates from
the service's own OpenAPI schema gets a server error, an undocumented status
or content type, an answer that does not match its schema, or a refusal of
valid input; wrong methods get 405 with ``Allow``, and so on (``--checks all``).

Each service runs as users run it (``python -m <package>``, uvicorn on
loopback, migrated by ``alembic upgrade head``) in a subprocess, so nothing of
it is imported into the suite's own process. The internal route gets the
service token, so that it is tested past its 401.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from flag_matrix import render

STARTUP_SECONDS = 30.0
# Per operation and phase: about 750 cases for each service in all, each of
# its operations tested: the coverage phase's cases, which do not depend on
# this number, then fuzzing and the stateful scenarios.
MAX_EXAMPLES = 30
SEED = 20261129
ALL_FLAGS = {"opentelemetry": True, "database": "postgresql"}


@dataclass(frozen=True)
class Served:
    """A running service: where it listens, and the token its internal route takes."""

    url: str
    secret: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the service exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a process that is starting, not faking time
    pytest.fail(f"the service did not answer within {STARTUP_SECONDS} s:\n{log.read_text()}")


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="module", params=["default", "all-flags-pg"])
def service(
    request: pytest.FixtureRequest, template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The rendered service, migrated and served on a loopback port."""
    work = tmp_path_factory.mktemp(request.param)
    with warnings.catch_warnings():
        # Jinja decodes the '\\Z' in copier.yml's validators as a string
        # escape, which Python deprecates; that is the questionnaire's
        # concern, not what this test checks.
        warnings.filterwarnings("ignore", "invalid escape sequence", DeprecationWarning)
        tree = render(template, work / "service", ALL_FLAGS if request.param == "all-flags-pg" else {})
    package = next(path.name for path in (tree / "src").iterdir() if path.is_dir())
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    secret = secrets.token_urlsafe(32)  # a throwaway token, made here: no secret is committed
    env = {
        **os.environ,
        "PYTHONPATH": str(tree / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "SERVICE_SECRET": secret,
        # The upstream is this service itself: its routes answer, so an
        # upstream route is exercised rather than failing for want of a peer.
        "USER_SERVICE_URL": url,
    }
    database = None
    if request.param == "all-flags-pg":
        server = urlsplit(request.getfixturevalue("postgres_url").replace("+asyncpg", ""))
        database = f"schemathesis_{uuid.uuid4().hex[:12]}"
        admin = f"postgresql://{server.netloc}/postgres"
        asyncio.run(_admin(admin, f'CREATE DATABASE "{database}"'))
        env["DATABASE_URL"] = f"postgresql+asyncpg://{server.netloc}/{database}"
    else:
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{work / 'service.db'}"
    try:
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=tree, env=env, check=True, capture_output=True
        )
        log = work / "service.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", package], cwd=tree, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            _wait_until_serving(url, process, log)
            yield Served(url, secret)
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0, log.read_text()  # SIGTERM is a clean exit
    finally:
        if database is not None:
            asyncio.run(_admin(admin, f'DROP DATABASE "{database}" WITH (FORCE)'))


def test_every_check_passes(service: Served, tmp_path: Path) -> None:
    """No request generated from the published OpenAPI schema fails any of schemathesis' checks."""
    # The command line rather than the pytest plugin: the plugin reaches into
    # pytest's private attributes, which pytest 9 no longer has.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"X-Service-Token: {service.secret}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--generation-database",
            "none",
            "--report-dir",
            str(tmp_path),
            "--no-color",
        ],
        cwd=tmp_path,  # schemathesis keeps a cache in its working folder
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    operations = result.stdout.rsplit("API Operations:", 1)[-1].split()
    selected, total = operations[operations.index("Selected:") + 1].split("/")
    assert selected == total == operations[operations.index("Tested:") + 1], result.stdout  # every operation
    summary = result.stdout.rsplit("Test cases:", 1)[-1]
    generated = int(summary.split()[0])
    assert generated >= 500, summary  # a run that tested little proves little
