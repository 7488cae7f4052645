"""The fork server runs a rendered tree's tests as pytest would, and keeps rewritten test modules by content."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """The rewrite cache of the test's server."""
    return tmp_path / "rewrite-cache"


@pytest.fixture
def server(cache: Path) -> Iterator[matrix.ForkServer]:
    """A fork server with a rewrite cache of its own."""
    server = matrix.ForkServer(rewrite_cache=cache)
    yield server
    server.close()


def test_kept_rewrite_explains_the_failure_in_its_own_tree(
    server: matrix.ForkServer, cache: Path, tmp_path: Path
) -> None:
    """The second tree gets the first one's rewritten module, with its own file name and source lines."""
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
        assert len(list(cache.iterdir())) == 1  # kept once, then reused


def test_a_rewrite_that_warns_warns_every_time(server: matrix.ForkServer, cache: Path, tmp_path: Path) -> None:
    """Under ``-W error`` a rewrite warning fails every session that imports the module, not only the first."""
    for name in ("first", "second"):
        failure = server.pytest(write_tree(tmp_path / name, ALWAYS_TRUE), {})
        assert failure is not None
        assert "assertion is always true" in failure.output
    assert list(cache.iterdir()) == []
