"""What every benchmark shares: the template to render, a rendered tree, figures.

Every benchmark renders from a snapshot of ``--template PATH`` (by default this
repository), with the same ``snapshot()`` and ``render()`` as the template's
own suite, so a branch's work in progress can be measured before it is merged.
"""

from __future__ import annotations

import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import flag_matrix as matrix
from flag_matrix.machine import reference_seconds

REPO = matrix.REPO

# The rendered service's package under the default answers.
PACKAGE = "example_service"


def machine() -> str:
    """One line that says where the figures were measured."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()},"
        f" load average {load} at start, reference loop {reference_seconds():.2f} s of CPU"
    )


def header(title: str) -> None:
    """Print a benchmark's title."""
    print(f"\n=== {title} ===", flush=True)


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def table(rows: Sequence[Sequence[object]], head: Sequence[str]) -> str:
    """A plain-text table, columns padded, numbers right-aligned."""
    cells = [[str(c) for c in head], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def template_snapshot(template: Path, dst: Path) -> Path:
    """A plain copy of ``template``'s working tree, as the suite renders it."""
    return matrix.snapshot(dst, template)


def default_answers() -> dict[str, object]:
    """The questionnaire's defaults: copier fills every answer not given."""
    return {}


def render_default(template: Path, work: Path) -> Path:
    """Render the default service (every default feature on) into ``work/service``."""
    snap = template_snapshot(template, work / "template")
    tree = work / "service"
    matrix.render(snap, tree, default_answers())
    return tree


def service_env(tree: Path) -> dict[str, str]:
    """The environment the rendered default service needs to start quietly."""
    return {
        "SERVICE_SECRET": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tree / 'bench.db'}",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }


def migrate(tree: Path, env: Mapping[str, str]) -> None:
    """``alembic upgrade head`` in the rendered tree, when it has migrations."""
    if (tree / "alembic.ini").exists():
        subprocess.run(
            [str(matrix.BIN / "alembic"), "upgrade", "head"],
            cwd=tree,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards unless BENCH_KEEP is set."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not os.environ.get("BENCH_KEEP"):
            subprocess.run(["rm", "-rf", str(path)], check=False)


@contextmanager
def inside_service(tree: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Import the rendered service in this process: its ``src`` on the path, its
    environment set, its folder current. All of it is undone on exit, so that
    the next benchmark in the same run sees neither this tree nor its settings.
    """
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    os.chdir(tree)
    sys.path.insert(0, str(tree / "src"))
    try:
        yield
    finally:
        sys.path.remove(str(tree / "src"))
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


class Stopwatch:
    """Wall and CPU time of a block: this process's and its waited-for children's."""

    def __enter__(self) -> Self:
        """Start."""
        self._wall = time.perf_counter()
        self._cpu = _cpu_now()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop."""
        self.wall = time.perf_counter() - self._wall
        self.cpu = _cpu_now() - self._cpu


def _cpu_now() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
