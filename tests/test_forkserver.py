"""The fork server runs a rendered tree's tests as pytest would, and shows a failure's full assertion."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import flag_matrix as matrix
from flag_matrix.forkserver import RERUN_HEADING

TESTS = """\
def helper():
    return [1, 2]


def test_lists():
    assert helper() == [1, 3]


def test_passes():
    assert helper() == [1, 2]
"""

PASSING = """\
import sys


def test_nothing_of_the_warm_up_is_left():
    assert "test_fork_server_warm_up" not in sys.modules
    assert not [path for path in sys.path if "fork-server-warm-up" in path]
"""


def write_tree(root: Path, text: str) -> Path:
    """A tree holding one test module with ``text``."""
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_a.py").write_text(text)
    return root


@pytest.fixture(scope="module")
def server() -> Iterator[matrix.ForkServer]:
    """A fork server of the module's own."""
    server = matrix.ForkServer()
    yield server
    server.close()


def test_a_failure_shows_the_compared_values(server: matrix.ForkServer, tmp_path: Path) -> None:
    """A failed test runs again with assertion rewriting: the report shows both sides and where they differ."""
    failure = server.pytest(write_tree(tmp_path / "tree", TESTS), {})
    assert failure is not None
    assert failure.check == "pytest (exit 1)"
    first, rerun = failure.output.split(RERUN_HEADING)
    assert "1 failed, 1 passed" in first  # the session's own verdict, every test run once
    assert "assert [1, 2] == [1, 3]" in rerun
    assert "At index 1 diff: 2 != 3" in rerun
    assert ">       assert helper() == [1, 3]" in rerun
    assert "tests/test_a.py:6: AssertionError" in rerun
    assert "1 failed in" in rerun  # only the failed test again


def test_a_passing_session_is_clean_and_runs_once(server: matrix.ForkServer, tmp_path: Path) -> None:
    """A session that passes is no failure, and the server's warm-up left nothing in its way."""
    tree = write_tree(tmp_path / "tree", PASSING)
    assert server.pytest(tree, {}) is None
    assert RERUN_HEADING not in (tmp_path / "tree.pytest.log").read_text()


def test_a_collection_error_is_reported_once(server: matrix.ForkServer, tmp_path: Path) -> None:
    """A module that cannot be imported fails the session, with no rerun."""
    failure = server.pytest(write_tree(tmp_path / "tree", "import not_a_module_anywhere\n"), {})
    assert failure is not None
    assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in failure.output
    assert RERUN_HEADING not in failure.output


def test_mypy_server_judges_as_the_command_does(tmp_path: Path) -> None:
    """mypy in the server's child reads the tree's configuration and fails on a type error, with its message."""
    server = matrix.mypy_server()  # the worker's own, with its warm cache
    cache = os.environ["MATRIX_MYPY_CACHE"]
    for name, value, clean in (("typed", "1", True), ("mistyped", '"one"', False)):
        tree = tmp_path / name
        (tree / "src").mkdir(parents=True)
        (tree / "pyproject.toml").write_text('[tool.mypy]\nstrict = true\nfiles = ["src"]\n')
        (tree / "src" / "module.py").write_text(f'"""A module."""\n\nCOUNT: int = {value}\n')
        failure = server.submit(tree, ["--cache-dir", cache], {})()
        if clean:
            assert failure is None
        else:
            assert failure is not None
            assert failure.check == "mypy"
            assert (
                'src/module.py:3: error: Incompatible types in assignment (expression has type "str"' in failure.output
            )
