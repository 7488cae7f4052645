"""The checks of a rendered tree: its contents, ruff and ``mypy --strict``, and what its tests need.

The deployment files' checks are in `flag_matrix.deploy`; the rendered
service's own tests run in a `flag_matrix.forkserver.ForkServer`.
"""

from __future__ import annotations

import ast
import atexit
import functools
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from flag_matrix.forkserver import Failure, ForkServer
from flag_matrix.space import Combo

BIN = Path(sys.executable).parent
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def start_check(
    check: str, args: list[str], cwd: Path, env: Mapping[str, str] | None = None
) -> Callable[[], Failure | None]:
    """Start a check in a process of its own (with ``env``, if given, as its environment);
    the function returned waits for its verdict."""
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

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
    """Import name -> distributions, of this environment (read once)."""
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


def mypy_cache() -> str:
    """The mypy cache of this process: ``MATRIX_MYPY_CACHE``, else one in the temporary folder."""
    return os.environ.get("MATRIX_MYPY_CACHE", str(Path(tempfile.gettempdir()) / "matrix-mypy-cache"))


def start_static_checks(tree: Path) -> Callable[[], list[Failure]]:
    """Start ruff's linter and formatter check and ``mypy --strict`` at once.

    They run in processes of their own while the caller does other work; the
    function returned waits for them and gives their failures.
    """
    # mypy first: it takes the longest. It runs in a warm server's child,
    # as `mypy --cache-dir CACHE` would in the tree.
    verdicts = [
        mypy_server().submit(tree, ["--cache-dir", mypy_cache()], {}),
        start_check("ruff check", [str(BIN / "ruff"), "check", "--no-cache", "."], tree),
        start_check("ruff format", [str(BIN / "ruff"), "format", "--check", "--no-cache", "."], tree),
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


@functools.cache
def mypy_server() -> ForkServer:
    """This process's warm mypy server, stopped when the process exits."""
    server = ForkServer(mode="mypy", mypy_cache=Path(mypy_cache()))
    atexit.register(server.close)
    return server
