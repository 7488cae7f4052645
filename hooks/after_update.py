"""After ``copier update``: carry renamed files, then say what needs the user's attention.

Run by copier's ``_migrations`` after every update, after copier's merge, in
the service's folder::

    python hooks/after_update.py --template SRC --from REF --to REF [--answers-file F]

It prints a few lines: the files left with conflicts and the ``.rej``
files, the files the template changed between the two versions that the
user has moved or deleted (with the command that brings one back), the
recorded answers that changed, and whether the dependencies changed
(``uv sync``). When the update renamed the package
(``--data package_name=NEW``), it first carries the user's work to the new
names (``renames.py``).

Exit status 1 when conflicts or ``.rej`` files are left (or a renamed
module that could not be merged), so that ``copier update`` exits 1 too and
a script or CI job can tell; 0 otherwise.
Copier's merge is complete by then: nothing is undone. Standard library
only, because it runs in copier's interpreter.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import renames
import renders

DEPENDENCY_FILES = ("pyproject.toml", "uv.lock")
# Files above this size are not searched for conflict markers or old names.
LARGEST_TEXT = 2_000_000


@dataclass
class Report:
    """What the update left for the user."""

    start: str
    end: str
    conflicted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    carried: renames.Carried | None = None
    still_named: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    # (question, before, after) of each recorded answer the update changed.
    answers: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def unresolved(self) -> bool:
        """Whether files are left for the user to resolve before committing."""
        unmerged = self.carried.unmerged if self.carried else []
        return bool(self.conflicted or self.rejected or self.blocking or unmerged)


def changed_files() -> list[str]:
    """The files the update changed or added (relative to this folder), deleted ones left out."""
    modified = renders.paths(renders.git("diff", "--name-only", "-z", "--relative", "HEAD").stdout)
    added = renders.paths(renders.git("ls-files", "-z", "--others", "--exclude-standard").stdout)
    return sorted(name for name in set(modified) | set(added) if Path(name).is_file())


def conflicted_files(changed: list[str]) -> list[str]:
    """The changed files with conflict markers, and those git records as unmerged."""
    unmerged = {line.split("\t", 1)[1] for line in renders.paths(renders.git("ls-files", "-u", "-z").stdout)}
    marked = {
        name
        for name in changed
        if not name.endswith(".rej")
        and Path(name).stat().st_size <= LARGEST_TEXT
        and renders.has_conflict_markers(Path(name).read_bytes())
    }
    return sorted(unmerged | marked)


def rejected_files() -> list[str]:
    """The ``.rej`` files here, git-ignored ones included."""
    return sorted(renders.paths(renders.git("ls-files", "-z", "--others", "--", "*.rej").stdout))


def missed_changes(
    base: Path, template: str, ref: str, answers: str, answers_file: str, scratch: Path, names: dict[str, str]
) -> list[str] | str:
    """The files the template changed since ``base`` that the user has moved or deleted; or why not known."""
    gone = sorted(renders.files_of(base) - renders.committed_files() - {answers_file})
    if not gone:
        return []
    new = renders.render(template, ref, answers, answers_file, scratch)
    if isinstance(new, str):
        return new
    missed = []
    for name in gone:
        now = renames.moved(name, names)
        if Path(now).exists() or not (new / now).is_file():
            continue
        before = (base / name).read_bytes()
        for old_name, new_name in names.items():
            before = before.replace(old_name.encode(), new_name.encode())
        if (new / now).read_bytes() != before:
            missed.append(now)
    return missed


def still_naming(names: dict[str, str], answers_file: str) -> dict[str, list[str]]:
    """For each renamed answer, the service's text files that still hold its old value."""
    found: dict[str, list[str]] = {}
    listed = renders.paths(renders.git("ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout)
    candidates = [Path(name) for name in listed if name != answers_file]
    for old in names:
        word = renders.word(old)
        found[old] = [
            path.as_posix()
            for path in candidates
            if path.is_file()
            and path.stat().st_size <= LARGEST_TEXT
            and b"\0" not in (data := path.read_bytes())
            and word.search(data)
        ]
    return {old: files for old, files in found.items() if files}


def restore_command(path: str) -> str:
    """The command that brings ``path`` back as the template renders it at the service's version."""
    return (
        "uvx copier recopy --trust --defaults --skip-tasks --quiet --vcs-ref=:current: "
        f"--exclude '**' --exclude {shlex.quote('!' + path)}"
    )


def gather(args: argparse.Namespace, scratch: Path) -> Report:
    """Carry renamed files, then look at what the update left."""
    report = Report(args.start, args.end)
    before_text = (renders.committed(args.answers_file) or b"").decode()
    after_text = Path(args.answers_file).read_text(encoding="utf-8")
    before, after = renders.answers_in(before_text), renders.answers_in(after_text)
    names = renames.renamed(before, after)
    report.answers = changed_answers(before, after)
    if names or args.start != args.end:
        base = renders.render(args.template, args.start, before_text, args.answers_file, scratch / "last")
        if isinstance(base, str):
            report.problems.append(f"Could not render the template at {args.start} to compare with ({base}).")
            if names:
                report.blocking.append(renames.restore_old(before))
        else:
            if names:
                report.carried = renames.carry(base, before, after)
            if args.start != args.end:
                missed = missed_changes(
                    base, args.template, args.end, after_text, args.answers_file, scratch / "next", names
                )
                if isinstance(missed, str):
                    report.problems.append(f"Could not render {args.end} to compare with ({missed}).")
                else:
                    report.missed = missed
    if names:
        report.still_named = still_naming(names, args.answers_file)
    changed = changed_files()
    report.conflicted = conflicted_files(changed)
    report.rejected = rejected_files()
    report.dependencies = [name for name in DEPENDENCY_FILES if name in changed]
    return report


def changed_answers(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    """The questions recorded before and after whose answers differ, with both answers.

    Copier changes an answer on ``--data``, and also, unasked, where the new
    version's questionnaire refuses the recorded one: it takes the default.
    """
    return [
        (key, value, after[key])
        for key, value in before.items()
        if not key.startswith("_") and key in after and after[key] != value
    ]


def quoted_answer(answer: str) -> str:
    """An answer in quotes, as typed (an empty one shows as ``""``)."""
    return json.dumps(answer, ensure_ascii=False)


def listing(title: str, names: list[str]) -> list[str]:
    """``title`` and one indented line per name."""
    return [f"  {title}", *(f"    {name}" for name in names)]


def lines_of(report: Report) -> list[str]:
    """The report, as printed."""
    versions = f"from {report.start} to {report.end}" if report.start != report.end else f"at {report.end}"
    head = f"After the update {versions}"
    lines = [f"{head}:" if report.unresolved else f"{head}: no conflicts."]
    if report.conflicted:
        lines += listing(
            "Conflicts to resolve (between <<<<<<< before updating and >>>>>>> after updating):", report.conflicted
        )
    if report.rejected:
        lines += listing(
            "Changes copier could not apply, in .rej files (apply them by hand, then delete them):", report.rejected
        )
    carried = report.carried
    if carried and carried.folders:
        old, new = carried.folders
        lines.append(f"  Moved {old}/ to {new}/ with your changes; `git add --all` records the moves.")
    if carried and carried.kept:
        lines += listing("Kept your version of modules the template no longer has:", carried.kept)
    if carried and carried.unmerged:
        lines += listing("Could not merge the template's new version into these; yours is kept:", carried.unmerged)
    if carried and carried.left:
        lines += listing("Left where they were (something is already at the new name):", carried.left)
    for old, files in report.still_named.items():
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        lines.append(f"  Still naming {old}: {shown}.")
    if report.missed:
        lines += listing("Changed by the template, but moved or deleted here, so not updated:", report.missed)
        lines.append("  To bring one back as the template now has it (then compare it with yours):")
        lines.append(f"    {restore_command(report.missed[0])}")
    if report.answers:
        lines += listing(
            "Answers changed (by --data, or to the default where this version refuses the one recorded):",
            [f"{key}: {quoted_answer(old)} -> {quoted_answer(new)}" for key, old, new in report.answers],
        )
    if report.dependencies:
        lines.append(f"  Dependencies changed ({', '.join(report.dependencies)}): run `uv sync`.")
    lines += [f"  {problem}" for problem in report.problems + report.blocking]
    if report.unresolved:
        lines.append("Resolve them, `git add` each file, then run the tests and commit.")
        lines.append("copier update exits with status 1 while conflicts are left, so that scripts can tell.")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Carry, report, and exit 1 when conflicts are left."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", required=True, help="the template copier updated from (a git repository)")
    parser.add_argument("--from", dest="start", required=True, help="the version the service was at")
    parser.add_argument("--to", dest="end", required=True, help="the version it is updated to")
    parser.add_argument("--answers-file", default=".copier-answers.yml")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="after-update-") as scratch:
        report = gather(args, Path(scratch))
    print("\n".join(lines_of(report)))
    return 1 if report.unresolved else 0


if __name__ == "__main__":
    sys.exit(main())
