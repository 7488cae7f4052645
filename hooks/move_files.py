"""Carry the user's edits of a file the template moved to the file's new place.

Run by a copier ``_migrations`` entry, after ``copier update`` has done its
work, in the service's root::

    python hooks/move_files.py --template SRC --from-ref REF [--answers-file F] OLD:NEW...

A plain update cannot follow a move: copier diffs the user's work against the
last render path by path, so the user's edits of OLD have no file to land in
(the patch is rejected) and copier then deletes OLD, which the new version no
longer renders. This script recovers them: for each pair whose OLD the user
had changed, it three-way merges the user's OLD (from ``HEAD``, which the
update has not touched) into NEW, taking as base OLD as the template rendered
it at REF (rendered again from the template's own history, with the answers
in ``HEAD``). Conflicts, if any, are written inline with copier's own labels.
Files the user never changed need nothing: copier moves those by itself.

Idempotent: run again, it merges edits that NEW already has, which changes
nothing. It never fails the update; when it cannot merge, it says so and
leaves the user's version of OLD in place. Standard library only, because it
runs in copier's interpreter.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The labels `copier update --conflict inline` writes, so one explanation of
# conflict markers (the README's) covers both.
LABELS = ["-L", "before updating", "-L", "last update", "-L", "after updating"]


def git(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run git in the current folder, capturing its output as bytes."""
    return subprocess.run(["git", *args], capture_output=True, check=False)


def committed(path: str) -> bytes | None:
    """``path`` as it is in ``HEAD``, relative to this folder, or None."""
    shown = git("show", f"HEAD:./{path}")
    return shown.stdout if shown.returncode == 0 else None


def render_old(template: str, ref: str, answers_file: str, into: Path) -> Path | None:
    """Render the template at ``ref`` with the answers in ``HEAD``; None if that fails."""
    answers = committed(answers_file)
    if answers is None:
        return None
    (into / answers_file).parent.mkdir(parents=True, exist_ok=True)
    (into / answers_file).write_bytes(answers)
    # Copier reads the answers already in the destination as its defaults.
    args = ["copy", "--trust", "--skip-tasks", "--defaults", "--quiet", "--overwrite"]
    args += ["--answers-file", answers_file, "--vcs-ref", ref, template, str(into)]
    result = subprocess.run([sys.executable, "-m", "copier", *args], capture_output=True, text=True, check=False)
    if result.returncode:
        print(result.stderr.strip(), file=sys.stderr)
        return None
    return into


def merge(new: Path, base: bytes, mine: bytes) -> bool | None:
    """Three-way merge the user's version into ``new``.

    True when it is clean, False with conflicts, None when git could not merge.
    """
    with tempfile.TemporaryDirectory() as scratch:
        ours, base_file = Path(scratch, "ours"), Path(scratch, "base")
        ours.write_bytes(mine)
        base_file.write_bytes(base)
        theirs = new if new.exists() else base_file
        result = git("merge-file", *LABELS, str(ours), str(base_file), str(theirs))
        if result.returncode > 127:
            return None
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ours, new)
        return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    """Move each changed OLD into its NEW; say what was done."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", required=True, help="the template (a git repository)")
    parser.add_argument("--from-ref", required=True, help="the version the service is updated from")
    parser.add_argument("--answers-file", default=".copier-answers.yml")
    parser.add_argument("moves", nargs="+", metavar="OLD:NEW")
    args = parser.parse_args(argv)
    pairs = [tuple(move.split(":", 1)) for move in args.moves]
    present = [(old, new, mine) for old, new in pairs if (mine := committed(old)) is not None]
    if not present:
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        rendered = render_old(args.template, args.from_ref, args.answers_file, Path(scratch))
        for old, new, mine in present:
            base = (rendered / old).read_bytes() if rendered and (rendered / old).is_file() else None
            if base is None:
                print(f"Could not render {old} as of {args.from_ref}: merge your edits into {new} by hand.")
                Path(old).write_bytes(mine)
                continue
            if mine == base:
                continue
            clean = merge(Path(new), base, mine)
            if clean is None:
                print(f"Could not merge your changes of {old} into {new}: {old} is kept for you to do it.")
                Path(old).write_bytes(mine)
                continue
            Path(old).unlink(missing_ok=True)
            Path(f"{old}.rej").unlink(missing_ok=True)
            outcome = "" if clean else ", with conflicts marked inline: resolve them"
            print(f"Moved your changes of {old} to {new}{outcome}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
