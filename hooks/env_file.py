"""Write the service's local ``.env`` from ``.env.example``, with a fresh secret.

Run by copier's ``_tasks`` in the rendered service's root, after a copy and
after each update (so that turning ``service_auth`` on later gets a secret
too)::

    python hooks/env_file.py [--secret NAME]...

An empty NAME is ignored, so that copier can pass one conditionally.

``.env`` is git-ignored: the secret lives there and in no other file, and
never in ``.copier-answers.yml``. Every other setting of ``.env.example`` is
copied commented out, so that ``.env`` documents them without pinning today's
defaults (a later ``copier update --data database=postgresql`` must not be
overridden by a SQLite URL left in ``.env``). Idempotent: an existing ``.env``
is kept as it is, except that each secret it lacks, or still has at the
placeholder value of ``.env.example``, is filled in. Standard library only,
because it runs in copier's interpreter.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(".env.example")
ENV = Path(".env")
HEADER = (
    "# Written from .env.example when the service was rendered; git-ignored.\n"
    "# The service's defaults apply to each commented line: uncomment to override.\n"
)
SETTING = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)


def assignment(name: str) -> re.Pattern[str]:
    """Match the line that sets ``name`` (``NAME=value``, maybe ``export``ed)."""
    return re.compile(rf"^(?:export\s+)?{re.escape(name)}\s*=(.*)$", re.MULTILINE)


def value_in(text: str, name: str) -> str | None:
    """The value ``text`` gives ``name``, unquoted, or None when it is not set."""
    found = assignment(name).search(text)
    if found is None:
        return None
    return found.group(1).strip().strip("'\"")


def with_value(text: str, name: str, value: str) -> str:
    """``text`` with ``name`` set to ``value``: its line replaced, or one appended."""
    pattern = assignment(name)
    if pattern.search(text):
        return pattern.sub(lambda _: f"{name}={value}", text, count=1)
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{text}{name}={value}\n"


def commented(example: str, keep: list[str]) -> str:
    """``example`` with every setting but those in ``keep`` turned into a comment."""
    lines = []
    for line in example.splitlines(keepends=True):
        setting = SETTING.match(line)
        lines.append(line if setting is None or setting.group(1) in keep else f"# {line}")
    return HEADER + "".join(lines)


def new_secret() -> str:
    """A random token, URL-safe so that it needs no quoting in ``.env``."""
    return secrets.token_urlsafe(32)


def fill(env: str, example: str, names: list[str]) -> str:
    """``env`` with each secret in ``names`` set, unless it already has a real value."""
    for name in names:
        current = value_in(env, name)
        if not current or current == value_in(example, name):
            env = with_value(env, name, new_secret())
    return env


def is_temporary_render() -> bool:
    """Whether this is one of the scratch renders ``copier update`` makes.

    During an update copier renders the old and the new version into
    temporary folders, running the tasks there too; a ``.env`` written in one
    of them would make copier believe the file belongs to the template. Those
    folders are not git work trees, while a service being updated always is.
    """
    if os.environ.get("COPIER_OPERATION") != "update":
        return False
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    return inside.stdout.strip() != "true"


def main(argv: list[str] | None = None) -> int:
    """Write or complete ``.env``; print what was done, never the secret."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret", action="append", default=[], help="a variable to fill with a fresh secret")
    args = parser.parse_args(argv)
    args.secret = [name for name in args.secret if name]
    if is_temporary_render() or not EXAMPLE.is_file():
        return 0
    example = EXAMPLE.read_text(encoding="utf-8")
    existed = ENV.exists()
    before = ENV.read_text(encoding="utf-8") if existed else commented(example, args.secret)
    after = fill(before, example, args.secret)
    if existed and after == before:
        return 0
    # Owner-only from the start: the file holds a secret.
    descriptor = os.open(ENV, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(after)
    filled = [name for name in args.secret if value_in(after, name) != value_in(before, name)]
    action = "Updated" if existed else "Wrote"
    detail = f" with a new {' and '.join(filled)}" if filled else ""
    print(f"{action} .env{detail} (git-ignored; keep it out of version control).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
