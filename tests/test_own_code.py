"""The template's own Python (suite, benchmarks, copier hooks, release script) meets the bar its services meet."""

from __future__ import annotations

import re
import subprocess

import pytest

import flag_matrix as matrix

OWN_CODE = ["flag_matrix", "tests", "benchmarks", "hooks", "scripts"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command: list[str]) -> None:
    """``ruff check`` and ``ruff format --check`` find nothing in the template's own code."""
    result = subprocess.run(
        [str(matrix.BIN / "ruff"), *command, "--no-cache", *OWN_CODE],
        cwd=matrix.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readmes_test_command() -> None:
    """``.ci/run`` runs the second console block of README.md, the template's test command, which runs pytest."""
    printed = subprocess.run(
        ["bash", str(matrix.REPO / ".ci" / "run"), "--print"], capture_output=True, text=True, check=True
    ).stdout
    blocks = re.findall(r"^```console\n(.*?)^```$", (matrix.REPO / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    assert printed == blocks[1]
    assert printed.split()[:3] == ["uv", "run", "pytest"]
