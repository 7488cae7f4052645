"""Tag each release of ``CHANGELOG.md`` on the commit that added its heading.

The releases are the ``## [X.Y.Z]`` headings of ``CHANGELOG.md`` as committed
at ``HEAD``; each one is published as the annotated tag ``vX.Y.Z`` on the
commit that added its heading. Run in the repository, with its history::

    python3 scripts/release.py [--dry-run]

The tags are reproducible: each is signed by ``fastapi-service-template``
at its commit's own date, with the same message, so any clone with the
history makes byte-identical tag objects. Idempotent: a tag already on the
right commit is left as it is. A tag that exists on another commit is never
moved: the script names it and stops before making any tag, because services
record their version and ``copier update`` renders it again. Standard
library only, so that it runs with any Python 3.11+ and git.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHANGELOG = "CHANGELOG.md"
HEADING = re.compile(r"^## \[(\d+\.\d+\.\d+)\]", re.MULTILINE)
TAGGER = {"GIT_COMMITTER_NAME": "fastapi-service-template", "GIT_COMMITTER_EMAIL": "fastapi-service-template@localhost"}


class ReleaseError(Exception):
    """A release that cannot be tagged as the changelog says."""


@dataclass(frozen=True)
class Release:
    """One ``## [X.Y.Z]`` heading and the commit that added it."""

    version: str
    commit: str

    @property
    def tag(self) -> str:
        """The git tag of this release."""
        return f"v{self.version}"


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run git in ``repo``, capturing its output."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False, env=env)


def versions(changelog: str) -> list[str]:
    """The release versions of a changelog's text, in the order of their headings."""
    found = HEADING.findall(changelog)
    repeated = sorted({version for version in found if found.count(version) > 1})
    if repeated:
        msg = f"{CHANGELOG} has more than one heading for {', '.join(repeated)}"
        raise ReleaseError(msg)
    return found


def changelog_at(repo: Path, commit: str) -> str | None:
    """``CHANGELOG.md`` as it is in ``commit``, or None when it has none."""
    shown = git(repo, "show", f"{commit}:{CHANGELOG}")
    return shown.stdout if shown.returncode == 0 else None


def has_heading(text: str | None, version: str) -> bool:
    """Whether ``text`` has the heading of ``version``."""
    return text is not None and version in HEADING.findall(text)


def commit_that_added(repo: Path, version: str) -> str:
    """The oldest commit of ``HEAD``'s history whose changelog gains ``version``'s heading."""
    candidates = git(repo, "log", "--reverse", "--format=%H", "-S", f"## [{version}]", "HEAD", "--", CHANGELOG)
    for commit in candidates.stdout.split():
        parents = git(repo, "rev-parse", f"{commit}^@").stdout.split()
        before = changelog_at(repo, parents[0]) if parents else None
        if has_heading(changelog_at(repo, commit), version) and not has_heading(before, version):
            return commit
    msg = f"no commit of HEAD's history adds the heading '## [{version}]' to {CHANGELOG}: commit it first"
    raise ReleaseError(msg)


def releases(repo: Path) -> list[Release]:
    """Every release of the changelog committed at ``HEAD``, newest first."""
    text = changelog_at(repo, "HEAD")
    if text is None:
        msg = f"HEAD has no {CHANGELOG}"
        raise ReleaseError(msg)
    return [Release(version, commit_that_added(repo, version)) for version in versions(text)]


def tagged(repo: Path, tag: str) -> str | None:
    """The commit ``tag`` points at, or None when there is no such tag."""
    found = git(repo, "rev-parse", "--quiet", "--verify", f"refs/tags/{tag}^{{commit}}")
    return found.stdout.strip() if found.returncode == 0 else None


def make_tag(repo: Path, release: Release) -> None:
    """Make the annotated tag of ``release``, the same bytes in every clone."""
    date = git(repo, "show", "--no-patch", "--format=%ct %cz", release.commit).stdout.strip()
    env = {**os.environ, **TAGGER, "GIT_COMMITTER_DATE": date}
    message = f"fastapi-service-template {release.version}"
    made = git(
        repo, "-c", "tag.gpgSign=false", "tag", "--annotate", "-m", message, release.tag, release.commit, env=env
    )
    if made.returncode:
        msg = f"git could not make {release.tag}: {made.stderr.strip()}"
        raise ReleaseError(msg)


def describe(repo: Path, commit: str) -> str:
    """A commit's short hash and subject."""
    return git(repo, "show", "--no-patch", "--format=%h (%s)", commit).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Make the missing release tags; refuse, making none, if one would move."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say which tags would be made, make none")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    try:
        found = releases(repo)
        moved = [
            f"{release.tag} is on {describe(repo, current)}, but {describe(repo, release.commit)} "
            "added its heading: a published tag is never moved"
            for release in found
            if (current := tagged(repo, release.tag)) not in {None, release.commit}
        ]
        if moved:
            raise ReleaseError("\n".join(moved))
        for release in reversed(found):
            where = describe(repo, release.commit)
            if tagged(repo, release.tag):
                print(f"{release.tag}: already on {where}")
                continue
            if not args.dry_run:
                make_tag(repo, release)
            print(f"{release.tag}: {'would be made' if args.dry_run else 'made'} on {where}")
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    if not found:
        print(f"{CHANGELOG} has no release heading yet.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
