"""Life after copy: the hooks, ``copier update`` between versions, flags turned
on and off later, conflicts, every release updated to the working tree, and
the README's own commands run as a user runs them.

Every test works on a temporary git repository of the template, and runs git
with no identity configured and no uv on ``PATH``, as on a fresh machine or in
CI: the suite's own commits name their author with ``-c``. The tests of the
README's commands build a machine of their own: only git, uv and a system
Python that refuses ``pip install`` (PEP 668).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from copier import run_copy, run_update
from copier.errors import TaskError
from plumbum import local

import env_file  # hooks/, on pytest's pythonpath
import flag_matrix as matrix
import history

IDENTITY = history.IDENTITY
PACKAGE = "example_service"
# The two versions of the `releases` repository: the working tree, and the
# working tree with a line of the rendered README rewritten.
OLD, NEW = "v1.0.0", "v1.1.0"
# The line of the rendered README that NEW rewrites.
SERVE_LINE = "`uvicorn {{ package_name }}.main:create_app --factory` serves the same app."
SERVE_LINE_V2 = "`uvicorn {{ package_name }}.main:create_app --factory` serves the same app under a process manager."
SUPPORT = "## Support\n\nQuestions go to the platform team's channel.\n"


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` as the suite (an identity given for this command only)."""
    done = subprocess.run(["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module", autouse=True)
def no_git_identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run the module with no git configuration but git's defaults, and no uv.

    Without uv the copy task says what to run instead of writing ``uv.lock``
    (the tests of the README's commands bring uv). Copier runs git and the
    tasks with plumbum's copy of the environment, taken when plumbum was
    imported, so that copy is changed as well.
    """
    home = tmp_path_factory.mktemp("home")
    path = os.pathsep.join(
        folder for folder in os.environ.get("PATH", "").split(os.pathsep) if not Path(folder, "uv").exists()
    )
    bare = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": path,
    }
    unset = [f"GIT_{who}_{part}" for who in ("AUTHOR", "COMMITTER") for part in ("NAME", "EMAIL")] + ["EMAIL", "UV"]
    with pytest.MonkeyPatch.context() as patch, local.env(**bare):
        for name, value in bare.items():
            patch.setenv(name, value)
        for name in unset:
            patch.delenv(name, raising=False)
            local.env.pop(name, "")
        yield


def rewrite(path: Path, old: str, new: str) -> None:
    """Replace ``old``, which must be in ``path``, by ``new``."""
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's working tree as a repository with two versions.

    ``OLD``, the working tree as it is; ``NEW``, with a line of the rendered
    README rewritten and a section added.
    """
    repo = tmp_path_factory.mktemp("template")
    matrix.snapshot(repo)
    git(repo, "-c", "init.defaultBranch=main", "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "The working tree")
    git(repo, "tag", OLD)
    readme = repo / "template" / "README.md.jinja"
    rewrite(readme, SERVE_LINE, SERVE_LINE_V2)
    readme.write_text(readme.read_text() + "\n" + SUPPORT)
    git(repo, "commit", "--quiet", "-am", "A README that says who helps")
    git(repo, "tag", NEW)
    return repo


def render(template: Path, dst: Path, ref: str, /, **data: object) -> Path:
    """Render ``template`` at ``ref`` as a user would: with ``--trust``, so the hooks run."""
    run_copy(str(template), dst, vcs_ref=ref, data=data, defaults=True, unsafe=True, quiet=True)
    return dst


def update(dst: Path, ref: str, /, **data: object) -> None:
    """``copier update --trust --defaults --conflict inline --vcs-ref REF``, with ``--data``."""
    run_update(
        dst,
        vcs_ref=ref,
        data=data,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
        conflict="inline",
        skip_answered=True,
    )


def commit(dst: Path, message: str) -> None:
    """Commit everything in the service, as its user."""
    git(dst, "add", "--all")
    git(dst, "commit", "--quiet", "-m", message)


def files(tree: Path) -> list[str]:
    """Every file of ``tree`` outside ``.git`` and ``.venv`` (which ``uv run`` makes), relative and sorted."""
    found = []
    for folder, subfolders, names in os.walk(tree):
        subfolders[:] = [name for name in subfolders if name not in {".git", ".venv"}]
        found.extend(Path(folder, name).relative_to(tree).as_posix() for name in names)
    return sorted(found)


def leftovers(tree: Path) -> list[str]:
    """Rejected hunks and conflict markers that an update left behind."""
    found = [name for name in files(tree) if name.endswith(".rej")]
    marker = re.compile(r"^(<{7}|>{7}) ", re.MULTILINE)
    for name in files(tree):
        text = (tree / name).read_bytes().decode(errors="replace")
        if marker.search(text):
            found.append(name)
    return found


def changed(dst: Path) -> list[str]:
    """What ``git status`` reports, untracked files included."""
    return git(dst, "status", "--porcelain", "--untracked-files=all").splitlines()


def assert_same_render(
    tree: Path, reference: Path, *, apart_from: frozenset[str] = frozenset({".env"}), own: frozenset[Path] = frozenset()
) -> None:
    """``tree`` has the files of ``reference``, byte for byte, but for those named ``apart_from``, and the user's ``own``.

    ``rendered`` is the default combination, whose checks and tests the
    matrix runs: a tree equal to it passes them too.
    """
    assert files(tree) == sorted([*files(reference), *(path.relative_to(tree).as_posix() for path in own)])
    for name in files(reference):
        if name not in apart_from:
            assert (tree / name).read_bytes() == (reference / name).read_bytes(), name


def copy_of(tree: Path, dst: Path) -> Path:
    """A copy of ``tree``, its git history included, for one test to change."""
    return Path(shutil.copytree(tree, dst, symlinks=True))


def check_tests_pass(server: matrix.ForkServer, tree: Path, database: str = "sqlite") -> None:
    """Run the service's own tests; fail with their output if they fail."""
    env = matrix.test_env(matrix.Combo(database), os.environ.get("TEST_POSTGRES_URL", matrix.DEFAULT_POSTGRES_URL))
    failure = server.pytest(tree, env)
    assert failure is None, str(failure)


# ---------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(releases: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service rendered at OLD with the defaults, hooks run, left as rendered."""
    return render(releases, tmp_path_factory.mktemp("rendered") / "svc", OLD)


@pytest.fixture(scope="module")
def monorepo(releases: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one commit and, not yet committed, a service rendered in it."""
    outer = tmp_path_factory.mktemp("monorepo")
    git(outer, "-c", "init.defaultBranch=main", "init", "--quiet")
    git(outer, "commit", "--quiet", "--allow-empty", "-m", "Monorepo")
    render(releases, outer / "services" / "svc", OLD)
    return outer


def test_copy_commits_the_render_without_a_git_identity(rendered: Path) -> None:
    """A copy with --trust leaves a repository whose first commit holds the whole render."""
    assert git(rendered, "rev-list", "--count", "HEAD").strip() == "1"
    author = subprocess.run(
        ["git", "log", "--format=%an <%ae>"], cwd=rendered, capture_output=True, text=True, check=True
    )
    assert author.stdout == "fastapi-service-template <fastapi-service-template@localhost>\n"
    assert changed(rendered) == []
    tracked = git(rendered, "ls-files").split()
    assert ".copier-answers.yml" in tracked
    assert f"src/{PACKAGE}/main.py" in tracked
    assert ".env" not in tracked


def test_copy_into_a_repository_makes_no_repository_of_its_own(monorepo: Path) -> None:
    """A service rendered inside an existing repository leaves that repository's history alone."""
    assert not (monorepo / "services" / "svc" / ".git").exists()
    assert git(monorepo, "rev-list", "--count", "HEAD").strip() == "1"
    untracked = changed(monorepo)
    assert "?? services/svc/.copier-answers.yml" in untracked
    assert all(line.startswith("?? services/svc/") for line in untracked)


def test_copy_writes_a_fresh_secret_to_env_only(rendered: Path, monorepo: Path) -> None:
    """With service_auth, .env gets a new SERVICE_SECRET that is in no other file, commit or answer."""
    secret = env_file.value_in((rendered / ".env").read_text(), "SERVICE_SECRET")
    assert secret
    assert len(secret) >= 32
    other = env_file.value_in((monorepo / "services" / "svc" / ".env").read_text(), "SERVICE_SECRET")
    assert other
    assert secret != other
    assert stat.S_IMODE((rendered / ".env").stat().st_mode) == 0o600
    git(rendered, "check-ignore", "--quiet", ".env")
    for name in files(rendered):
        if name != ".env":
            assert secret not in (rendered / name).read_bytes().decode(errors="replace"), name
    assert secret not in git(rendered, "log", "--all", "--patch")


@pytest.fixture(scope="module")
def without_auth(releases: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service rendered at OLD with ``service_auth`` off, hooks run, left as rendered."""
    return render(releases, tmp_path_factory.mktemp("without-auth") / "svc", OLD, service_auth=False)


def test_copy_without_service_auth_writes_env_without_secret(without_auth: Path) -> None:
    """Without service_auth, .env is still written (Compose reads it), with every setting left at its default."""
    written = (without_auth / ".env").read_text()
    assert env_file.value_in(written, "SERVICE_SECRET") is None
    assert not [line for line in written.splitlines() if line and not line.startswith("#")]


def test_skip_tasks_renders_a_complete_working_service(releases: Path, rendered: Path, tmp_path: Path) -> None:
    """Rendered with --skip-tasks and no --trust, the service is all there and its tests pass.

    All there: every file of the render with the tasks run, the same bytes,
    but ``.env`` (which the tasks write); so its tests pass as that default
    combination's do in the matrix.
    """
    dst = tmp_path / "svc"
    run_copy(str(releases), dst, vcs_ref=OLD, defaults=True, quiet=True, skip_tasks=True)
    assert not (dst / ".git").exists()
    assert not (dst / ".env").exists()
    assert files(dst) == [name for name in files(rendered) if name != ".env"]
    for name in files(dst):
        assert (dst / name).read_bytes() == (rendered / name).read_bytes(), name


def test_env_hook_fills_the_placeholder_and_keeps_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An .env.example placeholder becomes a real secret, the other settings stay defaults; a rerun changes nothing."""
    monkeypatch.chdir(tmp_path)
    Path(".env.example").write_text("# Settings\nPORT=8000\nSERVICE_SECRET=change-me\nSERVICE_SECRET_PREVIOUS=\n")
    assert env_file.main(["--secret", "SERVICE_SECRET"]) == 0
    written = Path(".env").read_text()
    secret = env_file.value_in(written, "SERVICE_SECRET")
    assert secret not in {None, "", "change-me"}
    settings = f"# Settings\n# PORT=8000\nSERVICE_SECRET={secret}\n# SERVICE_SECRET_PREVIOUS=\n"
    assert written == env_file.HEADER + settings
    assert env_file.main(["--secret", "SERVICE_SECRET"]) == 0
    assert Path(".env").read_text() == written


def test_env_hook_adds_a_missing_secret_to_an_existing_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's .env without the secret (the flag turned on later) gains one and keeps its own values."""
    monkeypatch.chdir(tmp_path)
    Path(".env.example").write_text("PORT=8000\n")
    Path(".env").write_text("PORT=9001")
    assert env_file.main(["--secret", "SERVICE_SECRET"]) == 0
    port, secret = Path(".env").read_text().splitlines()
    assert port == "PORT=9001"
    assert re.fullmatch(r"SERVICE_SECRET=[A-Za-z0-9_-]{43}", secret)


def test_env_hook_keeps_a_real_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret the user already set is never replaced."""
    monkeypatch.chdir(tmp_path)
    Path(".env.example").write_text("SERVICE_SECRET=change-me\n")
    Path(".env").write_text("SERVICE_SECRET='theirs'\n")
    assert env_file.main(["--secret", "SERVICE_SECRET"]) == 0
    assert Path(".env").read_text() == "SERVICE_SECRET='theirs'\n"


# ---------------------------------------------------------------------------
# Updates
# ---------------------------------------------------------------------------


def test_update_brings_the_change_and_keeps_the_users_work(rendered: Path, tmp_path: Path) -> None:
    """From OLD to NEW the template's change arrives, the user's edits stay, and the tests pass.

    The tests pass: but for the README, the answers and the user's module,
    which no test imports, the service is still the default render, whose
    tests the matrix runs.
    """
    dst = copy_of(rendered, tmp_path / "svc")
    own = dst / "src" / PACKAGE / "pricing.py"
    own.write_text('"""The user\'s own module."""\n\nVAT = 0.2\n')
    rewrite(dst / "README.md", "A FastAPI microservice.\n", "A FastAPI microservice.\n\nOwned by the pricing team.\n")
    commit(dst, "Pricing")
    update(dst, NEW)
    readme = (dst / "README.md").read_text()
    assert SERVE_LINE_V2.replace("{{ package_name }}", PACKAGE) in readme
    assert readme.endswith(SUPPORT)
    assert "Owned by the pricing team.\n" in readme
    assert own.read_text() == '"""The user\'s own module."""\n\nVAT = 0.2\n'
    assert f"_commit: {NEW}" in (dst / ".copier-answers.yml").read_text()
    assert leftovers(dst) == []
    assert sorted(changed(dst)) == [" M .copier-answers.yml", " M README.md"]
    assert_same_render(
        dst, rendered, apart_from=frozenset({".env", ".copier-answers.yml", "README.md"}), own=frozenset({own})
    )


def test_update_to_the_same_version_changes_nothing(rendered: Path, tmp_path: Path) -> None:
    """Updating a service to the version it already has leaves every file as it was."""
    dst = copy_of(rendered, tmp_path / "svc")
    before = {name: (dst / name).read_bytes() for name in files(dst)}
    update(dst, OLD)
    assert changed(dst) == []
    assert {name: (dst / name).read_bytes() for name in files(dst)} == before


def test_conflicting_edit_surfaces_as_inline_markers(rendered: Path, tmp_path: Path) -> None:
    """A line both the user and the template changed shows both versions between git's markers, and the update fails."""
    dst = copy_of(rendered, tmp_path / "svc")
    users = "`uvicorn example_service.main:create_app --factory --workers 4` in production."
    rewrite(dst / "README.md", SERVE_LINE.replace("{{ package_name }}", PACKAGE), users)
    commit(dst, "Production notes")
    # The after-update report fails the update while conflicts are left.
    with pytest.raises(TaskError, match="after_update.py"):
        update(dst, NEW)
    readme = (dst / "README.md").read_text()
    conflict = (
        f"<<<<<<< before updating\n{users}\n=======\n"
        f"{SERVE_LINE_V2.replace('{{ package_name }}', PACKAGE)}\n>>>>>>> after updating\n"
    )
    assert conflict in readme
    assert readme.endswith(SUPPORT)
    assert git(dst, "diff", "--name-only", "--diff-filter=U").split() == ["README.md"]
    assert not list(dst.rglob("*.rej"))


@dataclass(frozen=True)
class Flag:
    """A flag turned on by ``copier update --data``, and what that brings."""

    answer: str
    off: object
    on: object
    files: list[str]
    dependencies: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)


# `files` are relative to the service, with {pkg}.
FLAGS = [
    Flag(
        "metrics",
        off=False,
        on=True,
        files=["src/{pkg}/metrics.py", "tests/test_metrics.py"],
        dependencies=['"prometheus-client'],
    ),
    Flag(
        "health_checks",
        off=False,
        on=True,
        files=["src/{pkg}/health.py", "tests/test_health.py"],
        settings=["HEALTH_CHECK_TIMEOUT"],
    ),
    Flag(
        "http_client",
        off=False,
        on=True,
        files=["src/{pkg}/outbound.py", "src/{pkg}/breaker.py", "src/{pkg}/upstreams/__init__.py"],
        dependencies=['"tenacity'],
        settings=["SERVICE_TIMEOUT", "USER_SERVICE_URL"],
    ),
    Flag("api_versioning", off=False, on=True, files=["src/{pkg}/api/v2.py"]),
    Flag(
        "database",
        off="none",
        on="sqlite",
        files=["alembic.ini", "migrations/env.py", "src/{pkg}/database.py"],
        dependencies=['"aiosqlite', '"alembic', '"sqlalchemy[asyncio]'],
        settings=["DATABASE_URL"],
    ),
]


@pytest.mark.parametrize("flag", FLAGS, ids=[flag.answer for flag in FLAGS])
def test_flag_turned_on_later_adds_its_files_and_off_again_removes_them(
    flag: Flag, releases: Path, rendered: Path, tmp_path: Path
) -> None:
    """``copier update --data FLAG=on`` adds the feature's files, dependencies and settings; off takes them away.

    Turned on, the service is the one rendered with the flag on (the
    defaults) byte for byte, so its checks and tests pass as the matrix's
    render of that combination does; turned off again, it is its first commit.
    """
    dst = render(releases, tmp_path / "svc", OLD, **{flag.answer: flag.off})
    first = git(dst, "rev-parse", "HEAD").strip()
    paths = [dst / name.format(pkg=PACKAGE) for name in flag.files]

    def present() -> list[bool]:
        pyproject = (dst / "pyproject.toml").read_text()
        example = (dst / ".env.example").read_text()
        return (
            [path.is_file() for path in paths]
            + [dependency in pyproject for dependency in flag.dependencies]
            + [f"\n{name}=" in example for name in flag.settings]
        )

    assert not any(present())
    update(dst, OLD, **{flag.answer: flag.on})
    assert all(present())
    assert leftovers(dst) == []
    assert_same_render(dst, rendered)
    commit(dst, f"Turn {flag.answer} on")
    update(dst, OLD, **{flag.answer: flag.off})
    assert not any(present())
    git(dst, "add", "--all")
    assert git(dst, "diff", "--cached", "--stat", first) == ""


def test_service_auth_turned_on_later_gets_a_secret_and_off_keeps_env(without_auth: Path, tmp_path: Path) -> None:
    """Turning service_auth on by update adds a secret to .env; turning it off leaves the user's .env alone."""
    dst = copy_of(without_auth, tmp_path / "svc")
    assert env_file.value_in((dst / ".env").read_text(), "SERVICE_SECRET") is None
    update(dst, OLD, service_auth=True)
    secret = env_file.value_in((dst / ".env").read_text(), "SERVICE_SECRET")
    assert secret
    assert not any(line.endswith(" .env") for line in changed(dst))
    for name in files(dst):
        if name != ".env":
            assert secret not in (dst / name).read_bytes().decode(errors="replace"), name
    commit(dst, "Service auth on")
    update(dst, OLD, service_auth=False)
    assert env_file.value_in((dst / ".env").read_text(), "SERVICE_SECRET") == secret


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the template's history, working tree on top, its releases tagged by its own script."""
    clone = history.clone(tmp_path_factory.mktemp("history") / "template")
    done = history.tag_releases(clone)
    assert done.returncode == 0, done.stderr
    return clone


@pytest.mark.parametrize("version", history.versions())
def test_every_release_updates_to_head_cleanly(version: str, released: Path, rendered: Path, tmp_path: Path) -> None:
    """A service rendered from any release of the changelog updates to the working tree with nothing to resolve."""
    dst = render(released, tmp_path / "svc", f"v{version}")
    assert f"_commit: v{version}\n" in (dst / ".copier-answers.yml").read_text()
    update(dst, "HEAD")
    assert leftovers(dst) == []
    assert git(dst, "diff", "--name-only", "--diff-filter=U") == ""
    # `rendered` is the working tree rendered with the same (default) answers.
    assert_same_render(dst, rendered, apart_from=frozenset({".env", ".copier-answers.yml"}))


# ---------------------------------------------------------------------------
# The hooks' answers to what they cannot do
# ---------------------------------------------------------------------------


def test_copy_from_a_relative_path_records_the_absolute_one(
    releases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``copier copy . ../svc`` records the template's absolute path, so the service updates later from its folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(releases)
    run_copy(".", work / "svc", vcs_ref=OLD, defaults=True, unsafe=True, quiet=True)
    dst = work / "svc"
    assert f"_src_path: {releases}\n" in (dst / ".copier-answers.yml").read_text()
    assert changed(dst) == []
    monkeypatch.chdir(dst)
    update(dst, NEW)
    assert f"_commit: {NEW}\n" in (dst / ".copier-answers.yml").read_text()
    assert SERVE_LINE_V2.replace("{{ package_name }}", PACKAGE) in (dst / "README.md").read_text()


def test_copy_without_uv_says_what_to_run_and_commits_the_rest(
    releases: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """With no uv on the machine the render completes and is committed, and the task says how to add uv.lock."""
    dst = render(releases, tmp_path / "svc", OLD)
    out = capfd.readouterr().out
    assert "install uv, run `uv lock` and commit uv.lock" in out
    assert not (dst / "uv.lock").exists()
    assert changed(dst) == []


def test_lock_task_offline_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, with nothing cached, the lock task names the failure and what to run, and succeeds."""
    monkeypatch.chdir(tmp_path)
    Path("pyproject.toml").write_text('[project]\nname = "svc"\nversion = "0.1.0"\ndependencies = ["httpx>=0.27"]\n')
    env = {"UV": str(matrix.BIN / "uv"), "UV_OFFLINE": "1", "UV_CACHE_DIR": str(tmp_path / "empty-cache")}
    done = subprocess.run(
        [sys.executable, str(matrix.REPO / "hooks" / "uv_lock.py")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("`uv lock` failed (")
    assert done.stdout.rstrip().endswith("run `uv lock` once online, and commit uv.lock.")
    assert not Path("uv.lock").exists()


def test_lock_task_leaves_a_conflicted_pyproject_to_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an update that left conflict markers in pyproject.toml, the lock task says to resolve them first."""
    monkeypatch.chdir(tmp_path)
    conflicted = (
        '[project]\nname = "svc"\n<<<<<<< before updating\nversion = "1"\n=======\nversion = "2"\n>>>>>>> after\n'
    )
    Path("pyproject.toml").write_text(conflicted)
    done = subprocess.run(
        [sys.executable, str(matrix.REPO / "hooks" / "uv_lock.py")],
        env={**os.environ, "UV": str(matrix.BIN / "uv")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout == "pyproject.toml has conflict markers: resolve them, then run `uv lock` and commit uv.lock.\n"
    assert not Path("uv.lock").exists()


# ---------------------------------------------------------------------------
# The README's commands, as written, on a machine with only git, uv and a
# system Python that refuses `pip install` (PEP 668)
# ---------------------------------------------------------------------------


def console_blocks(markdown: str) -> list[list[str]]:
    """The lines of each ```console block of a Markdown document, in order."""
    return [block.splitlines() for block in re.findall(r"^```console\n(.*?)^```$", markdown, re.MULTILINE | re.DOTALL)]


def rendered_update_command(readme: str) -> str:
    """The update command of a rendered README, without its prompt."""
    section = readme[readme.index("## Update it from the template") :]
    [command] = [line.removeprefix("$ ") for line in console_blocks(section)[0] if "copier update" in line]
    return command


def uv_cache() -> str:
    """The uv cache of the machine running the suite (a user's, once uv has been used)."""
    found = subprocess.run([str(matrix.BIN / "uv"), "cache", "dir"], capture_output=True, text=True, check=True)
    return found.stdout.strip()


UV_CACHE = os.environ.get("UV_CACHE_DIR") or uv_cache()
# How this machine reaches the package index (certificates, proxies, index),
# which a user's shell on it would have too.
NETWORK = {"SSL_CERT_FILE", "SSL_CERT_DIR", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS"}


def network_settings() -> dict[str, str]:
    """The variables of the suite's environment that say how to reach the package index."""
    return {name: value for name, value in os.environ.items() if name in NETWORK or name.lower().endswith("_proxy")}


@dataclass(frozen=True)
class Machine:
    """A new machine: git, uv, and a system Python 3 that is externally managed."""

    python: Path
    env: dict[str, str]

    def run(self, command: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` with bash in ``cwd`` on this machine, as pasted into its shell."""
        return subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=self.env | extra, capture_output=True, text=True, check=False
        )


def externally_managed_python(prefix: Path) -> Path:
    """A Python installation at ``prefix`` (not a virtual environment) that PEP 668 marks as externally managed.

    It is this interpreter's own installation seen through links, as a
    Debian or Ubuntu ``python3`` is: its standard library carries an
    ``EXTERNALLY-MANAGED`` file, so ``pip install`` refuses to touch it.
    """
    base = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = prefix / "lib" / version
    stdlib.mkdir(parents=True)
    for entry in (base / "lib").iterdir():
        if entry.name != version:
            (prefix / "lib" / entry.name).symlink_to(entry)
    for entry in (base / "lib" / version).iterdir():
        if entry.name != "site-packages":
            (stdlib / entry.name).symlink_to(entry)
    (stdlib / "site-packages").mkdir()
    (stdlib / "site-packages" / "pip").symlink_to(base / "lib" / version / "site-packages" / "pip")
    (stdlib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=Use apt, or a virtual environment.\n")
    (prefix / "bin").mkdir()
    # A copy, not a link: Python finds its installation from where its binary is.
    python = prefix / "bin" / "python3"
    shutil.copy2(Path(base / "bin" / version), python)
    return python


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Machine:
    """git, uv and uvx, and an externally managed ``python3``; a fresh home, no git identity."""
    root = tmp_path_factory.mktemp("machine")
    tools = root / "tools"
    tools.mkdir()
    for name in ("uv", "uvx"):
        (tools / name).symlink_to(matrix.BIN / name)
    python = externally_managed_python(root / "python")
    env = {
        "PATH": os.pathsep.join([str(tools), str(python.parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": os.environ["HOME"],
        "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "LANG": "C.UTF-8",
        # What uv downloaded before on this machine, so that the test does not
        # fetch every package again; uv fetches what is missing or newer.
        "UV_CACHE_DIR": UV_CACHE,
        # The Python above is the one to use: never download another.
        "UV_PYTHON_DOWNLOADS": "never",
        **network_settings(),
    }
    return Machine(python, env)


def test_the_machine_refuses_pip_install(machine: Machine, tmp_path: Path) -> None:
    """The test machine's python3 refuses ``python3 -m pip install uv`` as PEP 668 says, so the README cannot need it."""
    done = machine.run("python3 -m pip install --dry-run uv", tmp_path)
    assert done.returncode != 0
    assert "externally-managed-environment" in done.stdout + done.stderr
    assert machine.run("command -v copier", tmp_path).stdout == ""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(machine: Machine, command: str, cwd: Path, port: int, deadline: float = 300.0) -> tuple[str, int]:
    """Run ``command``, which ends by serving; once the app has started, check it answers, then stop it.

    Returns what it printed and the status of ``GET /api/v1/items``.
    """
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=machine.env | {"PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    printed: list[str] = []
    end = time.monotonic() + deadline
    try:
        while "Application startup complete" not in (printed[-1] if printed else ""):
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, end - time.monotonic()))
            line = process.stdout.readline() if ready else ""
            if not line:
                pytest.fail("the command stopped, or did not serve in time:\n" + "".join(printed))
            printed.append(line)
        status = httpx.get(f"http://127.0.0.1:{port}/api/v1/items", timeout=10).status_code
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    return "".join(printed) + rest, status


SUPPORT_SECTION = "\n## Support\n\nAsk the platform team.\n"


def test_readme_first_command_serves_and_its_update_command_brings_a_release(machine: Machine, tmp_path: Path) -> None:
    """README's first command, as written, serves; the rendered README's update command then brings the next release.

    On a clone of the template whose working tree is its newest release, as
    a user's clone is. Between the two, ``git status`` is clean and
    ``uv sync --locked`` passes; the update keeps the user's edits, brings
    the template's new README section and dependency, and the lock follows.
    """
    clone = history.clone(tmp_path / "fastapi-service-template")
    version = history.next_version(clone)
    history.cut(clone, version)
    assert history.tag_releases(clone).returncode == 0
    first, _test_command = console_blocks((matrix.REPO / "README.md").read_text())[:2]
    [command] = first
    printed, status = serve(machine, command, clone, free_port())
    assert status == 200, printed
    svc = tmp_path / "example-service"
    assert changed(svc) == [], printed
    assert "uv.lock" in git(svc, "ls-files").split()
    answers = (svc / ".copier-answers.yml").read_text()
    assert f"_src_path: {clone}\n" in answers
    assert f"_commit: v{version}\n" in answers
    readme = (svc / "README.md").read_text()
    update_command = rendered_update_command(readme)
    assert f"\n    {update_command}\n" in printed, "the next steps and the rendered README give different updates"
    synced = machine.run("uv sync --locked", svc)
    assert synced.returncode == 0, synced.stderr
    assert changed(svc) == []

    # The user's own work, committed.
    own = svc / "src" / PACKAGE / "pricing.py"
    own.write_text('"""The user\'s own module."""\n\nVAT = 0.2\n')
    rewrite(svc / "README.md", "A FastAPI microservice.\n", "A FastAPI microservice.\n\nOwned by the pricing team.\n")
    commit(svc, "Pricing")

    # The template's next release: a README section and a runtime dependency.
    readme_template = clone / "template" / "README.md.jinja"
    readme_template.write_text(readme_template.read_text() + SUPPORT_SECTION)
    rewrite(
        clone / "template" / "pyproject.toml.jinja",
        '    "fastapi>=0.115",\n',
        '    "anyio>=4.4",\n    "fastapi>=0.115",\n',
    )
    git(clone, "commit", "--quiet", "--all", "-m", "Support section; anyio")
    newer = history.next_version(clone)
    history.cut(clone, newer)
    assert history.tag_releases(clone).returncode == 0

    updated = machine.run(update_command, svc)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert f"_commit: v{newer}\n" in (svc / ".copier-answers.yml").read_text()
    readme = (svc / "README.md").read_text()
    assert readme.endswith(SUPPORT_SECTION)
    assert "Owned by the pricing team.\n" in readme
    assert own.read_text() == '"""The user\'s own module."""\n\nVAT = 0.2\n'
    assert leftovers(svc) == []
    assert sorted(changed(svc)) == [" M .copier-answers.yml", " M README.md", " M pyproject.toml", " M uv.lock"]
    assert machine.run("uv lock --check", svc).returncode == 0
    assert '{ name = "anyio", specifier = ">=4.4" }' in (svc / "uv.lock").read_text()


def test_readme_skip_tasks_steps_work_as_pasted(machine: Machine, tmp_path: Path) -> None:
    """README's --skip-tasks steps, pasted, leave what the tasks leave: a secret in .env, uv.lock, one clean commit."""
    clone = history.clone(tmp_path / "fastapi-service-template")
    history.cut(clone, history.next_version(clone))
    assert history.tag_releases(clone).returncode == 0
    readme = (matrix.REPO / "README.md").read_text()
    [steps] = [block for block in console_blocks(readme) if any("--skip-tasks" in line for line in block)]
    identity = {"GIT_AUTHOR_NAME": "User", "GIT_AUTHOR_EMAIL": "user@example.com"}
    identity |= {"GIT_COMMITTER_NAME": "User", "GIT_COMMITTER_EMAIL": "user@example.com"}
    done = machine.run("set -e\n" + "\n".join(steps), clone, **identity)
    assert done.returncode == 0, done.stdout + done.stderr
    svc = tmp_path / "example-service"
    # What the tasks would have written: only SERVICE_SECRET set, to a fresh value.
    settings = [line for line in (svc / ".env").read_text().splitlines() if line and not line.startswith("#")]
    [secret] = settings
    assert re.fullmatch(r"SERVICE_SECRET=[A-Za-z0-9_-]{43}", secret)
    assert git(svc, "rev-list", "--count", "HEAD").strip() == "1"
    assert "uv.lock" in git(svc, "ls-files").split()
    assert changed(svc) == []
    assert f"_src_path: {clone}\n" in (svc / ".copier-answers.yml").read_text()
    # The message after the copy gives the same steps, for this service.
    for line in steps[2:]:
        assert line in done.stderr, f"the next steps do not give: {line}"
