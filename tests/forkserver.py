"""Run pytest sessions, or mypy, in forked children of one warm interpreter.

Importing FastAPI, pydantic, SQLAlchemy and friends costs about two seconds,
far more than the rendered service's own tests take. This server pays that
once: it imports them, then forks a child for each request, which changes
into the rendered tree and runs ``pytest`` there as if from its shell. The
child imports the rendered package itself afresh, so nothing of one tree
leaks into another.

In ``mypy`` mode it does the same for ``mypy``: a third of a mypy run on a
rendered tree is the interpreter starting and importing mypy and the
pydantic plugin, which the server does once. Each child runs mypy's own
entry point in the tree, with the tree's configuration, as the command does.

Protocol: one JSON object per line on stdin, ``{"cwd", "args", "env", "log"}``;
one line back on stdout per request, ``{"log", "code": <exit code>, "cpu": <seconds>}``.

Usage: ``python forkserver.py pytest [REWRITE_CACHE_DIR]`` (see
`cache_rewrites`), or ``python forkserver.py mypy``.
"""

import contextlib
import gc
import hashlib
import importlib
import json
import marshal
import os
import sys
import tempfile
import time
import traceback
import types
import warnings
from pathlib import Path

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


# What a mypy run on a rendered tree imports: mypy, its parser, the pydantic
# plugin the trees configure, and what those import as they run.
WARM_MYPY = [
    "mypy.api",
    "mypy.main",
    "mypy.build",
    "mypy.nativeparse",
    "pydantic.mypy",
    "sqlite3",
    "decimal",
    "fractions",
    "sysconfig",
]


def warm_up(mode: str) -> None:
    """Import what every rendered test session (or mypy run) imports anyway.

    A module that warns as it is imported is left out: imported here, its
    warning would never reach the session's ``-W error``.
    """
    if mode == "mypy":
        for name in WARM_MYPY:
            importlib.import_module(name)
        return
    from _pytest.config import default_plugins

    for name in [*WARM, *(f"_pytest.{plugin}" for plugin in default_plugins)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with contextlib.suppress(ImportError, Warning):
                importlib.import_module(name)


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    """``code`` and the code objects nested in it, as if compiled from ``filename``."""
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def cache_rewrites(folder: Path) -> None:
    """Keep pytest's rewritten test modules by content, across trees.

    pytest rewrites the asserts of each test module it imports (an AST pass
    and a compile: about a sixth of a rendered session) and keeps the result
    as a ``.pyc`` beside the module, keyed by the source's hash. Every tree
    here is new, so that cache never hits, though most test modules are the
    same bytes in many combinations. This keeps the same result keyed by the
    source's SHA-256, pytest's and Python's versions and the one setting the
    rewrite reads (``enable_assertion_pass_hook``), and gives it the module's
    own file name. A rewrite that warns is not kept, so its warning reaches
    every session that imports the module.
    """
    import pytest
    from _pytest.assertion import rewrite

    rewrite_uncached = rewrite._rewrite_test
    folder.mkdir(parents=True, exist_ok=True)

    def rewrite_cached(fn: Path, config: pytest.Config) -> tuple[bytes, types.CodeType]:
        source = fn.read_bytes()
        key = hashlib.sha256(
            repr((pytest.__version__, sys.version, bool(config.getini("enable_assertion_pass_hook")))).encode() + source
        ).hexdigest()
        kept = folder / f"{key}.marshal"
        try:
            source_hash, code = marshal.loads(kept.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                source_hash, code = rewrite_uncached(fn, config)
            for warning in caught:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            if not caught:
                with tempfile.NamedTemporaryFile(dir=folder, delete=False) as file:
                    file.write(marshal.dumps((source_hash, code)))
                os.replace(file.name, kept)
            return source_hash, code
        with contextlib.suppress(OSError):
            os.utime(kept)  # its modification time is its last use, for `prune_rewrites`
        return source_hash, _with_filename(code, str(fn))

    rewrite._rewrite_test = rewrite_cached


# A kept rewrite unused for this long is dropped (its module has changed since).
UNUSED_FOR = 30 * 24 * 3600


def prune_rewrites(folder: Path, now: float, unused_for: float = UNUSED_FOR) -> None:
    """Drop the rewrites that no session has used for ``unused_for`` seconds.

    Each version of a test module ever rendered leaves one file; those of
    modules the template has since changed would otherwise stay for good.
    """
    for kept in folder.glob("*.marshal"):
        with contextlib.suppress(OSError):  # another worker may prune it first
            if now - kept.stat().st_mtime > unused_for:
                kept.unlink()


def _pytest(args: list[str], rewrite_cache: Path) -> int:
    import pytest

    cache_rewrites(rewrite_cache)
    # Plugins such as anyio's were imported above, before pytest could
    # mark them for assertion rewriting; that warning is this server's
    # doing, not the rendered service's, so it alone is silenced.
    args += ["-W", "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"]
    # This environment also holds the template suite's own plugins
    # (xdist, schemathesis, hypothesis), which a rendered service does
    # not install; load only what its environment would: anyio's.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    args += ["-p", "anyio"]
    return int(pytest.main(args))


def _mypy(args: list[str]) -> int:
    from mypy import api

    out, err, code = api.run(args)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


def run(request: dict[str, object], mode: str, rewrite_cache: Path) -> dict[str, object]:
    """Fork a child that runs one pytest session (or mypy); return its exit code and CPU time."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(str(request["cwd"]))
            os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[arg-type]
            args = [str(arg) for arg in request["args"]]  # type: ignore[union-attr]
            if mode == "mypy":
                code = _mypy(args)
            else:
                sys.path.insert(0, os.getcwd())
                code = _pytest(args, rewrite_cache)
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
    mode = sys.argv[1] if len(sys.argv) > 1 else "pytest"
    if len(sys.argv) > 2:
        rewrite_cache = Path(sys.argv[2])
    else:
        rewrite_cache = Path(tempfile.gettempdir()) / f"rewrite-cache-{os.getuid()}"
    if mode == "pytest":
        prune_rewrites(rewrite_cache, time.time())
    warm_up(mode)
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
            out.write(json.dumps({"log": request["log"], **run(request, mode, rewrite_cache)}) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
