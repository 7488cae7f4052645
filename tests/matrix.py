"""The flag matrix: every combination, how to render it, and how to check it.

Used by the suite (``test_matrix.py``) and, for one combination at a time, from
the shell::

    python tests/matrix.py client-health-v-trace-auth-metrics-sqlite
    python tests/matrix.py --keep /tmp/out database=none metrics=false
"""

from __future__ import annotations

import argparse
import ast
import atexit
import functools
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Feature flags in questionnaire order, with the short names test ids use.
FLAGS = {
    "http_client": "client",
    "health_checks": "health",
    "api_versioning": "v",
    "request_tracing": "trace",
    "opentelemetry": "otel",
    "service_auth": "auth",
    "metrics": "metrics",
}
DATABASES = {"none": "nodb", "sqlite": "sqlite", "postgresql": "pg"}
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, order=True)
class Combo:
    """One combination of the feature flags and the database."""

    database: str
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        """A test id that names the flags: ``client-health-v-trace-auth-metrics-pg``."""
        names = [short for flag, short in FLAGS.items() if flag in self.flags] or ["bare"]
        return "-".join([*names, DATABASES[self.database]])

    @property
    def data(self) -> dict[str, object]:
        """The answers to give copier."""
        return {flag: flag in self.flags for flag in FLAGS} | {"database": self.database}

    @classmethod
    def from_id(cls, combo_id: str) -> Combo:
        """Parse an id made by `id`."""
        *names, db = combo_id.split("-")
        by_short = {short: flag for flag, short in FLAGS.items()}
        by_db = {short: name for name, short in DATABASES.items()}
        flags = frozenset(by_short[name] for name in names if name != "bare")
        return cls(database=by_db[db], flags=flags)


def all_combos() -> list[Combo]:
    """Every combination: each flag on and off (``opentelemetry`` only with
    ``request_tracing``), times each database."""
    combos = []
    for values in itertools.product([False, True], repeat=len(FLAGS)):
        flags = frozenset(flag for flag, on in zip(FLAGS, values, strict=True) if on)
        if "opentelemetry" in flags and "request_tracing" not in flags:
            continue
        combos.extend(Combo(database, flags) for database in DATABASES)
    return sorted(combos, key=lambda combo: combo.id)


def snapshot(dst: Path, repo: Path = REPO) -> Path:
    """Copy the template's working tree (tracked and new files, not ignored
    ones) to ``dst``, without ``.git``.

    Copier renders the latest tag of a git repository; a plain folder is
    rendered as it is, so the suite checks the work in progress, and no
    temporary commit ends up in ``.copier-answers.yml``.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = repo / name
        if source.is_file():
            target = dst / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dst


def render(template: Path, dst: Path, data: Mapping[str, object]) -> Path:
    """Render ``template`` into ``dst`` with ``data``, without running tasks."""
    from copier import run_copy

    _speed_up_copier()
    run_copy(
        str(template),
        dst,
        data=dict(data),
        defaults=True,
        unsafe=True,
        quiet=True,
        skip_tasks=True,
    )
    return dst


_JINJA_CODE: dict[tuple[object, ...], object] = {}


def _speed_up_copier() -> None:
    """Make repeated renders in one process cheap; what is rendered stays the same.

    - Jinja code is compiled once per source (`cache_jinja_compilation`).
    - After writing each file copier asks git for ``core.fileMode`` of the
      destination, a subprocess per file, to fix the git index of a
      destination that is a git repository. The matrix renders into fresh
      folders outside git, where that is a no-op, so it is skipped.
    """
    from copier._main import Worker

    cache_jinja_compilation()
    Worker._sync_git_index_executable_bit = lambda *_: None  # type: ignore[method-assign]


def cache_jinja_compilation() -> None:
    """Compile each Jinja source once per process, wherever copier renders.

    Copier compiles every Jinja string afresh (the questionnaire's defaults
    and validators, every path and file): about half of a render, and most
    of a ``copier update``, which renders two versions. Compiled code depends
    only on the source and the environment's syntax options, so it is kept
    per source here.
    """
    import jinja2

    if getattr(jinja2.Environment.compile, "_matrix_cached", False):
        return
    compile_uncached = jinja2.Environment.compile

    def compile_cached(self, source, name=None, filename=None, raw=False, defer_init=False):  # type: ignore[no-untyped-def]
        if not isinstance(source, str):
            return compile_uncached(self, source, name, filename, raw, defer_init)
        key = (
            type(self),
            source,
            name,
            filename,
            raw,
            defer_init,
            self.trim_blocks,
            self.lstrip_blocks,
            self.keep_trailing_newline,
            self.block_start_string,
            self.variable_start_string,
        )
        if key not in _JINJA_CODE:
            _JINJA_CODE[key] = compile_uncached(self, source, name, filename, raw, defer_init)
        else:
            # Extensions reset their state in `preprocess` (copier's `yield`
            # tag does), which compiling would have run.
            self.preprocess(source, name, filename)
        return _JINJA_CODE[key]

    compile_cached._matrix_cached = True  # type: ignore[attr-defined]
    jinja2.Environment.compile = compile_cached  # type: ignore[method-assign]


@dataclass
class Failure:
    """A check that failed on a rendered tree, with what it printed."""

    check: str
    output: str

    def __str__(self) -> str:
        """The check's name, then its output."""
        return f"--- {self.check} failed:\n{self.output}"


def _start(check: str, args: list[str], cwd: Path) -> Callable[[], Failure | None]:
    """Start a check in a process of its own; the function returned waits for its verdict."""
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def verdict() -> Failure | None:
        output, _ = process.communicate()
        return None if process.returncode == 0 else Failure(check, output)

    return verdict


JINJA_MARKERS = re.compile(r"(?<!\$)\{\{|\{%|\{#|%\}|#\}")
# Loaded by name rather than imported: the database drivers by URL, uvicorn's
# HTTP parser and event loop by its --http and --loop.
LOADED_BY_NAME = {"aiosqlite", "asyncpg", "httptools", "uvloop"}


def content_checks(tree: Path) -> Iterator[Failure]:
    """What no linter sees: Jinja debris, empty files, undeclared or unused dependencies."""
    problems: list[str] = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts):
        name = path.relative_to(tree)
        text = path.read_text(errors="replace")
        if JINJA_MARKERS.search(text):
            problems.append(f"{name}: Jinja left over: {JINJA_MARKERS.search(text)[0]!r}")
        if not text.strip():
            problems.append(f"{name}: empty file")
        elif path.suffix == ".py" and not _python_facts(text).has_body:
            problems.append(f"{name}: a module with nothing in it")
    problems.extend(dependency_problems(tree))
    if problems:
        yield Failure("content", "\n".join(problems))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _canonical(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])


@dataclass(frozen=True)
class _PythonFacts:
    has_body: bool
    imports: tuple[tuple[int, str, int], ...]  # (line, module, level)


@functools.lru_cache(maxsize=4096)
def _python_facts(text: str) -> _PythonFacts:
    """What the checks read of a Python file, parsed once per distinct text.

    Most files are the same text in many combinations; the cache makes the
    checks of a worker's later trees cost a dictionary lookup per such file.
    """
    tree = ast.parse(text)
    imports: list[tuple[int, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.extend((node.lineno, alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.lineno, node.module or "", node.level))
    return _PythonFacts(bool(tree.body), tuple(imports))


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    """Import name -> distributions, of this environment (read once: 0.3 s)."""
    return importlib.metadata.packages_distributions()


def dependency_problems(tree: Path) -> Iterator[str]:
    """Every library a file imports is declared, and every runtime one is imported."""
    project = tomllib.loads((tree / "pyproject.toml").read_text())
    runtime = {_requirement_name(r) for r in project["project"]["dependencies"]}
    dev = {_requirement_name(r) for r in project.get("dependency-groups", {}).get("dev", [])}
    distributions = _distributions()
    packages = {p.name for p in (tree / "src").iterdir() if p.is_dir()}
    used: set[str] = set()
    for path in sorted(tree.rglob("*.py")):
        name = path.relative_to(tree)
        allowed = runtime | dev if name.parts[0] == "tests" else runtime
        for line, module, level in _python_facts(path.read_text()).imports:
            top = module.split(".")[0]
            if level or top in sys.stdlib_module_names or top in packages or top in {"tests", "__future__"}:
                continue
            dists = {_canonical(d) for d in distributions.get(top, [top])}
            used |= dists
            if not dists & allowed:
                yield f"{name}:{line}: imports {top!r}, which pyproject.toml does not declare"
    for requirement in sorted(runtime - used - LOADED_BY_NAME):
        yield f"pyproject.toml: depends on {requirement!r}, which no module imports"


def start_static_checks(tree: Path) -> Callable[[], list[Failure]]:
    """Start ruff's linter and formatter check and ``mypy --strict`` at once.

    They run in processes of their own while the caller does other work; the
    function returned waits for them and gives their failures.
    """
    cache = os.environ.get("MATRIX_MYPY_CACHE", str(Path(tempfile.gettempdir()) / "matrix-mypy-cache"))
    # mypy first: it takes the longest. It runs in a warm server's child,
    # as `mypy --cache-dir CACHE` would in the tree.
    verdicts = [
        _mypy_server().submit(tree, ["--cache-dir", cache], {}),
        _start("ruff check", [str(BIN / "ruff"), "check", "--no-cache", "."], tree),
        _start("ruff format", [str(BIN / "ruff"), "format", "--check", "--no-cache", "."], tree),
    ]
    return lambda: [failure for verdict in verdicts if (failure := verdict())]


def static_checks(tree: Path) -> Iterator[Failure]:
    """Run ruff's linter and formatter check and ``mypy --strict``."""
    yield from start_static_checks(tree)()


def test_env(combo: Combo, postgres_url: str | None) -> dict[str, str]:
    """What the rendered tests need from their environment."""
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    if combo.database == "postgresql" and postgres_url:
        env["DATABASE_URL"] = postgres_url
    return env


PYTEST_ARGS = ["-q", "-W", "error", "-p", "no:cacheprovider"]


class ForkServer:
    """A warm interpreter that runs pytest sessions (or mypy) in forked children."""

    def __init__(self, rewrite_cache: Path = REPO / ".cache" / "pytest-rewrite", *, mode: str = "pytest") -> None:
        """Start the server and wait until its imports are done.

        ``mode`` is ``pytest`` or ``mypy``. ``rewrite_cache`` keeps pytest's
        rewritten test modules by content (``forkserver.cache_rewrites``);
        servers may share it.
        """
        self.mode = mode
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkserver.py")), mode, str(rewrite_cache)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()

    def _read(self) -> dict[str, object]:
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
        # A base temp folder of its own: pytest's clean-up of numbered folders
        # in the shared one races with the other sessions running at once.
        args = [*PYTEST_ARGS, "--basetemp", str(tree.parent / f"{tree.name}.pytest-tmp")]
        return self.submit(tree, args, env)

    def submit(self, tree: Path, args: list[str], env: Mapping[str, str]) -> Callable[[], Failure | None]:
        """Run the server's tool with ``args`` in ``tree``; the function returned waits for the verdict.

        The server runs one request at a time, in order. A verdict that is
        never asked for is skipped when the next one is read.
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
            self.cpu = float(result["cpu"])  # type: ignore[arg-type]
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


@functools.cache
def _mypy_server() -> ForkServer:
    server = ForkServer(mode="mypy")
    atexit.register(server.close)
    return server


def main() -> int:
    """Render one combination and run every check on it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("combo", nargs="*", help="a combination id, or answers as NAME=VALUE")
    parser.add_argument("--keep", type=Path, help="render into this folder and keep it")
    args = parser.parse_args()
    data: dict[str, object] = {}
    combo = Combo("sqlite", frozenset(flag for flag in FLAGS if flag != "opentelemetry"))
    for item in args.combo:
        if "=" in item:
            key, value = item.split("=", 1)
            data[key] = {"true": True, "false": False}.get(value.lower(), value)
        else:
            combo = Combo.from_id(item)
    data = combo.data | data
    work = Path(tempfile.mkdtemp(prefix="matrix-"))
    tree = args.keep or work / "service"
    if tree.exists():
        shutil.rmtree(tree)
    render(snapshot(work / "template"), tree, data)
    print(f"rendered {data} into {tree}")
    failures = [*content_checks(tree), *static_checks(tree)]
    server = ForkServer()
    try:
        postgres = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        env = test_env(Combo(str(data["database"])), postgres)
        failures.extend(filter(None, [server.pytest(tree, env)]))
    finally:
        server.close()
    for failure in failures:
        print(failure)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
