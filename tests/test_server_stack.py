"""The server stack ``python -m`` runs: uvloop and httptools, or the README's pure-Python switch.

A rendered service is started as a real process on a loopback port; which of
uvicorn's event loops and HTTP parsers serve it shows in the extension
modules the process has loaded (``/proc/PID/maps``): uvicorn imports uvloop
and httptools only to use them.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from flag_matrix import render

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/PID/maps (Linux)"),
    # copier.yml's validators write the regex anchor as '\Z' in a Jinja string,
    # which Python reports as an invalid escape sequence; rendering works regardless.
    pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning"),
]

PACKAGE = "example_service"
# The compiled extension modules of each part of the fast stack.
UVLOOP = re.compile(r"/uvloop/[^/]+\.so")
HTTPTOOLS = re.compile(r"/httptools/parser/[^/]+\.so")


@pytest.fixture(scope="module")
def service(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default service without a database (nothing to migrate before it starts)."""
    return render(template, tmp_path_factory.mktemp("stack") / "service", {"database": "none"})


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(tree: Path, env: dict[str, str]) -> Iterator[int]:
    """``python -m`` of the service with ``env`` added, until it answers; yields its process id."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE],
        cwd=tree,
        env=os.environ
        | env
        | {
            "PORT": str(port),
            "SERVICE_SECRET": "stack-" + "0123456789abcdef" * 2,
            "PYTHONPATH": str(tree / "src"),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"python -m {PACKAGE} exited: {process.communicate()[0].decode()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"python -m {PACKAGE} did not answer within 20 s")
            time.sleep(0.05)
        yield process.pid
    finally:
        process.kill()
        process.communicate(timeout=10)


def loaded(pid: int) -> str:
    """The files mapped into the process: its loaded libraries among them."""
    return Path(f"/proc/{pid}/maps").read_text()


def readme_switch(tree: Path) -> dict[str, str]:
    """The variables of the README's command that serves on the pure-Python stack."""
    readme = (tree / "README.md").read_text()
    (command,) = [line for line in readme.splitlines() if line.startswith("$ ") and "UVICORN_HTTP=" in line]
    words = shlex.split(command[2:])
    assert words[-5:] == ["uv", "run", "python", "-m", PACKAGE], command
    return dict(word.split("=", 1) for word in words if "=" in word)


def test_default_stack_is_uvloop_and_httptools(service: Path) -> None:
    """By default, ``python -m`` serves on uvloop's event loop and httptools' parser."""
    with serving(service, {}) as pid:
        maps = loaded(pid)
    assert UVLOOP.search(maps), "uvloop is not loaded"
    assert HTTPTOOLS.search(maps), "httptools is not loaded"


def test_readme_switch_serves_on_asyncio_and_h11(service: Path) -> None:
    """The README's debugging command serves on asyncio and h11: neither uvloop nor httptools is loaded."""
    switch = readme_switch(service)
    assert switch == {"UVICORN_LOOP": "asyncio", "UVICORN_HTTP": "h11"}
    with serving(service, switch) as pid:
        maps = loaded(pid)
    assert not UVLOOP.search(maps), "uvloop is loaded"
    assert not HTTPTOOLS.search(maps), "httptools is loaded"
