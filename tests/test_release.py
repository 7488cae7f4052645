"""Releases: the tags that ``scripts/release.py`` makes from ``CHANGELOG.md``, on clones of the template."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import flag_matrix as matrix
import history


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the template with its releases tagged by its own script."""
    repo = history.clone(tmp_path_factory.mktemp("released") / "template")
    done = history.tag_releases(repo)
    assert done.returncode == 0, done.stderr
    return repo


def tags(repo: Path) -> dict[str, str]:
    """Each tag of ``repo`` and the object it names (the tag object for an annotated tag)."""
    listed = history.git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/tags")
    return dict(line.split() for line in listed.splitlines())


def test_each_changelog_release_is_tagged_on_the_commit_that_added_its_heading(released: Path) -> None:
    """Every ``## [X.Y.Z]`` heading gets an annotated ``vX.Y.Z`` on the commit whose changelog first has it."""
    assert history.versions(), "CHANGELOG.md has no release"
    for version in history.versions():
        tag = f"v{version}"
        assert history.git(released, "cat-file", "-t", tag).strip() == "tag", f"{tag} is not annotated"
        commit = history.git(released, "rev-parse", f"{tag}^{{commit}}").strip()
        heading = f"\n## [{version}]"
        assert heading in history.git(released, "show", f"{commit}:CHANGELOG.md")
        parent = subprocess.run(
            ["git", "show", f"{commit}^:CHANGELOG.md"], cwd=released, capture_output=True, text=True, check=False
        )
        assert heading not in parent.stdout, f"{tag} is not on the commit that added its heading"


def test_running_again_changes_nothing(released: Path) -> None:
    """A second run makes no tag, says each one is already there, and succeeds."""
    before = tags(released)
    done = history.tag_releases(released)
    assert done.returncode == 0, done.stderr
    assert tags(released) == before
    assert [line.split(":")[1].split()[0] for line in done.stdout.splitlines()] == ["already"] * len(history.versions())


def test_two_clones_make_the_same_tags(released: Path, tmp_path: Path) -> None:
    """The tags are reproducible: another clone's run makes byte-identical tag objects."""
    other = history.clone(tmp_path / "template")
    done = history.tag_releases(other)
    assert done.returncode == 0, done.stderr
    release_tags = {f"v{version}" for version in history.versions()}
    assert {tag: obj for tag, obj in tags(other).items() if tag in release_tags} == {
        tag: obj for tag, obj in tags(released).items() if tag in release_tags
    }


def test_an_existing_tag_is_never_moved(tmp_path: Path) -> None:
    """A release tag already on another commit stops the script, which names it and makes no tag at all."""
    repo = history.clone(tmp_path / "template")
    oldest = f"v{history.versions()[-1]}"
    history.git(repo, "tag", oldest, "HEAD")
    head = history.git(repo, "rev-parse", "HEAD").strip()
    before = tags(repo)
    done = history.tag_releases(repo)
    assert done.returncode == 1
    assert f"{oldest} is on {head[:7]}" in done.stderr
    assert "never moved" in done.stderr
    assert tags(repo) == before


def test_a_release_cut_later_is_tagged_on_its_commit(tmp_path: Path) -> None:
    """Renaming Unreleased to a new version and committing it is all a release needs: the next run tags it."""
    repo = history.clone(tmp_path / "template")
    version = history.next_version(repo)
    commit = history.cut(repo, version)
    done = history.tag_releases(repo)
    assert done.returncode == 0, done.stderr
    assert f"v{version}: made on {commit[:7]}" in done.stdout
    assert history.git(repo, "rev-parse", f"v{version}^{{commit}}").strip() == commit
    assert history.git(repo, "describe", "--tags", "--abbrev=0").strip() == f"v{version}"


def test_a_duplicated_heading_is_refused(tmp_path: Path) -> None:
    """Two headings for one version are refused with the version named, before any tag is made."""
    repo = history.clone(tmp_path / "template")
    changelog = repo / "CHANGELOG.md"
    version = history.versions()[0]
    changelog.write_text(changelog.read_text() + f"\n## [{version}] - 2026-12-01\n")
    history.git(repo, "commit", "--quiet", "--all", "-m", "A second heading")
    done = history.tag_releases(repo)
    assert done.returncode == 1
    assert f"more than one heading for {version}" in done.stderr
    assert tags(repo) == {}


def test_the_repositorys_ci_runs_the_script_on_main() -> None:
    """The release workflow is a valid GitHub workflow that runs the script and pushes tags on pushes to main."""
    workflow = matrix.REPO / ".github" / "workflows" / "release.yml"
    checked = subprocess.run(
        [str(matrix.BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    loaded = yaml.safe_load(workflow.read_text())
    assert loaded[True]["push"]["branches"] == ["main"]  # YAML reads the key `on` as True
    steps = loaded["jobs"]["tag"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0
    assert [step.get("run") for step in steps[1:]] == ["python3 scripts/release.py", "git push origin --tags"]
