"""Copier itself: wall time of ``copier copy`` and ``copier update`` of the
default service, from the CLI, as a user runs them (tasks included, if any)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from benchmarks import common
from benchmarks.common import Stopwatch

COPIER = str(common.matrix.BIN / "copier")
# No git identity is configured here; our own commits name one on the command line.
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "init.defaultBranch=main"]
MARK = "# copier update benchmark\n"


def _sh(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True)


def _timed(args: list[str], cwd: Path) -> float:
    with Stopwatch() as watch:
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return watch.wall


def _template_repo(template: Path, repo: Path) -> None:
    """A git repository of the template's snapshot with two tags; v2 changes one file."""
    common.template_snapshot(template, repo)
    _sh([*GIT, "init", "-q"], repo)
    _sh([*GIT, "add", "-A"], repo)
    _sh([*GIT, "commit", "-qm", "v1"], repo)
    _sh([*GIT, "tag", "v1.0.0"], repo)
    with (repo / "template" / ".gitignore").open("a") as file:
        file.write(MARK)
    _sh([*GIT, "commit", "-qam", "v2"], repo)
    _sh([*GIT, "tag", "v2.0.0"], repo)


def run(template: Path, repeats: int) -> None:
    """Time ``copier copy`` from a folder and ``copier update`` from v1 to v2."""
    common.header("Copier itself (CLI)")
    with common.workdir("bench-copier-") as work:
        snap = common.template_snapshot(template, work / "template")
        copies = [
            _timed([COPIER, "copy", "--trust", "--defaults", "--quiet", str(snap), str(work / f"copy{n}")], work)
            for n in range(repeats)
        ]
        repo = work / "repo"
        _template_repo(template, repo)
        service = work / "service"
        _timed(
            [COPIER, "copy", "--trust", "--defaults", "--quiet", "--vcs-ref", "v1.0.0", str(repo), str(service)], work
        )
        if not (service / ".git").exists():  # a template whose tasks do not commit the render
            _sh([*GIT, "init", "-q"], service)
            _sh([*GIT, "add", "-A"], service)
            _sh([*GIT, "commit", "-qm", "rendered from v1.0.0"], service)
        rendered = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=service, check=True, capture_output=True, text=True
        ).stdout.strip()
        updates = []
        for _ in range(repeats):
            _sh(["git", "reset", "-q", "--hard", rendered], service)
            _sh(["git", "clean", "-qfd"], service)
            updates.append(_timed([COPIER, "update", "--trust", "--defaults", "--quiet"], service))
            if MARK not in (service / ".gitignore").read_text():
                raise RuntimeError("copier update did not bring v2.0.0's change")
    print(f"{repeats} runs each; the default answers; {COPIER}")
    rows = [
        ["copier copy (plain folder)", f"{common.median(copies):.2f}", f"{min(copies):.2f}-{max(copies):.2f}"],
        [
            "copier update (git, v1.0.0 -> v2.0.0)",
            f"{common.median(updates):.2f}",
            f"{min(updates):.2f}-{max(updates):.2f}",
        ],
    ]
    print(common.table(rows, ["command", "wall s median", "min-max"]))
    print("A git identity is given only to this benchmark's own commits, never to copier.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    group = parser.add_argument_group("copier")
    group.add_argument("--copier-repeats", type=int, default=5, help="runs of each command (5)")


def main(args: argparse.Namespace) -> None:
    """Run from ``run.py``."""
    run(args.template, args.copier_repeats)
