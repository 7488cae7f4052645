"""Schemathesis against the default rendered service: no request it generates
from the service's own OpenAPI schema gets a server error.

The service runs as users run it (``python -m <package>``, uvicorn on
loopback, a migrated SQLite file) in a subprocess, so nothing of it is
imported into the suite's own process.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from matrix import render, snapshot

STARTUP_SECONDS = 30.0


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


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The default rendered service, migrated and served on a loopback port."""
    work = tmp_path_factory.mktemp("schemathesis")
    with warnings.catch_warnings():
        # Jinja decodes the '\\Z' in copier.yml's validators as a string
        # escape, which Python deprecates; that is the questionnaire's
        # concern, not what this test checks.
        warnings.filterwarnings("ignore", "invalid escape sequence", DeprecationWarning)
        service = render(snapshot(work / "template"), work / "service", {})
    package = next(path.name for path in (service / "src").iterdir() if path.is_dir())
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(service / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'service.db'}",
        # A throwaway token, made here so that no secret is committed.
        "SERVICE_SECRET": secrets.token_urlsafe(32),
        # The upstream is this service itself: its routes answer, so an
        # upstream route is exercised rather than failing for want of a peer.
        "USER_SERVICE_URL": url,
    }
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=service,
        env=env,
        check=True,
        capture_output=True,
    )
    log = work / "service.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", package],
            cwd=service,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_no_server_error(service_url: str, tmp_path: Path) -> None:
    """No request generated from the published OpenAPI schema gets a 5xx answer."""
    # The command line rather than the pytest plugin: the plugin reaches into
    # pytest's private attributes, which pytest 9 no longer has.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{service_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "30",
            "--seed",
            "20261129",
            "--generation-database",
            "none",
            "--report-dir",
            str(tmp_path),
            "--no-color",
        ],
        cwd=tmp_path,  # schemathesis keeps a cache in its working folder
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
