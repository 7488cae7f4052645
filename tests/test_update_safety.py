"""Updates that never lose a user's work silently, and say what needs their attention.

Each test works on a clone of the template's history with two releases made
by ``scripts/release.py``: ``OLD``, the working tree, and ``NEW``, the
working tree with a setting, a log test, a line of ``main.py`` and a README
section added. A service is rendered once at ``OLD`` and copied for each
test. Commands come from the rendered README and run in a shell as written,
with this suite's copier for ``uvx copier``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import flag_matrix as matrix
import history
import renames  # hooks/, on pytest's pythonpath

# no_git_identity is an autouse fixture: this module runs, as test_update
# does, with no git identity configured and no uv on PATH.
from test_update import (
    PACKAGE,
    changed,
    check_tests_pass,
    commit,
    files,
    git,
    no_git_identity,  # noqa: F401
    render,
    rewrite,
)

# What NEW adds to the template, at the end of each file.
SETTING = '\n\n# The next release\'s setting.\nRELEASE_CHANNEL = "stable"\n'
LOG_TEST = "\n\n# The next release checks one more log line.\n"
MAIN_LINE = "\n\n# The next release's app factory.\n"
SUPPORT = "\n## Support\n\nAsk the platform team.\n"
# The user's identity, for the commits the README's commands make.
USER = {
    "GIT_AUTHOR_NAME": "User",
    "GIT_AUTHOR_EMAIL": "user@example.com",
    "GIT_COMMITTER_NAME": "User",
    "GIT_COMMITTER_EMAIL": "user@example.com",
}
COPIER_COMMAND = re.compile(r"(?<![\w./-])(?:uvx )?copier(?= )")


@dataclass(frozen=True)
class Releases:
    """A clone of the template with two releases."""

    repo: Path
    old: str
    new: str


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """The template's history with the working tree released as OLD, then NEW on top."""
    clone = history.clone(tmp_path_factory.mktemp("history") / "fastapi-service-template")
    old = history.next_version(clone)
    history.cut(clone, old)
    package = clone / "template" / "src" / "{{package_name}}"
    for path, text in [
        (package / "settings.py.jinja", SETTING),
        (package / "main.py.jinja", MAIN_LINE),
        (clone / "template" / "tests" / "test_logs.py.jinja", LOG_TEST),
        (clone / "template" / "README.md.jinja", SUPPORT),
    ]:
        path.write_text(path.read_text() + text)
    history.git(clone, "commit", "--quiet", "--all", "-m", "A setting, a log test, a support section")
    new = history.next_version(clone)
    history.cut(clone, new)
    done = history.tag_releases(clone)
    assert done.returncode == 0, done.stderr
    return Releases(clone, f"v{old}", f"v{new}")


@pytest.fixture(scope="module")
def service(releases: Releases, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service rendered at OLD with the defaults, committed, as its user has it."""
    return render(releases.repo, tmp_path_factory.mktemp("service") / "example-service", releases.old)


@pytest.fixture
def svc(service: Path, tmp_path: Path) -> Path:
    """A copy of the service, for one test to change."""
    return Path(shutil.copytree(service, tmp_path / "example-service", symlinks=True))


def shell(cwd: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run a README command in ``cwd`` with bash, as the user would, this suite's copier for theirs."""
    command = COPIER_COMMAND.sub(f"{sys.executable} -m copier", command)
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=os.environ | USER, capture_output=True, text=True, check=False
    )


def update_section(readme: str) -> str:
    """The README's section on updates."""
    return readme[readme.index("## Update it from the template") :]


def console_blocks(markdown: str) -> list[list[str]]:
    """The commands of each ```console block, without their prompt."""
    blocks = re.findall(r"^```console\n(.*?)^```$", markdown, re.MULTILINE | re.DOTALL)
    return [[line.removeprefix("$ ") for line in block.splitlines()] for block in blocks]


def update_command(tree: Path) -> str:
    """The update command of the service's README."""
    [command] = console_blocks(update_section((tree / "README.md").read_text()))[0]
    return command


def commands_under(tree: Path, heading: str) -> list[list[str]]:
    """The console blocks of the ``### heading`` part of the README's update section."""
    part = update_section((tree / "README.md").read_text()).split(f"\n### {heading}\n", 1)[1]
    return console_blocks(part.split("\n### ", 1)[0])


def report_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines the after-update report printed."""
    lines = done.stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("After the update from "))
    return lines[start:]


def listed_under(report: list[str], title: str) -> list[str]:
    """The file names the report lists under the line that starts with ``title``."""
    start = next(index for index, line in enumerate(report) if line.strip().startswith(title)) + 1
    names = []
    for line in report[start:]:
        if not line.startswith("    "):
            break
        names.append(line.strip())
    return names


def answer(tree: Path, key: str) -> str:
    """One answer of the service's answers file."""
    found = re.search(rf"^{key}: (.*)$", (tree / ".copier-answers.yml").read_text(), re.MULTILINE)
    assert found, f"{key} is not in .copier-answers.yml"
    return found.group(1)


def add_owner_note(tree: Path) -> None:
    """The user's own line in the README, where the template never writes."""
    rewrite(tree / "README.md", "\n## Run it\n", "\nOwned by the pricing team.\n\n## Run it\n")


def test_renamed_package_keeps_edits_own_modules_and_imports(
    releases: Releases, svc: Path, fork_server: matrix.ForkServer
) -> None:
    """``--data package_name=orders`` brings edits of several modules and the user's own module and test to src/orders/, imports follow, nothing stays behind, and the tests pass."""
    package = svc / "src" / PACKAGE
    owned = "# Owned by the pricing team.\n"
    for name in ("main.py", "settings.py", "deps.py"):
        (package / name).write_text(owned + (package / name).read_text())
    (package / "schemas.py").write_text((package / "schemas.py").read_text() + "\nMAX_PRICE = 10_000\n")
    (package / "pricing.py").write_text(
        f'"""Prices."""\n\nimport {PACKAGE}.settings\nfrom {PACKAGE}.schemas import MAX_PRICE\n\n'
        f"VAT = 0.2\nCEILING = MAX_PRICE\nSETTINGS = {PACKAGE}.settings\n"
    )
    (svc / "tests" / "test_pricing.py").write_text(
        f'"""The user\'s own test."""\n\nimport pytest\n\nfrom {PACKAGE}.pricing import CEILING, VAT\n\n\n'
        "def test_vat_is_a_fifth_under_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:\n"
        '    """VAT is a fifth, and the ceiling comes from the schemas."""\n'
        f'    monkeypatch.setattr("{PACKAGE}.pricing.VAT", 0.25)\n'
        f"    from {PACKAGE} import pricing\n\n"
        "    assert pricing.VAT == 0.25\n"
        "    assert VAT == 0.2\n"
        "    assert CEILING == 10_000\n"
    )
    commit(svc, "Pricing")

    done = shell(svc, update_command(svc) + " --data package_name=orders")
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(done)
    assert report[0] == f"After the update from {releases.old} to {releases.new}: no conflicts."
    assert f"  Moved src/{PACKAGE}/ to src/orders/ with your changes; `git add --all` records the moves." in report
    assert not (svc / "src" / PACKAGE).exists()
    orders = svc / "src" / "orders"
    for name in ("main.py", "settings.py", "deps.py"):
        assert (orders / name).read_text().startswith(owned), name
    assert (orders / "main.py").read_text().endswith(MAIN_LINE.lstrip("\n"))
    assert (orders / "settings.py").read_text().endswith(SETTING.lstrip("\n"))
    assert (orders / "schemas.py").read_text().endswith("\nMAX_PRICE = 10_000\n")
    pricing = (orders / "pricing.py").read_text()
    assert "import orders.settings\nfrom orders.schemas import MAX_PRICE\n" in pricing
    assert "SETTINGS = orders.settings\n" in pricing
    own_test = (svc / "tests" / "test_pricing.py").read_text()
    assert "from orders.pricing import CEILING, VAT\n" in own_test
    assert 'monkeypatch.setattr("orders.pricing.VAT", 0.25)' in own_test
    before = git(svc, "ls-tree", "-r", "--name-only", "HEAD", f"src/{PACKAGE}").split()
    after = [name for name in files(svc) if name.startswith("src/") and "__pycache__" not in name]
    assert after == sorted(name.replace(f"src/{PACKAGE}/", "src/orders/") for name in before)
    git(svc, "add", "--all")
    moves = git(svc, "diff", "--cached", "--name-status", "-M", "HEAD").splitlines()
    assert f"R100\tsrc/{PACKAGE}/store.py\tsrc/orders/store.py" in moves
    check_tests_pass(fork_server, svc)


def test_moved_or_deleted_files_the_template_changed_are_named(releases: Releases, svc: Path) -> None:
    """A moved settings.py and a deleted test_logs.py miss NEW's changes: the update names both, and the README's command brings one back at the service's version."""
    git(svc, "mv", f"src/{PACKAGE}/settings.py", f"src/{PACKAGE}/config.py")
    git(svc, "rm", "--quiet", "tests/test_logs.py")
    commit(svc, "Settings are config; no log tests")

    done = shell(svc, update_command(svc))
    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(done)
    assert report[0] == f"After the update from {releases.old} to {releases.new}: no conflicts."
    assert not [line for line in report if re.search(r"[Cc]onflict|\.rej|status 1", line)][1:]
    missed = listed_under(report, "Changed by the template, but moved or deleted here")
    assert missed[:2] == [f"src/{PACKAGE}/settings.py", "tests/test_logs.py"]
    [[restore]] = commands_under(svc, "Bring back a file you deleted")
    assert "    " + restore.replace("tests/test_logs.py", f"src/{PACKAGE}/settings.py") in report
    assert not (svc / "tests" / "test_logs.py").exists()
    commit(svc, f"Update to {releases.new}")

    restored = shell(svc, restore)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert changed(svc) == ["?? tests/test_logs.py"]
    assert (svc / "tests" / "test_logs.py").read_text().endswith(LOG_TEST.lstrip("\n"))
    assert answer(svc, "_commit") == releases.new


def test_update_with_conflicts_lists_them_and_exits_1(releases: Releases, svc: Path) -> None:
    """An update whose merge leaves conflicts lists the files and exits with status 1, the merge kept for the user."""
    readme = svc / "README.md"
    readme.write_text(readme.read_text() + "\n## Owners\n\nThe pricing team.\n")
    commit(svc, "Owners")

    done = shell(svc, update_command(svc))
    assert done.returncode == 1, done.stdout + done.stderr
    report = report_of(done)
    assert report[0] == f"After the update from {releases.old} to {releases.new}:"
    assert listed_under(report, "Conflicts to resolve") == ["README.md"]
    assert "<<<<<<< before updating\n" in readme.read_text()
    assert git(svc, "diff", "--name-only", "--diff-filter=U") == "README.md\n"
    assert answer(svc, "_commit") == releases.new


def test_hand_edited_answer_is_recovered_by_the_readme_commands(releases: Releases, svc: Path) -> None:
    """After a hand-edited service_slug and the update that half-applied it, the README's commands rename every file, keep the user's edits and the service's version."""
    add_owner_note(svc)
    commit(svc, "Owners")
    rewrite(svc / ".copier-answers.yml", "\nservice_slug: example-service\n", "\nservice_slug: orders\n")
    commit(svc, "Rename the service by hand")
    recovery = commands_under(svc, "Change an answer")[1]
    half = shell(svc, update_command(svc))
    assert half.returncode == 0, half.stdout + half.stderr

    for command in recovery:
        done = shell(svc, command)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    assert answer(svc, "_commit") == releases.old
    assert answer(svc, "service_slug") == "orders"
    assert "Owned by the pricing team.\n" in (svc / "README.md").read_text()
    assert "name: orders\n" in (svc / "deploy" / "k8s" / "deployment.yaml").read_text()
    assert 'name = "orders"\n' in (svc / "pyproject.toml").read_text()
    still = [
        name for name in files(svc) if name != ".env" and "example-service" in (svc / name).read_text(errors="replace")
    ]
    assert still == []


def test_lost_tag_is_repaired_by_recording_its_commit(releases: Releases, svc: Path) -> None:
    """In a squashed history, with the recorded release's tag gone, the update stops naming it; the README's commands record that release's commit, and the update then keeps the user's edits."""
    add_owner_note(svc)
    # The history no longer holds the render: one new commit of everything.
    shutil.rmtree(svc / ".git")
    git(svc, "-c", "init.defaultBranch=main", "init", "--quiet")
    commit(svc, "Everything, squashed")
    git(releases.repo, "tag", "--delete", releases.old)
    try:
        lost = shell(svc, update_command(svc))
        assert lost.returncode != 0
        assert f"Unknown revision: '{releases.old}'" in lost.stderr
        # What the README says prints the commit, run in the template's clone.
        dry_run = shell(releases.repo, "python3 scripts/release.py --dry-run".replace("python3", sys.executable))
        [made_on] = re.findall(rf"^{releases.old}: would be made on (\w+) ", dry_run.stdout, re.MULTILINE)
        for command in commands_under(svc, "History and tags")[0]:
            done = shell(svc, command.replace("COMMIT", made_on))
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    finally:
        assert history.tag_releases(releases.repo).returncode == 0
    assert answer(svc, "_commit") == releases.new
    readme = (svc / "README.md").read_text()
    assert "Owned by the pricing team.\n" in readme
    assert readme.endswith(SUPPORT)


def test_a_commit_of_digits_only_is_recorded_as_a_string(service: Path, tmp_path: Path) -> None:
    """The README's command that records a commit leaves it a string in the answers file, even one of
    digits only (a short hash such as 8643776, about one in 27), which YAML would read as a number and
    copier then refuse."""
    answers = tmp_path / ".copier-answers.yml"
    shutil.copy(service / ".copier-answers.yml", answers)
    record = commands_under(service, "History and tags")[0][0]
    done = shell(tmp_path, record.replace("COMMIT", "8643776"))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(answers.read_text())["_commit"] == "8643776"


def test_recopy_keeps_the_version_and_the_users_own_files(releases: Releases, service: Path, svc: Path) -> None:
    """The README's recopy renders the service's own version again over the user's edits, and keeps their own files."""
    add_owner_note(svc)
    own = svc / "src" / PACKAGE / "pricing.py"
    own.write_text('"""Prices."""\n\nVAT = 0.2\n')
    commit(svc, "Owners, pricing")

    [[recopy]] = commands_under(svc, "Start again from the template")
    done = shell(svc, recopy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert answer(svc, "_commit") == releases.old
    assert (svc / "README.md").read_bytes() == (service / "README.md").read_bytes()
    assert own.read_text() == '"""Prices."""\n\nVAT = 0.2\n'
    assert changed(svc) == [" M README.md"]


def ci_guard_steps(tree: Path) -> list[str]:
    """The CI steps that look for what an update left, as this suite runs them (its tools for ``uv run``)."""
    workflow = (tree / ".github" / "workflows" / "ci.yml").read_text()
    steps = re.findall(r"^\s+- run: (uv run pre-commit run .*)$", workflow, re.MULTILINE)
    assert len(steps) == 2, workflow
    return [step.replace("uv run ", f"{matrix.BIN}/", 1) for step in steps]


def test_conflict_markers_and_rej_files_are_refused_at_commit_and_in_ci(svc: Path) -> None:
    """With the hooks installed, a commit of conflict markers in Markdown or .env.example, or of a .rej file, is refused naming each; CI's guard steps fail on them too, and pass on the service as rendered."""
    for step in ci_guard_steps(svc):
        clean = shell(svc, step)
        assert clean.returncode == 0, clean.stdout + clean.stderr
    installed = shell(svc, f"{matrix.BIN}/pre-commit install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    markers = "<<<<<<< before updating\nA=1\n=======\nA=2\n>>>>>>> after updating\n"
    for name in ("README.md", ".env.example"):
        (svc / name).write_text((svc / name).read_text() + markers)
    (svc / "src" / PACKAGE / "main.py.rej").write_text("@@ -1 +1 @@\n-old\n+new\n")
    git(svc, "add", "--all")

    refused = shell(svc, "git commit --quiet -m 'Update, unresolved'")
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    for where in ("README.md:", ".env.example:", f"src/{PACKAGE}/main.py.rej"):
        assert where in said, said
    git(svc, "commit", "--quiet", "--no-verify", "-m", "Update, unresolved")
    for step in ci_guard_steps(svc):
        failed = shell(svc, step)
        assert failed.returncode != 0, failed.stdout


def test_imports_of_the_old_package_follow_it() -> None:
    """Imports of a renamed package, the names they bind and strings naming its modules follow; other names stay."""
    source = (
        "import example_service.settings\n"
        "from example_service.schemas import Item\n"
        "from example_service import pricing\n"
        "import example_services\n\n"
        "SETTINGS = example_service.settings\n"
        'TARGET = "example_service.pricing.VAT"\n'
        'DATABASE = "example_service.db"\n\n\n'
        "def later() -> None:\n"
        "    from example_service.api import items  # noqa: F401\n"
    )
    assert renames.rewrite_imports(source, "example_service", "orders", {"api", "pricing", "schemas"}) == (
        "import orders.settings\n"
        "from orders.schemas import Item\n"
        "from orders import pricing\n"
        "import example_services\n\n"
        "SETTINGS = orders.settings\n"
        'TARGET = "orders.pricing.VAT"\n'
        'DATABASE = "example_service.db"\n\n\n'
        "def later() -> None:\n"
        "    from orders.api import items  # noqa: F401\n"
    )
    # Without `import example_service`, a variable of that name is the user's own.
    own = "from example_service.x import y\nexample_service = y\n"
    assert (
        renames.rewrite_imports(own, "example_service", "orders", set())
        == "from orders.x import y\nexample_service = y\n"
    )


def test_rej_files_left_make_the_report_fail(tmp_path: Path) -> None:
    """A .rej file an update left, even a git-ignored one, is listed and the after-update report exits 1."""
    git(tmp_path, "-c", "init.defaultBranch=main", "init", "--quiet")
    (tmp_path / ".copier-answers.yml").write_text("_commit: v1.0.0\npackage_name: example_service\n")
    (tmp_path / ".gitignore").write_text("*.rej\n")
    commit(tmp_path, "A service")
    (tmp_path / "README.md.rej").write_text("@@ -1 +1 @@\n-old\n+new\n")
    done = after_update_at_the_same_version(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    report = done.stdout.splitlines()
    assert report[0] == "After the update at v1.0.0:"
    assert listed_under(report, "Changes copier could not apply, in .rej files") == ["README.md.rej"]


def test_answers_the_update_changed_are_listed(tmp_path: Path) -> None:
    """Each recorded answer the update changed is listed with what it was and what it is.

    Copier changes one on ``--data``, and also unasked: an answer that a newer
    version's questionnaire refuses (``upstream_services: database``, say)
    takes its default. A question new in this version is not listed. A long
    answer, which copier folds over several lines, is read whole.
    """
    git(tmp_path, "-c", "init.defaultBranch=main", "init", "--quiet")
    answers = tmp_path / ".copier-answers.yml"
    described = 'Tom\'s "best" sérvice: it keeps the ledger of every invoice and reconciles the bank feeds'
    before = {
        "_commit": "v1.0.0",
        "description": f"{described}'  payments.",
        "metrics": True,
        "package_name": "example_service",
        "upstream_services": "database",
    }
    after = before | {
        "description": f"{described}' payments, daily.",
        "metrics": False,
        "new_question": "x",
        "upstream_services": "user-service",
    }
    # As copier writes its answers file.
    answers.write_text(yaml.safe_dump(before, allow_unicode=True))
    assert len(answers.read_text().splitlines()) > len(before), "the description is not folded"
    commit(tmp_path, "A service")
    answers.write_text(yaml.safe_dump(after, allow_unicode=True))
    done = after_update_at_the_same_version(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout.splitlines()
    assert report[0] == "After the update at v1.0.0: no conflicts."
    was, now = (json.dumps(recorded["description"], ensure_ascii=False) for recorded in (before, after))
    assert listed_under(report, "Answers changed") == [
        f"description: {was} -> {now}",
        'metrics: "true" -> "false"',
        'upstream_services: "database" -> "user-service"',
    ]


def after_update_at_the_same_version(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the after-update hook in ``tree`` as copier does after an update from v1.0.0 to v1.0.0."""
    script = matrix.REPO / "hooks" / "after_update.py"
    args = ["--template", str(tree), "--from", "v1.0.0", "--to", "v1.0.0"]
    return subprocess.run([sys.executable, str(script), *args], cwd=tree, capture_output=True, text=True, check=False)
