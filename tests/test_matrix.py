"""Every combination of the feature flags renders a service that passes its own checks.

For each of the combinations (``matrix.all_combos()``), the service is rendered
from a snapshot of the working tree and must pass ``ruff check``, ``ruff format
--check``, ``mypy --strict`` and its own test suite under ``-W error``, with no
Jinja left over, no empty file, and no import of a library it does not declare;
its Dockerfile, Compose file, Kubernetes manifests and CI workflow must pass
their validators (``deploy_checks``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import flag_matrix as matrix
from flag_matrix.deploy import deploy_checks
from flag_matrix.pythons import OTHER_VERSIONS, start_tests

COMBOS = matrix.all_combos()
ALL_FLAGS = "client-health-v-trace-otel-auth-metrics-pg"


@pytest.mark.parametrize("combo", COMBOS, ids=[combo.id for combo in COMBOS])
def test_combination(
    combo: matrix.Combo,
    template: Path,
    fork_server: matrix.ForkServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """The rendered service is clean and its own tests pass."""
    check(combo, {}, template, fork_server, request, tmp_path)


@pytest.mark.parametrize("version", OTHER_VERSIONS)
def test_newer_python_version(
    version: str,
    template: Path,
    fork_server: matrix.ForkServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """The service with every flag, for another lowest Python, passes ruff and mypy for that version
    (its target and ``python_version``) and its deployment checks, and its tests pass on that Python.
    (Each version costs each worker a cold mypy cache, so one combination only.)"""
    combo = matrix.Combo.from_id(ALL_FLAGS)
    check(combo, {"python_version": version}, template, fork_server, request, tmp_path, python=version)


@pytest.mark.parametrize("database", ["sqlite", "none"])
@pytest.mark.parametrize("version", OTHER_VERSIONS)
def test_tests_pass_on_each_python(
    version: str,
    database: str,
    template: Path,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """The service with every flag, for the default lowest Python, passes its tests on each other Python
    it supports, as its CI runs them; with PostgreSQL, `test_newer_python_version` does."""
    combo = matrix.Combo(database, matrix.Combo.from_id(ALL_FLAGS).flags)
    tree = matrix.render(template, tmp_path / "service", combo.data)
    failure = start_tests(version, tree, matrix.test_env(combo, None))()
    assert failure is None, f"{combo.id} on Python {version}:\n{failure}"


# Each combination above renders the default upstream, one; these render none and two, for the
# service with every flag and for one with the client and few other flags.
UPSTREAM_CASES = [
    (combo_id, upstreams)
    for combo_id in (ALL_FLAGS, "client-metrics-sqlite")
    for upstreams in ("", "user-service,billing")
]


@pytest.mark.parametrize(
    ("combo_id", "upstreams"),
    UPSTREAM_CASES,
    ids=[f"{combo_id}-upstreams{len(list(filter(None, u.split(','))))}" for combo_id, u in UPSTREAM_CASES],
)
def test_upstream_count(
    combo_id: str,
    upstreams: str,
    template: Path,
    fork_server: matrix.ForkServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """With no upstream, or with two, the service is as clean, and its own tests pass."""
    combo = matrix.Combo.from_id(combo_id)
    check(combo, {"upstream_services": upstreams}, template, fork_server, request, tmp_path)


def check(
    combo: matrix.Combo,
    answers: dict[str, object],
    template: Path,
    fork_server: matrix.ForkServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    python: str | None = None,
) -> None:
    """Render ``combo`` with ``answers`` and fail with every check that does not pass.

    Its tests run on the suite's interpreter, or on Python ``python`` if given.
    """
    postgres_url = request.getfixturevalue("postgres_url") if combo.database == "postgresql" else None
    tree = matrix.render(template, tmp_path / "service", combo.data | answers)
    # Every check at once, the slowest first: the rendered tests and mypy run
    # in processes of their own while this one checks the contents and the
    # deployment files. Wall time is what counts, and each phase waits (on
    # PostgreSQL, on process start-up) while another can use the core.
    env = matrix.test_env(combo, postgres_url)
    tests = start_tests(python, tree, env) if python else fork_server.start(tree, env)
    static = matrix.start_static_checks(tree)
    failures = [
        *matrix.content_checks(tree),
        *deploy_checks(tree, combo),
        *static(),
    ]
    failure = tests()
    if failure:
        failures.append(failure)
    assert not failures, f"{combo.id}:\n" + "\n".join(map(str, failures))


def test_every_combination_is_listed() -> None:
    """The matrix holds each flag on and off, OpenTelemetry only with tracing, times three databases."""
    assert len(COMBOS) == 288
    assert len({combo.id for combo in COMBOS}) == 288
    assert not [c for c in COMBOS if "opentelemetry" in c.flags and "request_tracing" not in c.flags]
    assert {matrix.Combo.from_id(combo.id) for combo in COMBOS} == set(COMBOS)
