"""Run pytest sessions in forked children of one warm interpreter.

Importing FastAPI, pydantic, SQLAlchemy and friends costs about two seconds,
far more than the rendered service's own tests take. This server pays that
once: it imports them, then forks a child for each request, which changes
into the rendered tree and runs ``pytest`` there as if from its shell. The
child imports the rendered package itself afresh, so nothing of one tree
leaks into another.

Protocol: one JSON object per line on stdin, ``{"cwd", "args", "env", "log"}``;
one line back on stdout per request, ``{"code": <pytest exit code>}``.
"""

import contextlib
import gc
import importlib
import json
import os
import sys
import traceback
import warnings

WARM = [
    "pytest",
    "_pytest.python_api",
    "anyio",
    "fastapi",
    "pydantic",
    "pydantic_settings",
    "starlette",
    "uvicorn",
    "httpx",
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
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation.fastapi",
    "opentelemetry.instrumentation.httpx",
    # Imported on first use, by every session or by those of some flags: the
    # anyio plugin and backend, httpx's default transport, uvicorn's protocols,
    # the OTLP exporter (protobuf), the Prometheus text parser, pydantic.v1
    # (FastAPI's compatibility layer).
    "anyio.pytest_plugin",
    "anyio._backends._asyncio",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "httpcore",
    "certifi",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.auto",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk.trace.export.in_memory_span_exporter",
    "prometheus_client.parser",
    "pydantic.v1",
    "encodings.idna",
    "fastapi.telemetry._runtime",
    "prometheus_client.core",
    # What pytest's own plugins import as a session starts.
    "pdb",
    "faulthandler",
]


def warm_up() -> None:
    """Import what every rendered test session imports anyway.

    A module that warns as it is imported is left out: imported here, its
    warning would never reach the session's ``-W error``.
    """
    from _pytest.config import default_plugins

    for name in [*WARM, *(f"_pytest.{plugin}" for plugin in default_plugins)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with contextlib.suppress(ImportError, Warning):
                importlib.import_module(name)


def run(request: dict[str, object]) -> dict[str, object]:
    """Fork a child that runs one pytest session; return its exit code and CPU time."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(str(request["cwd"]))
            os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[arg-type]
            sys.path.insert(0, os.getcwd())
            import pytest

            # Plugins such as anyio's were imported above, before pytest could
            # mark them for assertion rewriting; that warning is this server's
            # doing, not the rendered service's, so it alone is silenced.
            args = [str(arg) for arg in request["args"]]  # type: ignore[union-attr]
            args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
            # This environment also holds the template suite's own plugins
            # (xdist, schemathesis, hypothesis), which a rendered service does
            # not install; load only what its environment would: anyio's.
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
            args += ["-p", "anyio"]
            code = int(pytest.main(args))
        except BaseException:  # noqa: BLE001 -- the child reports any failure in its log, then exits
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    return {"code": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime}


def main() -> None:
    """Serve requests until stdin closes."""
    warm_up()
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
            out.write(json.dumps(run(json.loads(line))) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
