"""The deployment files and toolchain of a handful of rendered services, through
`deploy_checks`; and `deploy_checks` itself, on files broken on purpose."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import flag_matrix as matrix
from flag_matrix.deploy import deploy_checks

# Between them: every flag on and off, each database, probes by HTTP and TCP,
# a Secret with each of its keys and none.
COMBOS = [
    "client-health-v-trace-auth-metrics-pg",
    "bare-nodb",
    "client-health-v-trace-otel-auth-metrics-sqlite",
    "health-auth-nodb",
    "client-pg",
    "v-trace-metrics-sqlite",
]


@pytest.fixture(scope="module")
def rendered(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each combination of `COMBOS`, rendered once for the module."""
    root = tmp_path_factory.mktemp("rendered")
    return {combo: matrix.render(template, root / combo, matrix.Combo.from_id(combo).data) for combo in COMBOS}


def failures_text(tree: Path, combo: str) -> list[str]:
    """Every failure of `deploy_checks` on ``tree``, as text."""
    return [str(failure) for failure in deploy_checks(tree, matrix.Combo.from_id(combo))]


@pytest.mark.parametrize("combo", COMBOS)
def test_rendered_deployment_passes_every_check(rendered: dict[str, Path], combo: str) -> None:
    """A rendered service's Dockerfile, Compose, Kubernetes, CI and dependencies pass every validator."""
    assert failures_text(rendered[combo], combo) == []


# Each case breaks one file of a rendered service the way a careless edit of
# the template would, and names the check that must catch it.
BREAKAGES = [
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        "Dockerfile",
        "USER 10001:10001",
        "USER root",
        ["hadolint", "numeric non-root user"],
        id="root-user",
    ),
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        "deploy/k8s/deployment.yaml",
        "containerPort: 8000",
        "containerPort: 8080",
        ["container ports"],
        id="container-port",
    ),
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        "deploy/k8s/deployment.yaml",
        "path: /health/ready",
        "path: /health/live",
        ["readinessProbe is not GET /health/ready"],
        id="readiness-path",
    ),
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        "deploy/k8s/deployment.yaml",
        "      initContainers:",
        "      initContainerz:",
        ["kubernetes-validate", "no init container"],
        id="unknown-field",
    ),
    pytest.param(
        "v-trace-metrics-sqlite",
        "deploy/k8s/deployment.yaml",
        "replicas: 1",
        "replicas: 2",
        ["2 replicas on SQLite"],
        id="sqlite-scaled-out",
    ),
    pytest.param(
        "bare-nodb",
        "deploy/k8s/hpa.yaml",
        "minReplicas: 2",
        "minReplicas: two",
        ["kubernetes-validate"],
        id="wrong-type",
    ),
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        "deploy/k8s/configmap.yaml",
        "USER_SERVICE_URL",
        "USER_SERVICE_ULR",
        ["configmap.yaml: settings"],
        id="misnamed-setting",
    ),
    pytest.param(
        "health-auth-nodb",
        "deploy/k8s/secret.example.yaml",
        'SERVICE_SECRET: ""',
        "SERVICE_SECRET: hunter2",
        ["holds a value"],
        id="secret-value",
    ),
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        "compose.yaml",
        "        condition: service_healthy\n",
        "        condition: service_started\n",
        ["does not wait for PostgreSQL"],
        id="compose-no-wait",
    ),
    pytest.param(
        "bare-nodb",
        "compose.yaml",
        "    build: .",
        "    build: .\n    restart_policy: always",
        ["vendor.compose-spec"],
        id="compose-schema",
    ),
    pytest.param(
        "bare-nodb",
        ".github/workflows/ci.yml",
        "    runs-on: ubuntu-latest",
        "    runs_on: ubuntu-latest",
        ["vendor.github-workflows"],
        id="workflow-schema",
    ),
    pytest.param(
        "bare-nodb",
        ".github/workflows/ci.yml",
        "  contents: read",
        "  contents: write",
        ["permissions"],
        id="workflow-permissions",
    ),
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        ".github/workflows/ci.yml",
        "      - run: uv run pre-commit run --all-files conflict-markers\n",
        "",
        ["does not run `pre-commit run --all-files conflict-markers`"],
        id="workflow-no-conflict-guard",
    ),
    pytest.param(
        "bare-nodb",
        ".pre-commit-config.yaml",
        "      - id: rejected-hunks\n",
        "      - id: rejected-hunk\n",
        ["runs the pre-commit hook 'rejected-hunks', which .pre-commit-config.yaml does not define"],
        id="workflow-guard-undefined",
    ),
    pytest.param(
        "bare-nodb",
        "deploy/k8s/service.yaml",
        "kind: Service",
        "kind: Service   ",
        ["yamllint", "trailing spaces"],
        id="yaml-style",
    ),
    pytest.param(
        "v-trace-metrics-sqlite",
        "pyproject.toml",
        '    "fastapi>=0.115",\n',
        "",
        ["deptry", "DEP003 'fastapi'"],
        id="undeclared-dependency",
    ),
    pytest.param(
        "v-trace-metrics-sqlite",
        ".pre-commit-config.yaml",
        "language: system",
        "language: sometimes",
        ["pre-commit"],
        id="pre-commit-config",
    ),
    pytest.param(
        "client-health-v-trace-auth-metrics-pg",
        "deploy/k8s/deployment.yaml",
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSeconds: 20",
        ["leaves no time within terminationGracePeriodSeconds (20 s)"],
        id="grace-period-short",
    ),
    pytest.param(
        "bare-nodb",
        "deploy/k8s/configmap.yaml",
        'SHUTDOWN_TIMEOUT: "20.0"',
        'SHUTDOWN_TIMEOUT: "28.0"',
        ["preStop pause (5 s) + SHUTDOWN_TIMEOUT (28 s) leaves no time"],
        id="shutdown-timeout-long",
    ),
    pytest.param(
        "health-auth-nodb",
        "compose.yaml",
        "stop_grace_period: 25s",
        "stop_grace_period: 10s",
        ["compose.yaml: stop_grace_period"],
        id="compose-kills-early",
    ),
]


@pytest.mark.parametrize(("combo", "name", "old", "new", "expected"), BREAKAGES)
def test_breakage_is_caught(
    rendered: dict[str, Path], tmp_path: Path, combo: str, name: str, old: str, new: str, expected: list[str]
) -> None:
    """A broken deployment file fails `deploy_checks`, with a message that says what broke."""
    tree = shutil.copytree(rendered[combo], tmp_path / combo)
    path = tree / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    report = "\n".join(failures_text(tree, combo))
    for fragment in expected:
        assert fragment in report


def test_validators_agree_with_their_command_lines_offline(rendered: dict[str, Path]) -> None:
    """kubernetes-validate, check-jsonschema and yamllint pass the files as their
    own commands do, with every proxy pointing nowhere, so nothing is fetched."""
    tree = rendered["client-health-v-trace-auth-metrics-pg"]
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead}
    manifests = sorted(
        str(path) for path in (tree / "deploy" / "k8s").glob("*.yaml") if path.name != "kustomization.yaml"
    )
    commands = [
        [str(matrix.BIN / "kubernetes-validate"), "--strict", "--quiet", *manifests],
        [
            str(matrix.BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            ".github/workflows/ci.yml",
        ],
        [str(matrix.BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        [str(matrix.BIN / "yamllint"), "--strict", "."],
    ]
    for command in commands:
        result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_answers_flow_into_the_deployment(template: Path, tmp_path: Path) -> None:
    """Another port, Python version and set of upstreams reach the image, Compose, Kubernetes and CI."""
    combo = matrix.Combo.from_id("client-health-auth-sqlite")
    answers = {"port": 9000, "python_version": "3.12", "upstream_services": "user-service, billing"}
    tree = matrix.render(template, tmp_path / "service", combo.data | answers)
    assert [str(failure) for failure in deploy_checks(tree, combo)] == []
    dockerfile = (tree / "Dockerfile").read_text()
    assert "FROM python:3.12-slim\n" in dockerfile
    assert "EXPOSE 9000\n" in dockerfile
    assert "containerPort: 9000" in (tree / "deploy" / "k8s" / "deployment.yaml").read_text()
    config = (tree / "deploy" / "k8s" / "configmap.yaml").read_text()
    assert "BILLING_URL: http://billing\n" in config
    assert "USER_SERVICE_URL: http://user-service\n" in config
    compose = (tree / "compose.yaml").read_text()
    assert "BILLING_URL: http://billing:8000" in compose
    assert "\n  billing:\n" in compose
    assert 'python-version: ["3.12", "3.13"]' in (tree / ".github" / "workflows" / "ci.yml").read_text()


def test_a_tree_deptry_cannot_read_fails_alone(rendered: dict[str, Path], tmp_path: Path) -> None:
    """A pyproject.toml that deptry cannot parse fails that tree's deptry check, and the next tree is checked as usual."""
    tree = shutil.copytree(rendered["bare-nodb"], tmp_path / "bare-nodb")
    (tree / "pyproject.toml").write_text("[project\n")
    assert [failure.check for failure in deploy_checks(tree, matrix.Combo.from_id("bare-nodb"))] == ["deptry"]
    assert failures_text(rendered["bare-nodb"], "bare-nodb") == []


def test_checks_dropped_unfinished_do_not_confuse_the_next(rendered: dict[str, Path], tmp_path: Path) -> None:
    """A caller that stops reading at the first failure gets the right verdict for the next tree."""
    broken = shutil.copytree(rendered["v-trace-metrics-sqlite"], tmp_path / "broken")
    pyproject = broken / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('    "fastapi>=0.115",\n', ""))
    (broken / "Dockerfile").write_text((broken / "Dockerfile").read_text().replace("USER 10001:10001", "USER root"))
    first = next(iter(deploy_checks(broken, matrix.Combo.from_id("v-trace-metrics-sqlite"))))
    assert first.check != "deptry"
    assert failures_text(rendered["v-trace-metrics-sqlite"], "v-trace-metrics-sqlite") == []


def test_a_verdict_is_kept_for_the_same_bytes_only(
    rendered: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validators judge each distinct file once per process: the same bytes get the
    same verdict again, broken ones included, and changed bytes are judged afresh."""
    runs: list[str] = []
    popen = subprocess.Popen

    def counting(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        runs.append(Path(args[0]).name)
        return popen(args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "Popen", counting)
    combo = "client-pg"
    tree = shutil.copytree(rendered[combo], tmp_path / combo)
    dockerfile, workflow = tree / "Dockerfile", tree / ".github" / "workflows" / "ci.yml"
    # Bytes no other test writes (the comment), so this process has not judged them.
    dockerfile.write_text(dockerfile.read_text().replace("USER 10001:10001", "USER root") + f"# {tmp_path}\n")
    workflow.write_text(workflow.read_text().replace("\npermissions:", "\nbogus: key  \npermissions:", 1))
    for _ in range(2):
        report = "\n".join(failures_text(tree, combo))
        assert "--- hadolint failed" in report
        assert "--- yamllint failed" in report
        assert "--- check-jsonschema vendor.github-workflows failed" in report
    assert runs.count("hadolint") == 1
    shutil.copy2(rendered[combo] / "Dockerfile", dockerfile)
    shutil.copy2(rendered[combo] / ".github" / "workflows" / "ci.yml", workflow)
    assert failures_text(tree, combo) == []
