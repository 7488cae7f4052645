"""Write or refresh the service's ``uv.lock``, so that each of its commits is complete.

Run in the service's root by copier's ``_tasks`` after a copy (before the
first commit, which then holds the lock) and by a ``_migrations`` entry after
each update (the dependencies may have changed)::

    python hooks/uv_lock.py

``uv lock`` resolves ``pyproject.toml`` into ``uv.lock``, which the image, CI
(``uv sync --locked``) and every developer install from. Without uv, offline,
or with conflict markers left in ``pyproject.toml``, it says what to run and
succeeds: the render or the update is complete all the same. Standard
library only, because it runs in copier's interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PYPROJECT = Path("pyproject.toml")
LOCK = Path("uv.lock")
CONFLICT = re.compile(r"^(<{7}|>{7})( |$)", re.MULTILINE)


def find_uv() -> str | None:
    """The uv that runs copier (``uvx`` sets ``UV``), else the one on ``PATH``."""
    given = os.environ.get("UV", "")
    return given if given and Path(given).is_file() else shutil.which("uv")


# Copier's own virtual environment, and settings that forbid writing the lock.
IGNORED = {"VIRTUAL_ENV", "UV_LOCKED", "UV_FROZEN"}


def lock(uv: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``uv lock`` here, as if from a shell in this folder."""
    env = {name: value for name, value in os.environ.items() if name not in IGNORED}
    return subprocess.run([uv, "lock", *extra], capture_output=True, text=True, check=False, env=env)


def last_line(output: str) -> str:
    """The last line of ``output`` that says something."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def main() -> int:
    """Lock the dependencies; say what was done, or what to run."""
    if not PYPROJECT.is_file():
        return 0
    if CONFLICT.search(PYPROJECT.read_text(encoding="utf-8")):
        print("pyproject.toml has conflict markers: resolve them, then run `uv lock` and commit uv.lock.")
        return 0
    uv = find_uv()
    if uv is None:
        print("uv is not installed, so uv.lock was not written: install uv, run `uv lock` and commit uv.lock.")
        return 0
    before = LOCK.read_bytes() if LOCK.is_file() else None
    done = lock(uv)
    if done.returncode:
        # Offline, the packages uv has already downloaded may be enough.
        offline = lock(uv, "--offline")
        if offline.returncode:
            print(f"`uv lock` failed ({last_line(done.stderr)}): run `uv lock` once online, and commit uv.lock.")
            return 0
    after = LOCK.read_bytes() if LOCK.is_file() else None
    if after != before:
        print("Wrote uv.lock." if before is None else "Updated uv.lock to the new dependencies: commit it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
