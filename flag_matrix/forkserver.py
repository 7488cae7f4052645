"""Run pytest sessions, or mypy, in forked children of one warm interpreter.

Importing FastAPI, pydantic, SQLAlchemy and friends costs more than the
rendered service's own tests take. The server pays that once:
it imports them, runs one tiny pytest session of its own (so that pytest's
plugins and what a first request imports are loaded), then forks a child for
each request, which changes into the rendered tree and runs ``pytest`` there
as if from its shell. The child imports the rendered package itself afresh,
so nothing of one tree leaks into another.

Rendered sessions run under ``--assert=plain``: their test modules are
imported as they are, not rewritten. When a session has failing tests, a
second child runs those tests again with pytest's assertion rewriting, and
its report follows the first in the log, so that a failure shows the values
its assertion compared.

In ``mypy`` mode the server does the same for ``mypy`` (through
``mypy.api``): it runs mypy once on a tiny module of its own, then each child
runs mypy in a tree, with the tree's configuration, as the command does.

This file is also the server's program, run by path with ``python -P`` (the
standard library only is imported at its top): ``python -P forkserver.py
pytest``, or ``python -P forkserver.py mypy [CACHE_DIR]``. Protocol: one JSON
object per line on stdin, ``{"cwd", "args", "env", "log"}``; one line back on
stdout per request, ``{"log", "code": <exit code>, "cpu": <seconds>}``.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Failure:
    """A check that failed on a rendered tree, with what it printed."""

    check: str
    output: str

    def __str__(self) -> str:
        """The check's name, then its output."""
        return f"--- {self.check} failed:\n{self.output}"


PYTEST_ARGS = ["-q", "-W", "error", "-p", "no:cacheprovider"]
# A rendered service's environment holds anyio's pytest plugin only; this
# one holds the template suite's too (xdist, schemathesis, hypothesis).
ONLY_ITS_PLUGINS = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
ITS_PLUGINS = ["-p", "anyio"]
RERUN_HEADING = "--- the failed tests again, with pytest's assertion rewriting:"


def session_args(tree: Path) -> list[str]:
    """pytest's arguments for a session in ``tree``, with a base temp folder of its own.

    pytest's clean-up of numbered folders in a shared one races with the
    other sessions running at once.
    """
    return [*PYTEST_ARGS, "--basetemp", str(tree.parent / f"{tree.name}.pytest-tmp")]


class ForkServer:
    """A warm interpreter that runs pytest sessions (or mypy) in forked children."""

    def __init__(self, *, mode: str = "pytest", mypy_cache: Path | None = None) -> None:
        """Start the server (``mode`` is ``pytest`` or ``mypy``) and wait until its warm-up is done.

        A mypy server warms up with ``mypy_cache``, the cache its requests will
        use (what the warm-up analyses is then not analysed again).
        """
        self.mode = mode
        self.cpu = 0.0
        cache = [str(mypy_cache)] if mypy_cache else []
        self._process = subprocess.Popen(
            [sys.executable, "-P", str(Path(__file__)), mode, *cache],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            msg = "the fork server stopped"
            raise RuntimeError(msg)
        return dict(json.loads(line))

    def pytest(self, tree: Path, env: Mapping[str, str]) -> Failure | None:
        """Run the tree's own tests; a failure carries pytest's output."""
        return self.start(tree, env)()

    def start(self, tree: Path, env: Mapping[str, str]) -> Callable[[], Failure | None]:
        """Start the tree's own tests; the function returned waits for their verdict."""
        return self.submit(tree, session_args(tree), env)

    def submit(self, tree: Path, args: list[str], env: Mapping[str, str]) -> Callable[[], Failure | None]:
        """Run the server's tool with ``args`` in ``tree``; the function returned waits for the verdict.

        The server runs one request at a time, in order. A verdict that is
        never asked for is skipped when the next one is read. ``cpu`` is then
        the CPU time of the request's children.
        """
        log = tree.parent / f"{tree.name}.{self.mode}.log"
        assert self._process.stdin is not None
        request = {"cwd": str(tree), "args": args, "env": dict(env), "log": str(log)}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()

        def verdict() -> Failure | None:
            result = self._read()
            while result["log"] != str(log):
                result = self._read()
            self.cpu = float(result["cpu"])
            code = result["code"]
            if code == 0:
                return None
            return Failure(self.mode if self.mode == "mypy" else f"pytest (exit {code})", log.read_text())

        return verdict

    def close(self) -> None:
        """Stop the server."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)
        self._process.stdout.close()


# ---------------------------------------------------------------------------
# The server's side
# ---------------------------------------------------------------------------

# What every rendered session imports, or those of some flags.
WARM = [
    "pytest",
    "anyio",
    "anyio.pytest_plugin",
    "fastapi",
    "pydantic",
    "pydantic.functional_serializers",
    "pydantic_settings",
    "starlette",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "httptools",
    "httpx",
    "httpcore",
    "certifi",
    "sqlalchemy",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "aiosqlite",
    "asyncpg",
    "alembic.command",
    "alembic.config",
    "tenacity",
    "prometheus_client",
    "prometheus_client.core",
    "prometheus_client.parser",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export.in_memory_span_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.instrumentation.fastapi",
    "opentelemetry.instrumentation.httpx",
    "encodings.idna",
    "pdb",
    "pkgutil",
    "unittest.mock",
]

# A session of the server's own: it loads pytest's plugins and the anyio
# backend, and what an app's start and a first request through FastAPI and
# httpx import.
WARM_UP_TEST = '''\
"""The fork server's warm-up."""

import httpx
import pytest
from fastapi import FastAPI


@pytest.mark.anyio
async def test_an_app_starts_and_stops() -> None:
    """A FastAPI app runs its lifespan, as a server runs it (ASGI's lifespan protocol)."""
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive() -> dict[str, str]:
        return events.pop(0)

    async def send(message: dict[str, str]) -> None:
        sent.append(message["type"])

    await FastAPI()({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.anyio
async def test_an_app_answers() -> None:
    """A FastAPI app answers through httpx."""
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"status": "pass"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://warm-up") as client:
        assert (await client.get("/")).json() == {"status": "pass"}
'''

WARM_UP_MODULE = '"""The fork server\'s warm-up."""\n\nCOUNT: int = 1\n'

# A session that imported anyio's plugin before pytest could mark it for
# rewriting warns so; that is this server's doing, not the rendered service's.
NOT_REWRITTEN = "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Send what is written to stdout and stderr (the protocol's channel) to nothing."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def warm_up(mode: str, mypy_cache: str | None = None) -> None:
    """Import what every rendered test session (or mypy run) imports anyway, and run one of each.

    A module that warns as it is imported is left out: imported here, its
    warning would never reach the session's ``-W error``.
    """
    with tempfile.TemporaryDirectory(prefix="fork-server-warm-up-") as folder, _quiet():
        root = Path(folder)
        if mode == "mypy":
            from mypy import api

            (root / "pyproject.toml").write_text('[tool.mypy]\nstrict = true\nplugins = ["pydantic.mypy"]\n')
            (root / "warm_up.py").write_text(WARM_UP_MODULE)
            with contextlib.chdir(root):
                api.run(["--cache-dir", mypy_cache or str(root / "cache"), "warm_up.py"])
            return
        for name in WARM:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with contextlib.suppress(ImportError, Warning):
                    importlib.import_module(name)
        (root / "test_fork_server_warm_up.py").write_text(WARM_UP_TEST)
        saved_path = list(sys.path)
        with contextlib.chdir(root):
            _run_pytest([*PYTEST_ARGS, "--basetemp", str(root / "tmp"), "test_fork_server_warm_up.py"])
        sys.path[:] = saved_path
        sys.modules.pop("test_fork_server_warm_up", None)


class _FailedTests:
    """A pytest plugin that lists the tests that failed (in setup, call or teardown), in order."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and report.nodeid not in self.ids:
            self.ids.append(report.nodeid)


def _run_pytest(args: list[str], *, rewrite: bool = False, failed: Path | None = None) -> int:
    """Run pytest with ``args`` as the rendered service's environment would: `ITS_PLUGINS` only."""
    import pytest

    os.environ.update(ONLY_ITS_PLUGINS)
    args = [*args, *ITS_PLUGINS]
    args += ["-W", NOT_REWRITTEN] if rewrite else ["--assert=plain"]
    plugin = _FailedTests()
    code = int(pytest.main(args, plugins=[plugin]))
    if failed is not None:
        failed.write_text("".join(f"{nodeid}\n" for nodeid in plugin.ids))
    return code


def _run_mypy(args: list[str]) -> int:
    from mypy import api

    out, err, code = api.run(args)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


def _fork(request: Mapping[str, Any], mode: str, args: list[str], log_flags: int, **options: Any) -> tuple[int, float]:
    """Fork a child that runs ``args`` as ``request`` says; its exit code and CPU time."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | log_flags, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(str(request["cwd"]))
            os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})
            if mode == "mypy":
                code = _run_mypy(args)
            else:
                sys.path.insert(0, os.getcwd())
                code = _run_pytest(args, **options)
        except BaseException:  # noqa: BLE001 -- the child reports any failure in its log, then exits
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def run(request: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """Run one request in a child (and a rerun of its failed tests); its exit code and CPU time."""
    args = [str(arg) for arg in request["args"]]
    if mode == "mypy":
        code, cpu = _fork(request, mode, args, os.O_TRUNC)
        return {"code": code, "cpu": cpu}
    failed = Path(f"{request['log']}.failed")
    code, cpu = _fork(request, mode, args, os.O_TRUNC, failed=failed)
    ids = failed.read_text().split("\n")[:-1] if failed.exists() else []
    failed.unlink(missing_ok=True)
    if code == 1 and ids:  # tests failed: 1 is pytest's ExitCode.TESTS_FAILED
        with open(str(request["log"]), "a") as log:
            log.write(f"\n{RERUN_HEADING}\n")
        _, rerun_cpu = _fork(request, mode, [*args, *ids], os.O_APPEND, rewrite=True)
        cpu += rerun_cpu
    return {"code": code, "cpu": cpu}


def main() -> None:
    """Serve requests until stdin closes."""
    mode = sys.argv[1] if len(sys.argv) > 1 else "pytest"
    warm_up(mode, sys.argv[2] if len(sys.argv) > 2 else None)
    # Children inherit the warm heap; frozen, the garbage collector skips
    # it, which keeps pytest's end-of-session gc.collect() cheap and the
    # pages shared instead of copied.
    gc.collect()
    gc.freeze()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if line.strip():
            request = json.loads(line)
            out.write(json.dumps({"log": request["log"], **run(request, mode)}) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
