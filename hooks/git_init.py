"""Make the freshly rendered service a git repository with a first commit.

Run by copier's ``_tasks`` after a copy only, in the service's root::

    python hooks/git_init.py MESSAGE

``copier update`` needs the service in git: it diffs the user's work against
the template's last render. Nothing happens when the folder is already inside
a git work tree (a monorepo, or a second run). With no git identity
configured, the first commit is signed by the template alone, through ``-c``
for that one command; the user's own configuration is never changed.
Standard library only, because it runs in copier's interpreter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

FALLBACK_IDENTITY = {"user.name": "fastapi-service-template", "user.email": "fastapi-service-template@localhost"}


def git(*args: str) -> subprocess.CompletedProcess[str]:
    """Run git in the current folder, capturing its output."""
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def configured(key: str) -> bool:
    """Whether git has a value for ``key`` from any of its configuration files."""
    return bool(git("config", "--get", key).stdout.strip())


def overrides() -> list[str]:
    """``-c`` options for what git would otherwise ask for or complain about."""
    options = [f"{key}={value}" for key, value in FALLBACK_IDENTITY.items() if not configured(key)]
    if not configured("init.defaultBranch"):
        options.append("init.defaultBranch=main")
    return [part for option in options for part in ("-c", option)]


def main(argv: list[str] | None = None) -> int:
    """Initialise the repository and commit the render; say what happened."""
    args = sys.argv[1:] if argv is None else argv
    message = args[0] if args else "Render the service from fastapi-service-template"
    if shutil.which("git") is None:
        print("git is not installed: run `git init` and commit before `copier update`.")
        return 0
    if git("rev-parse", "--is-inside-work-tree").stdout.strip() == "true":
        return 0
    extra = overrides()
    steps = [["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "--no-verify", "-m", message]]
    for step in steps:
        result = subprocess.run(["git", *extra, *step], capture_output=True, text=True, check=False)
        if result.returncode:
            print(f"`git {' '.join(step)}` failed; commit the service yourself before `copier update`:")
            print(result.stderr.strip() or result.stdout.strip())
            return 0
    print("Initialised a git repository with the render as its first commit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
