"""Fixtures of the template's suite: a snapshot to render, a warm fork server, PostgreSQL."""

from __future__ import annotations

import os
import resource
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import flag_matrix as matrix
from flag_matrix.machine import reference_seconds

# Tests that take several seconds each (copier update in git repositories, a
# served app under schemathesis, a fault drill, copier at a real prompt...).
SLOW = {
    "tests/test_update.py",
    "tests/test_update_safety.py",
    "tests/test_migrations.py",
    "tests/test_release.py",
    "tests/test_schemathesis.py",
    "tests/test_fault_drill.py",
    "tests/test_server_stack.py",
    "tests/test_dependency_faults.py",
    "tests/test_questionnaire.py::test_the_questionnaire_reads_whole_at_80_columns",
    "tests/test_content_checks.py::test_fast_render_matches_copier",
    "tests/test_matrix.py::test_newer_python_version",  # a cold mypy cache per version
    "tests/test_matrix.py::test_tests_pass_on_each_python",  # an environment per version
    "tests/test_pythons.py::test_each_environment_is_that_python_with_the_locked_libraries",
}


# Where the rendered trees go when neither TMPDIR nor --basetemp says.
MEMORY = Path("/dev/shm")


def in_memory(folder: Path) -> bool:
    """Whether ``folder`` is a writable tmpfs mount with room for a run (1 GiB)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
        free = os.statvfs(folder)
    except OSError:
        return False
    mounted = any(line.split()[1:3] == [str(folder), "tmpfs"] for line in mounts)
    return mounted and os.access(folder, os.W_OK) and free.f_bavail * free.f_frsize >= 2**30


def pytest_configure(config: pytest.Config) -> None:
    """Write the rendered trees to memory where the machine has a tmpfs.

    Each combination writes a few hundred files (the tree, its SQLite
    database, its tests' temporary files); on a disk file system, creating
    them costs kernel time (ext4 allocating inodes) that a tmpfs does not.
    A ``TMPDIR`` or ``--basetemp`` the user gives wins, and so does a
    worker's, which the controller has already chosen.
    """
    if config.option.basetemp is None and "TMPDIR" not in os.environ and in_memory(MEMORY):
        os.environ["TMPDIR"] = str(MEMORY)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def gray_rank(combo: matrix.Combo) -> tuple[int, int]:
    """Where ``combo`` stands in a Gray code over the flags, its databases side by side.

    Next to each other in that order, two combinations differ in one flag, or
    only in their database: a worker's trees one after another share most of
    their files (mypy's cache and the content checks' parse cache key on them).
    """
    flags = list(combo.space.flags)
    bits = sum(1 << i for i, flag in enumerate(flags) if flag in combo.flags)
    rank = 0
    while bits:  # the position of a Gray code: the prefix XOR of its bits
        rank ^= bits
        bits >>= 1
    return rank, list(combo.space.databases).index(combo.database)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest tests first, then the matrix in an order that suits mypy's cache.

    xdist hands tests out in this order, in runs of neighbours to each worker;
    a long one left for the end would keep one core busy while the other
    idles, so the slow tests go first and the short ones last, and the
    combinations, a few seconds each, go between in `gray_rank` order.
    """

    def order(item: pytest.Item) -> tuple[int, tuple[int, int]]:
        name = item.nodeid.split("[")[0]
        if name in SLOW or name.split("::")[0] in SLOW:
            return 0, (0, 0)
        params = item.callspec.params if hasattr(item, "callspec") else {}
        combo = params.get("combo") or ("combo_id" in params and matrix.Combo.from_id(params["combo_id"]))
        if isinstance(combo, matrix.Combo):
            return 1, gray_rank(combo)
        return 2, (0, 0)

    items.sort(key=order)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the template's working tree, as copier will render it."""
    return matrix.snapshot(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def fork_server() -> Iterator[matrix.ForkServer]:
    """One warm interpreter per worker that runs rendered test sessions."""
    server = matrix.ForkServer()
    yield server
    server.close()


@pytest.fixture(scope="session", autouse=True)
def _mypy_cache() -> None:
    """A mypy cache per worker: third-party stubs are analysed once, not per tree."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    cache = matrix.REPO / ".cache" / f"mypy-{worker}"
    os.environ["MATRIX_MYPY_CACHE"] = str(cache)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server for ``database=postgresql`` combinations.

    ``TEST_POSTGRES_URL`` overrides the default. Where none answers, those
    combinations are skipped with the reason, except under ``CI=true``, where
    a missing server is a failure.
    """
    url = os.environ.get("TEST_POSTGRES_URL", matrix.DEFAULT_POSTGRES_URL)
    where = urlsplit(url.replace("+asyncpg", ""))
    try:
        socket.create_connection((where.hostname or "127.0.0.1", where.port or 5432), timeout=3).close()
    except OSError as error:
        reason = f"no PostgreSQL server answers at {where.hostname}:{where.port} ({error}); set TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


def pytest_xdist_auto_num_workers() -> int:
    """One worker more than the machine has cores, for ``-n auto``.

    Each worker waits on what it starts (a tree's tests, mypy, ruff, deptry,
    PostgreSQL's round trips): one more keeps the cores busy meanwhile.
    """
    return (os.cpu_count() or 1) + 1


STARTED = pytest.StashKey[float]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note when the run began, for its summary."""
    session.config.stash[STARTED] = time.monotonic()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The run's wall and CPU time, and how fast the machine is, as CONTRIBUTING.md's figures give them.

    The CPU time is the suite's processes' (this one, its workers and what
    they started, all ended by now), not that of the servers they talked to.
    """
    if hasattr(config, "workerinput") or STARTED not in config.stash:
        return
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    wall = time.monotonic() - config.stash[STARTED]
    reference = reference_seconds()
    terminalreporter.write_line(
        f"suite: {wall:.0f} s wall, {cpu:.0f} s of CPU; this machine's reference loop:"
        f" {reference:.2f} s of CPU (CPU / reference: {cpu / reference:.0f})"
    )
