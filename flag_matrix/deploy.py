"""Checks of a rendered service's deployment files and toolchain.

Two kinds of check, both in `deploy_checks`:

- the validators the ecosystem uses: hadolint (Dockerfile), yamllint with the
  service's own ``.yamllint.yaml``, kubernetes-validate ``--strict``, the
  GitHub-workflow and Compose JSON schemas that check-jsonschema ships,
  pre-commit's config schema, and deptry with the service's own config;
- what no schema can say: probes on the health routes, ``containerPort`` and
  ``PORT`` equal to the ``port`` answer, the migrations' init container and
  Compose's PostgreSQL exactly when they belong, settings named as the
  contract names them, no secret value anywhere.

Speed: hadolint and deptry run in other processes while the rest is checked
in this one, where each validator has an API; deptry in a warm server, and
the Kubernetes definitions (1.8 MB) and JSON schemas are loaded once per
process. Every schema comes from an installed package, and the validators are
built without any way to retrieve a remote ``$ref``: nothing is fetched.
"""

from __future__ import annotations

import atexit
import functools
import importlib.resources
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml
from ruamel.yaml import YAML

from flag_matrix.checks import BIN
from flag_matrix.forkserver import Failure
from flag_matrix.space import Combo

# Manifests that `kubectl apply -k deploy/k8s` applies, by file name; with
# SQLite (a file in the pod) one pod runs and there is no autoscaler.
AUTOSCALER = "hpa.yaml"
APPLIED = {"configmap.yaml", "deployment.yaml", "service.yaml", AUTOSCALER, "pdb.yaml"}
SECRET_EXAMPLE = "secret.example.yaml"
# Seconds for requests in flight after SIGTERM, unless SHUTDOWN_TIMEOUT says.
DEFAULT_SHUTDOWN_TIMEOUT = 20.0
CLIENT_SETTINGS = {
    "SERVICE_TIMEOUT",
    "ATTEMPT_TIMEOUT",
    "UPSTREAM_MAX_CONCURRENCY",
    "RETRY_BUDGET",
    "RETRY_ATTEMPTS",
    "RETRY_BACKOFF",
    "RETRY_BACKOFF_MAX",
    "CIRCUIT_BREAKER_THRESHOLD",
    "CIRCUIT_BREAKER_TIMEOUT",
}


def deploy_checks(tree: Path, combo: Combo) -> Iterator[Failure]:
    """Run every validator and content check on the rendered ``tree``."""
    hadolint = _hadolint(tree)
    deptry = _deptry_server().start(tree)
    try:
        yield from _yamllint(tree)
        yield from _kubernetes_validate(tree)
        yield from _json_schemas(tree)
        yield from _pre_commit(tree)
        yield from _contents(tree, combo)
    finally:
        # Also when the caller stops at the first failure: no process is left.
        failure = hadolint()
    if failure:
        yield failure
    yield from deptry()


# Each validator's verdict is a function of the bytes it reads: a verdict is
# kept per content, so the many combinations that render the same Dockerfile
# or manifest pay for validating it once per process. A kept verdict is the
# one the validator gave for those very bytes; nothing is skipped unseen.
_HADOLINT_VERDICTS: dict[str, Failure | None] = {}


def _hadolint(tree: Path) -> Callable[[], Failure | None]:
    """Start ``hadolint --failure-threshold warning Dockerfile`` unless these
    bytes were judged before; the function returned gives the verdict."""
    config = tree / ".hadolint.yaml"
    key = (tree / "Dockerfile").read_text() + "\0" + (config.read_text() if config.exists() else "")
    if key in _HADOLINT_VERDICTS:
        return lambda: _HADOLINT_VERDICTS[key]
    process = subprocess.Popen(
        [str(BIN / "hadolint"), "--failure-threshold", "warning", "Dockerfile"],
        cwd=tree,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def verdict() -> Failure | None:
        output, _ = process.communicate()
        _HADOLINT_VERDICTS[key] = Failure("hadolint", output) if process.returncode else None
        return _HADOLINT_VERDICTS[key]

    return verdict


# ---------------------------------------------------------------------------
# deptry: a warm process that runs it in each tree in turn
# ---------------------------------------------------------------------------

# Importing deptry costs several times what running it on a tree does: the
# server imports it once. It runs `deptry .` in the tree, as a user does
# (deptry matches its default excludes, such as tests/, against paths
# relative to the folder it runs in), and answers with the violations of its
# JSON report.
_DEPTRY_SERVER = """
import contextlib, json, os, sys, traceback
from deptry.cli import cli
for line in sys.stdin:
    tree = line.strip()
    report = os.path.join(tree, ".deptry.json")
    try:
        os.chdir(tree)
        with contextlib.suppress(SystemExit):
            cli.main([".", "--no-ansi", "--json-output", report], standalone_mode=False)
        with open(report) as file:
            answer = {"violations": json.load(file)}
        os.remove(report)
    except Exception:
        answer = {"error": traceback.format_exc()}
    print(json.dumps({"tree": tree, **answer}), flush=True)
"""


class _DeptryServer:
    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _DEPTRY_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the server and reap it."""
        self._process.kill()
        self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()

    def start(self, tree: Path) -> Callable[[], Iterator[Failure]]:
        """Send ``tree``; the function returned waits for the verdict."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        sent = str(tree.resolve())
        self._process.stdin.write(f"{sent}\n")
        self._process.stdin.flush()
        answers = self._process.stdout

        def verdict() -> Iterator[Failure]:
            # Skips the answer for a tree whose checks were dropped unfinished.
            for line in answers:
                answer = json.loads(line)
                if answer["tree"] == sent:
                    break
            else:
                yield Failure("deptry", "the deptry server stopped")
                return
            if "error" in answer:
                yield Failure("deptry", answer["error"])
                return
            violations = answer["violations"]
            if violations:
                yield Failure(
                    "deptry",
                    "\n".join(
                        f"{v['location']['file']}:{v['location']['line']}: {v['error']['code']} {v['error']['message']}"
                        for v in violations
                    ),
                )

        return verdict


@functools.cache
def _deptry_server() -> _DeptryServer:
    return _DeptryServer()


# PyYAML's C parser where it is built (it is, in the wheels): 5 times faster.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_Loader)


# ---------------------------------------------------------------------------
# Validators, in process
# ---------------------------------------------------------------------------


def _yamllint(tree: Path) -> Iterator[Failure]:
    """``yamllint --strict .`` with the service's config: any problem fails."""
    config_text = (tree / ".yamllint.yaml").read_text()
    config = _yamllint_config(config_text)
    problems = []
    for path in sorted(tree.rglob("*")):
        name = path.relative_to(tree).as_posix()
        if path.is_file() and config.is_yaml_file(name) and not config.is_file_ignored(name):
            problems.extend(_yamllint_file(config_text, name, path.read_text()))
    if problems:
        yield Failure("yamllint", "\n".join(problems))


@functools.lru_cache(maxsize=16)
def _yamllint_config(text: str) -> Any:
    from yamllint.config import YamlLintConfig

    return YamlLintConfig(content=text)


@functools.lru_cache(maxsize=4096)
def _yamllint_file(config_text: str, name: str, text: str) -> tuple[str, ...]:
    from yamllint import linter

    return tuple(
        f"{name}:{p.line}:{p.column}: {p.level}: {p.message}"
        for p in linter.run(text, _yamllint_config(config_text), name)
    )


@functools.cache
def _kubernetes_registry() -> tuple[Path, referencing.Registry[Any]]:
    """The newest schemas kubernetes-validate ships, as its command line picks by default."""
    from kubernetes_validate.utils import latest_version

    folder = Path(str(importlib.resources.files("kubernetes_validate"))) / "kubernetes-json-schema"
    schemas = folder / f"v{latest_version()}-local-strict"
    definitions = referencing.Resource.from_contents(json.loads((schemas / "_definitions.json").read_text()))
    return schemas, definitions @ referencing.Registry()


@functools.cache
def _kubernetes_validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """The validator kubernetes-validate ``--strict`` builds for one kind."""
    schemas, registry = _kubernetes_registry()
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = json.loads((schemas / f"{kind.lower()}-{group}.json").read_text())
    return jsonschema.Draft202012Validator(schema, registry=referencing.Resource.from_contents(schema) @ registry)


def _kubernetes_validate(tree: Path) -> Iterator[Failure]:
    errors = []
    for path in sorted((tree / "deploy" / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            errors.extend(_kubernetes_errors(path.name, path.read_text()))
    if errors:
        yield Failure("kubernetes-validate --strict", "\n".join(errors))


@functools.lru_cache(maxsize=1024)
def _kubernetes_errors(name: str, text: str) -> tuple[str, ...]:
    """kubernetes-validate ``--strict`` on one manifest's text (kept per file name and text)."""
    errors = []
    for resource in yaml.load_all(text, Loader=_Loader):
        try:
            validator = _kubernetes_validator(resource["kind"], resource["apiVersion"])
        except (KeyError, TypeError, FileNotFoundError) as error:
            errors.append(f"{name}: no schema for this resource ({error!r})")
            continue
        errors.extend(
            f"{name}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(resource)
        )
    return tuple(errors)


@functools.cache
def _vendored_validator(name: str) -> jsonschema.protocols.Validator:
    """The validator for check-jsonschema's ``--builtin-schema vendor.NAME``."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath(f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _load_yaml12(path: Path) -> Any:
    """Read YAML as check-jsonschema does (YAML 1.2: GitHub's ``on`` stays a string)."""
    return YAML(typ="safe", pure=True).load(path.read_text())


def _json_schemas(tree: Path) -> Iterator[Failure]:
    for name, path in [
        ("github-workflows", tree / ".github" / "workflows" / "ci.yml"),
        ("compose-spec", tree / "compose.yaml"),
    ]:
        errors = _schema_errors(name, path.read_text())
        if errors:
            yield Failure(f"check-jsonschema vendor.{name}", "\n".join(errors))


@functools.lru_cache(maxsize=1024)
def _schema_errors(name: str, text: str) -> tuple[str, ...]:
    """check-jsonschema ``--builtin-schema vendor.NAME`` on a YAML text."""
    document = YAML(typ="safe", pure=True).load(text)
    return tuple(
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in _vendored_validator(name).iter_errors(document)
    )


def _pre_commit(tree: Path) -> Iterator[Failure]:
    from pre_commit.clientlib import InvalidConfigError, load_config

    try:
        load_config(str(tree / ".pre-commit-config.yaml"))
    except InvalidConfigError as error:
        yield Failure("pre-commit validate-config", str(error))


# ---------------------------------------------------------------------------
# What no schema can say
# ---------------------------------------------------------------------------


def _contents(tree: Path, combo: Combo) -> Iterator[Failure]:
    answers = _load(tree / ".copier-answers.yml")
    problems = [
        *_dockerfile_problems(tree, combo, answers),
        *_compose_problems(tree, combo, answers),
        *_kubernetes_problems(tree, combo, answers),
        *_workflow_problems(tree, combo),
        *_readme_problems(tree),
    ]
    if problems:
        yield Failure("deployment contents", "\n".join(problems))


def _upstreams(answers: Mapping[str, Any]) -> list[str]:
    if not answers.get("http_client"):
        return []
    return [name.strip() for name in str(answers.get("upstream_services", "")).split(",") if name.strip()]


def _url_variable(upstream: str) -> str:
    return upstream.upper().replace("-", "_") + "_URL"


def _dockerfile_problems(tree: Path, combo: Combo, answers: Mapping[str, Any]) -> Iterator[str]:
    text = (tree / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    if bases[-1] != f"python:{answers['python_version']}-slim":
        yield f"Dockerfile: the runtime image is {bases[-1]}, not python:{answers['python_version']}-slim"
    if len(bases) < 2 or "uv sync" not in text:
        yield "Dockerfile: not a multi-stage build with uv"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        yield f"Dockerfile: the last USER is {users[-1:] or 'missing'}, not a numeric non-root user"
    if not re.search(r"^\s+HOST=0\.0\.0\.0\b", text, re.MULTILINE):
        yield "Dockerfile: HOST=0.0.0.0 is not set"
    if not re.search(rf"^EXPOSE {answers['port']}$", text, re.MULTILINE):
        yield f"Dockerfile: does not EXPOSE {answers['port']}"
    if f'"-m", "{answers["package_name"]}"]' not in text:
        yield "Dockerfile: CMD does not run the package"
    if "SECRET" in text:
        yield "Dockerfile: names a secret"
    has_migrations = "COPY migrations" in text
    if has_migrations != (combo.database != "none"):
        yield f"Dockerfile: copies the migrations: {has_migrations}, database: {combo.database}"
    ignored = (tree / ".dockerignore").read_text().split()
    if ".env" not in ignored:
        yield ".dockerignore: .env is not ignored"


def _compose_problems(tree: Path, combo: Combo, answers: Mapping[str, Any]) -> Iterator[str]:
    compose = _load(tree / "compose.yaml")
    services = compose["services"]
    slug = answers["service_slug"]
    service = services[slug]
    environment = service["environment"]
    if service.get("env_file") != ".env":
        yield "compose.yaml: the service does not read .env"
    grace = re.fullmatch(r"(\d+)s", str(service.get("stop_grace_period", "")))
    if not grace or int(grace[1]) <= DEFAULT_SHUTDOWN_TIMEOUT:
        yield (
            f"compose.yaml: stop_grace_period is {service.get('stop_grace_period')}, not more than"
            f" SHUTDOWN_TIMEOUT ({DEFAULT_SHUTDOWN_TIMEOUT:g} s)"
        )
    if environment.get("HOST") != "0.0.0.0" or f"{answers['port']}:{answers['port']}" not in service["ports"]:
        yield "compose.yaml: the service does not listen on 0.0.0.0 and publish its port"
    depends = service.get("depends_on", {})
    if ("postgres" in services) != (combo.database == "postgresql"):
        yield f"compose.yaml: PostgreSQL present: {'postgres' in services}, database: {combo.database}"
    if combo.database == "postgresql":
        if "healthcheck" not in services["postgres"]:
            yield "compose.yaml: PostgreSQL has no healthcheck"
        if depends.get("postgres", {}).get("condition") != "service_healthy":
            yield "compose.yaml: the service does not wait for PostgreSQL to be healthy"
        if "@postgres:5432/" not in environment.get("DATABASE_URL", ""):
            yield "compose.yaml: DATABASE_URL does not point at the postgres service"
    if ("migrate" in services) != (combo.database != "none"):
        yield f"compose.yaml: migrate present: {'migrate' in services}, database: {combo.database}"
    if combo.database != "none":
        if services["migrate"].get("command") != ["alembic", "upgrade", "head"]:
            yield "compose.yaml: migrate does not run `alembic upgrade head`"
        if depends.get("migrate", {}).get("condition") != "service_completed_successfully":
            yield "compose.yaml: the service does not wait for the migrations"
    upstreams = _upstreams(answers)
    for upstream in upstreams:
        if upstream not in services:
            yield f"compose.yaml: no placeholder for the upstream {upstream}"
        if environment.get(_url_variable(upstream)) != f"http://{upstream}:8000":
            yield f"compose.yaml: {_url_variable(upstream)} is not http://{upstream}:8000"
    extra = set(services) - {slug, "postgres", "migrate", *upstreams}
    if extra:
        yield f"compose.yaml: unexpected services {sorted(extra)}"


def _expected_settings(combo: Combo, upstreams: list[str]) -> set[str]:
    names = {"SERVICE_NAME", "SERVICE_VERSION", "HOST", "PORT", "LOG_LEVEL", "LOG_FORMAT"}
    names |= {"MAX_BODY_BYTES", "SHUTDOWN_TIMEOUT"}
    if combo.database == "sqlite":
        names.add("DATABASE_URL")
    if combo.database != "none":
        names.add("DATABASE_TIMEOUT")
    if "health_checks" in combo.flags:
        names.add("HEALTH_CHECK_TIMEOUT")
    if "http_client" in combo.flags:
        names |= CLIENT_SETTINGS | {_url_variable(upstream) for upstream in upstreams}
    return names


def _kubernetes_problems(tree: Path, combo: Combo, answers: Mapping[str, Any]) -> Iterator[str]:
    folder = tree / "deploy" / "k8s"
    files = {path.name for path in folder.glob("*.yaml")}
    has_secret = "service_auth" in combo.flags or combo.database == "postgresql"
    applied = APPLIED - {AUTOSCALER} if combo.database == "sqlite" else APPLIED
    if files != applied | {"kustomization.yaml"} | ({SECRET_EXAMPLE} if has_secret else set()):
        yield f"deploy/k8s: files {sorted(files)}"
    kustomization = _load(folder / "kustomization.yaml")
    if set(kustomization["resources"]) != applied:
        yield f"kustomization.yaml: resources {kustomization['resources']}, not {sorted(applied)}"
    load = {name: _load(folder / name) for name in files - {"kustomization.yaml"}}
    slug, port = answers["service_slug"], answers["port"]

    config = load["configmap.yaml"]["data"]
    expected = _expected_settings(combo, _upstreams(answers))
    if set(config) != expected:
        yield f"configmap.yaml: settings {sorted(config)}, expected {sorted(expected)}"
    if config.get("PORT") != str(port):
        yield f"configmap.yaml: PORT is {config.get('PORT')}, not {port}"
    for upstream in _upstreams(answers):
        if config.get(_url_variable(upstream)) != f"http://{upstream}":
            yield f"configmap.yaml: {_url_variable(upstream)} is not the Service's DNS name"
    if has_secret:
        secret = load[SECRET_EXAMPLE]["stringData"]
        wanted = ({"SERVICE_SECRET", "SERVICE_SECRET_PREVIOUS"} if "service_auth" in combo.flags else set()) | (
            {"DATABASE_URL"} if combo.database == "postgresql" else set()
        )
        if set(secret) != wanted:
            yield f"{SECRET_EXAMPLE}: keys {sorted(secret)}, expected {sorted(wanted)}"
        if any(secret.values()):
            yield f"{SECRET_EXAMPLE}: holds a value"

    pod = load["deployment.yaml"]["spec"]["template"]["spec"]
    (app,) = pod["containers"]
    ports = {entry["name"]: entry["containerPort"] for entry in app["ports"]}
    if ports != {"http": port}:
        yield f"deployment.yaml: container ports {ports}, not http: {port}"
    probes = {kind: app.get(kind, {}) for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    if "health_checks" in combo.flags:
        wanted_probes = {
            "startupProbe": "/health/live",
            "livenessProbe": "/health/live",
            "readinessProbe": "/health/ready",
        }
        for kind, path in wanted_probes.items():
            if probes[kind].get("httpGet") != {"path": path, "port": "http"}:
                yield f"deployment.yaml: {kind} is not GET {path} on the http port"
        # The paths the probes ask for are the ones the service's code routes.
        routed = "".join(path.read_text() for path in tree.glob("src/*/health.py"))
        for path in sorted(set(wanted_probes.values())):
            # A GET route declared with a router's decorator or added to the app.
            if not re.search(rf'(?:\.get|add_api_route)\(\s*"{re.escape(path)}"', routed):
                yield f"deployment.yaml: probes {path}, which src/*/health.py does not route"
    else:
        for kind, probe in probes.items():
            if probe.get("tcpSocket") != {"port": "http"}:
                yield f"deployment.yaml: {kind} is not a TCP probe on the http port"
    yield from _shutdown_problems(pod, app, config)
    inits = pod.get("initContainers", [])
    if combo.database == "none" and inits:
        yield "deployment.yaml: an init container without a database"
    if combo.database != "none" and [c.get("command") for c in inits] != [["alembic", "upgrade", "head"]]:
        yield "deployment.yaml: no init container running `alembic upgrade head`"
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        yield "deployment.yaml: runAsNonRoot is not set"
    scratch = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    for container in [app, *inits]:
        if container["image"] != app["image"] or container["envFrom"] != app["envFrom"]:
            yield f"deployment.yaml: {container['name']} differs from the service in image or settings"
        context = container.get("securityContext", {})
        if (
            context.get("readOnlyRootFilesystem") is not True
            or context.get("allowPrivilegeEscalation") is not False
            or context.get("capabilities", {}).get("drop") != ["ALL"]
        ):
            yield f"deployment.yaml: {container['name']} is not locked down"
        mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
        if mounts.get("/tmp") not in scratch:
            yield f"deployment.yaml: {container['name']} has no emptyDir on /tmp"
        resources = container.get("resources", {})
        if not resources.get("requests") or not resources.get("limits"):
            yield f"deployment.yaml: {container['name']} has no resource requests and limits"
    sources = {next(iter(source.values()))["name"] for source in app["envFrom"]}
    if sources != {slug}:
        yield f"deployment.yaml: settings from {sources}, not the ConfigMap and Secret {slug}"
    if any("secretRef" in source for source in app["envFrom"]) != has_secret:
        yield f"deployment.yaml: reads a Secret: {not has_secret}, but the service has secrets: {has_secret}"

    labels = load["deployment.yaml"]["spec"]["template"]["metadata"]["labels"]
    if (
        load["service.yaml"]["spec"]["selector"] != labels
        or load["pdb.yaml"]["spec"]["selector"]["matchLabels"] != labels
    ):
        yield "service.yaml, pdb.yaml: the selectors do not match the pods"
    if load["service.yaml"]["spec"]["ports"][0]["targetPort"] != "http":
        yield "service.yaml: targetPort is not the http port"
    replicas = load["deployment.yaml"]["spec"].get("replicas")
    if combo.database == "sqlite":
        if replicas != 1:
            yield f"deployment.yaml: {replicas} replicas on SQLite, where each pod has a database of its own"
    elif replicas is not None:
        yield "deployment.yaml: sets replicas, which the HorizontalPodAutoscaler owns"
    elif load[AUTOSCALER]["spec"]["scaleTargetRef"]["name"] != slug:
        yield "hpa.yaml: does not scale the Deployment"


def _shutdown_problems(pod: Mapping[str, Any], app: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    """The preStop pause, then SHUTDOWN_TIMEOUT, end before the grace period does."""
    command = app.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(command) != 2 or command[0] != "sleep" or not str(command[1]).isdigit():
        yield f"deployment.yaml: preStop is {command}, not a pause of whole seconds"
        return
    pause, grace = int(command[1]), pod.get("terminationGracePeriodSeconds", 30)
    try:
        shutdown = float(config.get("SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT))
    except ValueError:
        yield f"configmap.yaml: SHUTDOWN_TIMEOUT is {config['SHUTDOWN_TIMEOUT']!r}, not a number"
        return
    if pause + shutdown >= grace:
        yield (
            f"deployment.yaml: preStop pause ({pause} s) + SHUTDOWN_TIMEOUT ({shutdown:g} s)"
            f" leaves no time within terminationGracePeriodSeconds ({grace} s)"
        )


# What the rendered CI runs: the checks the matrix runs, and the guards that
# refuse what an update left to resolve (conflict markers, .rej files), by
# the pre-commit hooks that a commit runs too.
CI_COMMANDS = [
    "uv sync --locked",
    "ruff check",
    "ruff format --check",
    "mypy",
    "pytest",
    "deptry",
    "yamllint --strict",
    "hadolint --failure-threshold warning Dockerfile",
]
CI_GUARDS = ["conflict-markers", "rejected-hunks"]


def _workflow_problems(tree: Path, combo: Combo) -> Iterator[str]:
    workflow = _load_yaml12(tree / ".github" / "workflows" / "ci.yml")
    if workflow.get("permissions") != {"contents": "read"}:
        yield f"ci.yml: permissions {workflow.get('permissions')}, not contents: read"
    runs = " ".join(str(step.get("run", "")) for job in workflow["jobs"].values() for step in job["steps"])
    uses = " ".join(str(step.get("uses", "")) for job in workflow["jobs"].values() for step in job["steps"])
    for command in [*CI_COMMANDS, *(f"pre-commit run --all-files {hook}" for hook in CI_GUARDS)]:
        if command not in runs:
            yield f"ci.yml: does not run `{command}`"
    hooks = {hook["id"] for repo in _load(tree / ".pre-commit-config.yaml")["repos"] for hook in repo["hooks"]}
    for hook in re.findall(r"pre-commit run --all-files ([\w-]+)", runs):
        if hook not in hooks:
            yield f"ci.yml: runs the pre-commit hook {hook!r}, which .pre-commit-config.yaml does not define"
    if "astral-sh/setup-uv" not in uses:
        yield "ci.yml: does not set up uv"
    services = [name for job in workflow["jobs"].values() for name in job.get("services", {})]
    if ("postgres" in services) != (combo.database == "postgresql"):
        yield f"ci.yml: PostgreSQL service: {'postgres' in services}, database: {combo.database}"
    text = (tree / ".github" / "workflows" / "ci.yml").read_text()
    if "{%" in text or "{{" in text.replace("${{", ""):
        yield "ci.yml: Jinja left over"


def _readme_problems(tree: Path) -> Iterator[str]:
    readme = (tree / "README.md").read_text()
    for command in ["docker build", "docker compose up", "kubectl apply -k deploy/k8s", "pre-commit install"]:
        if command not in readme:
            yield f"README.md: does not explain `{command}`"
