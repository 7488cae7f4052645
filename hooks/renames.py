"""Carry the user's files to the paths that a changed answer gives them.

``copier update --data package_name=NEW`` renders the package afresh in
``src/NEW/`` and, since the new version renders nothing in ``src/OLD/``,
deletes the template's modules there, the user's edits with them; the
user's own modules stay behind. Copier diffs the user's work against the
last render path by path, so it cannot follow a move. ``carry`` does, after
copier's merge, in the service's folder:

- each template module the user changed is three-way merged into its new
  place (base: the module as the old version rendered it with the old
  answers; theirs: the new render), conflicts written inline with copier's
  own labels;
- each module of the user's own moves with the folder;
- imports of the old package, in every Python file of the service, name the
  new one (``from OLD.x import y``, ``import OLD``, and strings such as
  ``"OLD.settings.Settings"`` that name one of its modules);
- the old folder goes, once only build leftovers (``__pycache__``) remain.

Files named after an answer elsewhere (``service_slug``, say) move the same
way when the template renders them. Standard library only.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import renders

# The answers that name folders or files of the rendered service.
NAMING_ANSWERS = ("package_name", "service_slug")
# The labels `copier update --conflict inline` writes, so that one
# explanation of conflict markers (the README's) covers both.
LABELS = ["-L", "before updating", "-L", "last update", "-L", "after updating"]
# Tokens that say nothing about what a name means.
IGNORED_TOKENS = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}


@dataclass
class Carried:
    """What ``carry`` did, for the report."""

    folders: tuple[str, str] | None = None
    kept: list[str] = field(default_factory=list)
    unmerged: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def renamed(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    """Old value -> new value of each naming answer that changed."""
    return {
        before[key]: after[key]
        for key in NAMING_ANSWERS
        if before.get(key) and after.get(key) and before[key] != after[key]
    }


def moved(path: str, renames: dict[str, str]) -> str:
    """Where ``path`` goes: each part named after an old answer (``OLD``, ``OLD.yaml``) renamed."""
    parts = path.split("/")
    for index, part in enumerate(parts):
        stem, dot, suffix = part.partition(".")
        if stem in renames:
            parts[index] = renames[stem] + dot + suffix
    return "/".join(parts)


def package_folders(before: dict[str, str], after: dict[str, str]) -> tuple[str, str] | None:
    """``src/OLD`` and ``src/NEW`` when the package was renamed."""
    old, new = before.get("package_name"), after.get("package_name")
    return (f"src/{old}", f"src/{new}") if old and new and old != new else None


def to_carry(base: set[str], mine: set[str], renames: dict[str, str], folders: tuple[str, str] | None) -> list[str]:
    """The user's files that move: all of the package's folder, and template files named after an answer."""
    inside = [name for name in mine if folders and name.startswith(folders[0] + "/")]
    named = [name for name in mine & base if moved(name, renames) != name and Path(moved(name, renames)).exists()]
    return sorted(set(inside) | set(named))


def merge(mine: bytes, base: bytes, theirs: Path) -> bytes | None:
    """Three-way merge of the user's version and the new render, conflicts inline; None if git cannot merge."""
    with tempfile.TemporaryDirectory() as scratch:
        ours, base_file = Path(scratch, "ours"), Path(scratch, "base")
        ours.write_bytes(mine)
        base_file.write_bytes(base)
        done = subprocess.run(
            ["git", "merge-file", *LABELS, str(ours), str(base_file), str(theirs)], capture_output=True, check=False
        )
        # merge-file exits with the number of conflicts, or a negative status on error.
        return ours.read_bytes() if 0 <= done.returncode <= 127 else None


def modules_of(package: Path) -> set[str]:
    """The names of the modules and subpackages directly in ``package``."""
    if not package.is_dir():
        return set()
    return {entry.stem for entry in package.iterdir() if entry.suffix == ".py" or (entry / "__init__.py").is_file()}


def rewrite_imports(text: str, old: str, new: str, modules: set[str]) -> str:
    """``text`` with its imports of package ``old`` on ``new``, and the names and strings that follow from them.

    ``from OLD.x import y`` and ``import OLD.x`` become ``NEW``; where the
    module binds the name (``import OLD...``), every use of it does too;
    strings that name one of the package's modules (``"OLD.settings.X"``,
    as ``monkeypatch.setattr`` takes) follow. Text that is not valid Python
    (conflict markers, say) gets its import lines rewritten only.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        name = re.escape(old)
        text = re.sub(rf"^(\s*from\s+){name}(?=[.\s])", rf"\g<1>{new}", text, flags=re.MULTILINE)
        return re.sub(rf"^(\s*import\s+){name}(?=[.\s,]|$)", rf"\g<1>{new}", text, flags=re.MULTILINE)
    words = [token for token in tokens if token.type not in IGNORED_TOKENS]
    after_keyword = {
        index
        for index, token in enumerate(words)
        if token.type == tokenize.NAME
        and token.string == old
        and index
        and words[index - 1].string in {"from", "import"}
    }
    binds = any(words[index - 1].string == "import" for index in after_keyword)
    known = "|".join(re.escape(module) for module in sorted(modules))
    naming = re.compile(rf"(?<=[\"']){re.escape(old)}(?=\.(?:{known})\b)") if modules else None
    edits: list[tuple[tuple[int, int], tuple[int, int], str]] = []
    for index, token in enumerate(words):
        if token.type == tokenize.NAME and token.string == old and (binds or index in after_keyword):
            edits.append((token.start, token.end, new))
        elif token.type == tokenize.STRING and naming and naming.search(token.string):
            edits.append((token.start, token.end, naming.sub(new, token.string)))
    lines = text.splitlines(keepends=True)
    for (row, column), (end_row, end_column), replacement in reversed(edits):
        if row == end_row:
            line = lines[row - 1]
            lines[row - 1] = line[:column] + replacement + line[end_column:]
    return "".join(lines)


def remove_if_only_leftovers(folder: Path) -> bool:
    """Remove ``folder`` if nothing but empty folders and ``__pycache__`` is left in it."""
    if not folder.is_dir():
        return True
    for cache in sorted(folder.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for inner in sorted((path for path in folder.rglob("*") if path.is_dir()), reverse=True):
        if not any(inner.iterdir()):
            inner.rmdir()
    if any(folder.iterdir()):
        return False
    folder.rmdir()
    return True


def destination(old: str, renames: dict[str, str], folders: tuple[str, str] | None) -> str:
    """Where the user's file ``old`` goes."""
    if folders and old.startswith(folders[0] + "/"):
        return folders[1] + old[len(folders[0]) :]
    return moved(old, renames)


def carry(base: Path, before: dict[str, str], after: dict[str, str]) -> Carried:
    """Move the user's files and edits to their new names; ``base`` is the last render, as it was."""
    renames = renamed(before, after)
    folders = package_folders(before, after)
    done = Carried(folders=folders)
    base_files = renders.files_of(base)
    mine = renders.committed_files()
    for gone in sorted(base_files - mine):
        # Deleted by the user: copier keeps it deleted under its old name
        # only, so keep it deleted under the new one too.
        there = destination(gone, renames, folders)
        if there != gone and there not in mine and Path(there).is_file():
            Path(there).unlink()
    for old in to_carry(base_files, mine, renames, folders):
        new = Path(destination(old, renames, folders))
        ours = renders.committed(old)
        last = (base / old).read_bytes() if old in base_files else None
        if ours is None or ours == last:
            # Unchanged since the last render: copier has rendered the new one.
            Path(f"{old}.rej").unlink(missing_ok=True)
            continue
        if last is None and new.exists():
            done.left.append(old)
            continue
        result = merge(ours, last, new) if last is not None and new.is_file() else None
        if last is not None and new.is_file() and result is None:
            done.unmerged.append(str(new))
        elif last is not None and not new.is_file():
            done.kept.append(str(new))
        new.parent.mkdir(parents=True, exist_ok=True)
        # The user's own module, or theirs when there is nothing to merge with.
        new.write_bytes(ours if result is None else result)
        Path(old).unlink(missing_ok=True)
        Path(f"{old}.rej").unlink(missing_ok=True)
    if folders:
        rewrite_package_imports(before["package_name"], after["package_name"], Path(folders[1]))
        if not remove_if_only_leftovers(Path(folders[0])):
            done.left.append(folders[0] + "/")
    return done


def rewrite_package_imports(old: str, new: str, package: Path) -> None:
    """Point every Python file of the service that imports ``old`` at ``new``."""
    modules = modules_of(package)
    listed = renders.git("ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    for name in renders.paths(listed):
        path = Path(name)
        if path.suffix == ".py" and path.is_file():
            text = path.read_text(encoding="utf-8")
            rewritten = rewrite_imports(text, old, new, modules)
            if rewritten != text:
                path.write_text(rewritten, encoding="utf-8")


def restore_old(before: dict[str, str]) -> str:
    """Put the old package back as ``HEAD`` has it, when it cannot be merged into the new one; say so."""
    folder = f"src/{before.get('package_name', '')}"
    renders.git("checkout", "HEAD", "--", folder)
    return f"Put {folder}/ back as you had it: move your changes to the new package by hand, then delete it."
