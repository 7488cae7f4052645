"""The other Pythons the rendered tests run on: found on the machine, each with the locked environment."""

from __future__ import annotations

import subprocess

import pytest

from flag_matrix import pythons


@pytest.mark.parametrize("version", pythons.OTHER_VERSIONS)
def test_each_environment_is_that_python_with_the_locked_libraries(version: str) -> None:
    """The environment's interpreter is of that version and imports what the rendered services import."""
    python = pythons.environment(version)
    done = subprocess.run(
        [str(python), "-c", "import sys, fastapi, sqlalchemy, pytest; print(*sys.version_info[:2], sep='.')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, version), done.stderr


def test_a_python_the_machine_lacks_is_an_error_that_says_how_to_install_it() -> None:
    """No silent skip: a missing version fails, naming the command that installs it."""
    with pytest.raises(LookupError, match=r"no Python 3\.99 on this machine.*`uv python install 3\.99`"):
        pythons.interpreter("3.99")
