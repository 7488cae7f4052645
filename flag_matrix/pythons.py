"""The other Pythons a rendered service supports, each with the suite's locked environment.

The rendered CI runs the service's tests on every version from its lowest
(the ``python_version`` answer) to the newest the template supports, so the
suite runs those of the service with every flag there too; the matrix runs
on the suite's own interpreter. `environment` gives, for another version, an
interpreter found on this machine with the same locked dependencies
(``uv.lock``), in ``.cache/python-<version>``, made once and shared by the
workers.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from flag_matrix.checks import BIN, start_check
from flag_matrix.forkserver import ITS_PLUGINS, ONLY_ITS_PLUGINS, Failure, session_args
from flag_matrix.space import REPO, SPACE

# The versions that copier.yml's python_version offers, the suite's own left out.
OTHER_VERSIONS = [
    str(version)
    for version in SPACE.questions["python_version"]["choices"]
    if str(version) != f"{sys.version_info.major}.{sys.version_info.minor}"
]


def interpreter(version: str) -> Path:
    """A Python ``version`` of this machine: the one ``uv python find`` finds, else pyenv's.

    ``LookupError`` when there is none, saying how to install one: the suite
    does not pass without each version the rendered CI tests on.
    """
    found = subprocess.run([str(BIN / "uv"), "python", "find", version], capture_output=True, text=True, check=False)
    if found.returncode == 0:
        return Path(found.stdout.strip())
    # pyenv's shims answer only for the versions pyenv has chosen; its prefix for any installed.
    if shutil.which("pyenv"):
        prefix = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True, check=False)
        python = Path(prefix.stdout.strip()) / "bin" / f"python{version}"
        if prefix.returncode == 0 and python.exists():
            return python
    msg = (
        f"no Python {version} on this machine: the suite runs the rendered tests on it, as the rendered CI does; "
        f"install it with `uv python install {version}` (or `pyenv install {version}`)"
    )
    raise LookupError(msg)


@functools.cache
def environment(version: str) -> Path:
    """The interpreter of the suite's locked environment for Python ``version``, made if need be.

    ``uv sync --locked`` into ``.cache/python-<version>``, under a lock: a
    worker that finds another making it waits, then uses it. Once per process.
    """
    folder = REPO / ".cache" / f"python-{version}"
    folder.parent.mkdir(exist_ok=True)
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(folder)}
        env.pop("VIRTUAL_ENV", None)
        done = subprocess.run(
            [str(BIN / "uv"), "sync", "--locked", "--quiet", "--python", str(interpreter(version))],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        msg = f"uv sync for Python {version} failed:\n{done.stderr}"
        raise RuntimeError(msg)
    return folder / "bin" / "python"


def start_tests(version: str, tree: Path, env: Mapping[str, str]) -> Callable[[], Failure | None]:
    """Start the tree's own tests on Python ``version``, as ``pytest`` in the tree would run them;
    the function returned waits for the verdict.

    Only anyio's plugin is loaded, as in the rendered service's environment.
    """
    args = [str(environment(version)), "-m", "pytest", *session_args(tree), *ITS_PLUGINS]
    return start_check(f"pytest on Python {version}", args, tree, {**os.environ, **env, **ONLY_ITS_PLUGINS})
