"""Print what to do with the freshly rendered service.

Run by copier's ``_tasks`` after a copy only, in the service's root, last::

    python hooks/next_steps.py PACKAGE DATABASE FOLDER

Standard library only, because it runs in copier's interpreter.
"""

from __future__ import annotations

import sys


def steps(package: str, database: str, folder: str) -> list[str]:
    """The commands, in order, with a word on each."""
    lines = ["uv sync                              # install the service and its dev tools"]
    if database != "none":
        lines.append("uv run alembic upgrade head          # create the schema")
    lines += [
        f"uv run python -m {package}{' ' * max(1, 20 - len(package))}# serve it",
        "uv run pytest                        # its tests",
    ]
    if folder not in {"", "."}:
        lines.insert(0, f"cd {folder}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the next steps."""
    package, database, folder = (sys.argv[1:] if argv is None else argv)[:3]
    print("\nNext steps:")
    for line in steps(package, database, folder):
        print(f"    {line}")
    print("\nLater, to take in a new version of the template (with the work committed):")
    print("    copier update --trust --defaults --conflict inline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
