"""The template's history in a scratch clone, released as ``scripts/release.py`` releases it.

A clone of the template's repository with the working tree committed on top
as ``HEAD``, so that the suite tests the work in progress with the history a
user's clone has, and its tags made by the repository's own script.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import flag_matrix as matrix
import release

# The suite's own commits name their author for that command only: the tests
# run with no git identity configured, as on a fresh machine.
IDENTITY = ["-c", "user.name=Suite", "-c", "user.email=suite@example.com"]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` as the suite; fail with git's message if it fails."""
    done = subprocess.run(["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def clone(dst: Path) -> Path:
    """A clone of the template's history at ``dst``, without tags, the working tree committed on top."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", "--no-tags", str(matrix.REPO), str(dst)], check=True)
    git(dst, "rm", "-r", "--quiet", "--ignore-unmatch", ".")
    matrix.snapshot(dst)
    git(dst, "add", "--all")
    git(dst, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", "The working tree")
    return dst


def versions() -> list[str]:
    """The releases of the working tree's changelog, newest first."""
    return release.versions((matrix.REPO / release.CHANGELOG).read_text(encoding="utf-8"))


def next_version(repo: Path) -> str:
    """The minor version after the newest release of ``repo``'s changelog."""
    newest = release.versions((repo / release.CHANGELOG).read_text(encoding="utf-8"))[0]
    major, minor, _ = newest.split(".")
    return f"{major}.{int(minor) + 1}.0"


def cut(repo: Path, version: str, message: str | None = None) -> str:
    """Release what ``## [Unreleased]`` holds as ``version``, as a maintainer does; the commit."""
    changelog = repo / release.CHANGELOG
    text = changelog.read_text(encoding="utf-8")
    assert "\n## [Unreleased]\n" in text, f"{changelog} has no Unreleased section"
    changelog.write_text(text.replace("\n## [Unreleased]\n", f"\n## [Unreleased]\n\n## [{version}] - 2026-12-01\n", 1))
    git(repo, "commit", "--quiet", "--all", "--no-verify", "-m", message or f"Release {version}")
    return git(repo, "rev-parse", "HEAD").strip()


def tag_releases(repo: Path) -> subprocess.CompletedProcess[str]:
    """Run the clone's own ``scripts/release.py``."""
    script = repo / "scripts" / "release.py"
    return subprocess.run([sys.executable, str(script)], cwd=repo, capture_output=True, text=True, check=False)
