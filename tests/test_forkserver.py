"""The fork server runs a rendered tree's tests as pytest would, and keeps rewritten test modules by content."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import forkserver
import matrix

FAILING = """\
def helper():
    return [1, 2]


def test_lists():
    assert helper() == [1, 3]
"""

# pytest warns while rewriting this module: the assert is always true.
ALWAYS_TRUE = """\
def test_tuple():
    assert (1 == 2, "a tuple is always true")
"""


def write_tree(root: Path, text: str) -> Path:
    """A tree holding one test module with ``text``."""
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_a.py").write_text(text)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rewrite cache of the module's server."""
    return tmp_path_factory.mktemp("rewrite-cache")


@pytest.fixture(scope="module")
def server(cache: Path) -> Iterator[matrix.ForkServer]:
    """A fork server with a rewrite cache of its own."""
    server = matrix.ForkServer(rewrite_cache=cache)
    yield server
    server.close()


def test_kept_rewrite_explains_the_failure_in_its_own_tree(
    server: matrix.ForkServer, cache: Path, tmp_path: Path
) -> None:
    """The second tree gets the first one's rewritten module, with its own file name and source lines."""
    kept = set(cache.iterdir())
    for name in ("first", "second"):
        tree = write_tree(tmp_path / name, FAILING)
        failure = server.pytest(tree, {})
        # Gone, the first tree cannot lend the second its source lines.
        shutil.rmtree(tree)
        assert failure is not None
        assert "assert [1, 2] == [1, 3]" in failure.output  # the rewritten assert's explanation
        assert "At index 1 diff: 2 != 3" in failure.output
        assert ">       assert helper() == [1, 3]" in failure.output
        assert "tests/test_a.py:6: AssertionError" in failure.output
        assert len(set(cache.iterdir()) - kept) == 1  # kept once, then reused


def test_a_rewrite_that_warns_warns_every_time(server: matrix.ForkServer, cache: Path, tmp_path: Path) -> None:
    """Under ``-W error`` a rewrite warning fails every session that imports the module, not only the first."""
    kept = set(cache.iterdir())
    for name in ("first", "second"):
        failure = server.pytest(write_tree(tmp_path / name, ALWAYS_TRUE), {})
        assert failure is not None
        assert "assertion is always true" in failure.output
    assert set(cache.iterdir()) == kept


def test_rewrites_unused_for_a_month_are_dropped(server: matrix.ForkServer, cache: Path, tmp_path: Path) -> None:
    """A session's use keeps a rewrite; one that no session used for 30 days goes at the next server start."""
    server.pytest(write_tree(tmp_path / "used", FAILING), {})
    used = max(cache.glob("*.marshal"), key=lambda path: path.stat().st_mtime)  # kept or used just now
    stale = cache / f"{'0' * 64}.marshal"
    stale.write_bytes(b"")
    month_ago = time.time() - forkserver.UNUSED_FOR - 60
    for path in (used, stale):
        os.utime(path, (month_ago, month_ago))
    server.pytest(write_tree(tmp_path / "again", FAILING), {})  # uses `used` again
    forkserver.prune_rewrites(cache, time.time())
    assert not stale.exists()
    assert used.exists()


def test_mypy_server_judges_as_the_command_does(tmp_path: Path) -> None:
    """mypy in the server's child reads the tree's configuration and fails on a type error, with its message."""
    server = matrix._mypy_server()  # the worker's own, with its warm cache
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
