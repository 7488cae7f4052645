"""What the update hooks read of the service and the template: answers, trees, renders.

Imported by ``after_update.py`` and ``renames.py``, which run in the
service's folder (the root of a repository, or a folder inside one) after
``copier update`` has merged. Copier needs a clean work tree to update, so
``HEAD`` holds the service as the user left it; the work tree holds the
update. Standard library only, because it runs in copier's interpreter.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

# An answer: its key, and its value with the indented lines that continue it
# (a long string is folded over several).
ANSWER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*): *(.*(?:\n[ \t]+\S.*)*)$", re.MULTILINE)
# A line git or copier writes where a conflict starts or ends.
CONFLICT_MARKER = re.compile(rb"^(<{7}|>{7})( |\r?$)", re.MULTILINE)


def git(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run git in the current folder, capturing its output as bytes."""
    return subprocess.run(["git", *args], capture_output=True, check=False)


def paths(output: bytes) -> list[str]:
    """The paths of git's ``-z`` output."""
    return [name for name in output.decode().split("\0") if name]


def committed(path: str) -> bytes | None:
    """``path`` (relative to this folder) as it is in ``HEAD``, or None."""
    shown = git("show", f"HEAD:./{path}")
    return shown.stdout if shown.returncode == 0 else None


def committed_files() -> set[str]:
    """Every file of this folder in ``HEAD``, relative to it."""
    return set(paths(git("ls-tree", "-r", "-z", "--name-only", "HEAD").stdout))


def unquoted(value: str) -> str:
    """A YAML scalar as copier writes it, without its quotes."""
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) > 1 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:  # an escape of YAML's that JSON has not (\x, \N, \_, ...)
            return value[1:-1]
    return value


def unfolded(value: str) -> str:
    """A YAML scalar written over several lines, on one: each line break is a space, but
    where a double-quoted string escapes it (a line that ends in a backslash)."""
    lines = [line.strip() for line in value.split("\n")]
    double_quoted = lines[0].startswith('"')
    joined = lines[0]
    for line in lines[1:]:
        escaped = double_quoted and (len(joined) - len(joined.rstrip("\\"))) % 2 == 1
        joined = joined[:-1] + line if escaped else f"{joined} {line}"
    return joined


def answers_in(text: str) -> dict[str, str]:
    """The answers of an answers file whose values are strings, numbers or booleans, unquoted."""
    return {key: unquoted(unfolded(value)) for key, value in ANSWER.findall(text)}


def render(template: str, ref: str, answers: str, answers_file: str, into: Path) -> Path | str:
    """Render ``template`` at ``ref`` with ``answers`` into ``into``; the folder, or why not.

    Copier takes the answers file it finds in the destination as its
    answers, so writing it there first renders the service as it was (or
    is) without asking anything. No task runs.
    """
    (into / answers_file).parent.mkdir(parents=True, exist_ok=True)
    (into / answers_file).write_text(answers, encoding="utf-8")
    command = [sys.executable, "-m", "copier", "copy", "--trust", "--skip-tasks", "--defaults", "--quiet"]
    command += ["--overwrite", "--answers-file", answers_file, "--vcs-ref", ref, template, str(into)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return lines[-1] if lines else f"copier exited with status {done.returncode}"
    return into


def files_of(tree: Path) -> set[str]:
    """Every file of a rendered tree, relative to it."""
    return {path.relative_to(tree).as_posix() for path in tree.rglob("*") if path.is_file()}


def has_conflict_markers(data: bytes) -> bool:
    """Whether a text file holds a line where a conflict starts or ends."""
    return b"\0" not in data[:8000] and CONFLICT_MARKER.search(data) is not None


def word(name: str) -> re.Pattern[bytes]:
    """``name`` as a whole word of a file: not inside a longer name."""
    return re.compile(rb"(?<![A-Za-z0-9_-])" + re.escape(name.encode()) + rb"(?![A-Za-z0-9_-])")
