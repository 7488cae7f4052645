"""Record the template's source as a path that still finds it from the service's folder.

Run by copier's ``_tasks`` after a copy, in the service's root, before the
first commit::

    python hooks/answers_source.py ANSWERS_FILE TEMPLATE

Copier records the source as it was typed: ``copier copy . ../svc`` records
``_src_path: .``, which, in the service's folder, names the service itself,
so that ``copier update`` fails. A relative local path is replaced by the
template's absolute path: the repository copier cloned TEMPLATE from (its
``origin``), or TEMPLATE itself when the template is a plain folder. URLs
(``https://...``, ``git@host:...``, ``gh:...``) and absolute paths are kept.
Idempotent. Standard library only, because it runs in copier's interpreter.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SOURCE = re.compile(r"^_src_path: *(.*)$", re.MULTILINE)
PLAIN = re.compile(r"[A-Za-z0-9_/.-][A-Za-z0-9_/.~+-]*")


def is_relative_path(source: str) -> bool:
    """Whether ``source`` is a local path relative to where copier ran."""
    return bool(source) and not Path(source).is_absolute() and not source.startswith("~") and ":" not in source


def unquoted(value: str) -> str:
    """A YAML scalar as copier writes it, without its quotes."""
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) > 1 and value[0] == value[-1] == '"':
        return str(json.loads(value))
    return value


def template_path(template: Path) -> Path | None:
    """Where the template lives: the origin of copier's clone, or the folder itself."""
    if not (template / ".git").exists():
        return template.resolve()
    origin = subprocess.run(
        ["git", "-C", str(template), "remote", "get-url", "origin"], capture_output=True, text=True, check=False
    ).stdout.strip()
    path = Path(origin.removeprefix("file://"))
    return path if origin and path.is_absolute() and path.is_dir() else None


def main(argv: list[str] | None = None) -> int:
    """Make a relative ``_src_path`` absolute; say so, or say what to do."""
    answers_file, template = (sys.argv[1:] if argv is None else argv)[:2]
    answers = Path(answers_file)
    text = answers.read_text(encoding="utf-8") if answers.is_file() else ""
    found = SOURCE.search(text)
    if found is None or not is_relative_path(source := unquoted(found.group(1))):
        return 0
    path = template_path(Path(template))
    if path is None or not ((path / "copier.yml").is_file() or (path / "copier.yaml").is_file()):
        print(
            f"{answers_file} records the template as '{source}', a path relative to where copier ran: "
            "set _src_path to its absolute path or URL before `copier update`."
        )
        return 0
    value = str(path) if PLAIN.fullmatch(str(path)) else json.dumps(str(path))
    answers.write_text(text[: found.start()] + f"_src_path: {value}" + text[found.end() :], encoding="utf-8")
    print(f"Recorded the template's source as {path}, so that `copier update` finds it from here.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
