"""The questionnaire: derived defaults, conditional questions, and a refusal per rule.

A bad answer given with ``--data`` (or reached with ``--defaults``) must stop
copier before a single file is written, with a message that says what is
allowed.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest
import yaml
from copier import run_copy
from wcwidth import wcswidth

import flag_matrix as matrix

# The terminal width the questionnaire must read well at.
WIDTH = 80


def copy(template: Path, dst: Path, **data: object) -> Path:
    """Render with the defaults and ``data``, skipping tasks."""
    run_copy(str(template), dst, data=data, defaults=True, unsafe=True, quiet=True, skip_tasks=True)
    return dst


def answers(dst: Path) -> dict[str, object]:
    """The answers file as a dict."""
    return dict(yaml.safe_load((dst / ".copier-answers.yml").read_text()))


BAD_ANSWERS = [
    # (question, bad value, words the message must contain)
    ("project_name", "", "must not be empty"),
    ("project_name", "   ", "must not be empty"),
    ("project_name", "two\nlines", "one printable line"),
    ("project_name", "tab\there", "one printable line"),
    ("service_slug", "Upper", "only a-z, 0-9, -"),
    ("service_slug", "1starts-with-digit", "start with a-z"),
    ("service_slug", "ends-with-dash-", "end with a-z, 0-9"),
    ("service_slug", "under_score", "only a-z, 0-9, -"),
    ("service_slug", "a" * 64, "63 characters max"),
    ("service_slug", "slug\n", "only a-z, 0-9, -"),
    # The other services of compose.yaml, with a database now or after an update.
    ("service_slug", "postgres", "is Compose's database"),
    ("service_slug", "migrate", "is Compose's migration"),
    ("package_name", "Upper", "only a-z, 0-9 and _"),
    ("package_name", "9lives", "start with a-z or _"),
    ("package_name", "with-dash", "only a-z, 0-9 and _"),
    ("package_name", "class", "is a Python keyword"),
    ("package_name", "json", "shadows the stdlib"),
    ("package_name", "asyncio", "shadows the stdlib"),
    ("package_name", "fastapi", "is a dependency"),
    ("package_name", "httpx", "is a dependency"),
    ("package_name", "tests", "names a folder"),
    # Alembic's migrations/env.py, a module of that name to mypy, with a database now or after an update.
    ("package_name", "env", "is migrations/env.py"),
    ("description", "two\nlines", "one printable line"),
    ("python_version", "3.10", "3.11"),
    ("port", 80, "not in 1024 to 65535"),
    ("port", 1023, "not in 1024 to 65535"),
    ("port", 65536, "not in 1024 to 65535"),
    ("upstream_services", "Billing", "only a-z, 0-9, -"),
    ("upstream_services", "billing,,users", "has an empty name"),
    ("upstream_services", "billing,", "has an empty name"),
    ("upstream_services", "billing users", "only a-z, 0-9, -"),
    ("upstream_services", "billing,billing", "appears twice"),
    ("upstream_services", "example-service", "is this service"),
    ("upstream_services", "items", "is the items route"),
    # DATABASE_URL and the database's entry in /health, with a database now or after an update.
    ("upstream_services", "database,billing", "is the database"),
    # compose.yaml has a placeholder service for each upstream, beside these.
    ("upstream_services", "postgres", "is Compose's own"),
    ("upstream_services", "migrate,billing", "is Compose's own"),
]


@pytest.mark.parametrize(
    ("question", "value", "message"),
    BAD_ANSWERS,
    ids=[f"{q}={v!r}"[:60] for q, v, _ in BAD_ANSWERS],
)
def test_bad_answer_is_refused_before_writing(
    template: Path, tmp_path: Path, question: str, value: object, message: str
) -> None:
    """Each rule refuses a bad value, writing nothing, with one line of 80 columns: what was typed and what is allowed."""
    dst = tmp_path / "service"
    with pytest.raises(ValueError, match=question) as caught:
        copy(template, dst, **{question: value})
    shown = str(caught.value)
    assert message in shown
    assert not dst.exists()
    if question != "python_version":  # copier's own message for a choice
        # Copier shows it at the prompt in a toolbar one line high.
        assert "\n" not in shown
        assert wcswidth(shown) <= WIDTH, shown
        typed = json.dumps(str(value), ensure_ascii=False)
        assert typed[:6] in shown or typed.strip('"') in shown, f"{shown!r} does not say what was typed"


def test_port_must_be_an_integer(template: Path, tmp_path: Path) -> None:
    """A port that is not a number is refused by copier's own parsing, before writing."""
    dst = tmp_path / "service"
    with pytest.raises(ValueError, match="eighty"):
        copy(template, dst, port="eighty")
    assert not dst.exists()


# Values at the edge of each rule, given together in two renders: one edge of
# each rule in the first, the other in the second.
EDGES = [
    {
        "port": 1024,
        "service_slug": "a",
        "package_name": "my_service2",
        "upstream_services": "",
        "project_name": "Ünïcode Service",
        # Longer than a line holds: main.py has it in parts, one a line.
        "description": "Tom's \"best\" service's API: it keeps the ledger of every invoice, reconciles"
        " the bank feeds' payments, and tells the billing team  what is still open at the end of the day.",
    },
    {
        "port": 65535,
        "service_slug": "a" * 63,
        "upstream_services": "billing, users-" + "u" * 57,
        "description": 'Says "hello" \\ back.',
    },
]


@pytest.fixture(scope="module")
def render_once(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Render with the defaults and the answers given, once per set of answers in this module."""
    done: dict[str, Path] = {}

    def rendered(**data: object) -> Path:
        key = json.dumps(data, sort_keys=True)
        if key not in done:
            done[key] = copy(template, tmp_path_factory.mktemp("service") / "service", **data)
        return done[key]

    return rendered


@pytest.mark.parametrize(
    ("edges", "question", "value"),
    [(index, question, value) for index, edges in enumerate(EDGES) for question, value in edges.items()],
    ids=[f"{question}-{value!r}"[:60] for edges in EDGES for question, value in edges.items()],
)
def test_good_answer_at_the_edge_is_accepted(
    render_once: Callable[..., Path], edges: int, question: str, value: object
) -> None:
    """Values at the edge of each rule are accepted and recorded."""
    dst = render_once(**EDGES[edges])
    assert answers(dst)[question] == value


# The steps of the rendered CI's lint job that read every file as it is rendered.
LINTERS = ("ruff", "yamllint")


@pytest.mark.parametrize("edges", range(len(EDGES)))
def test_answers_at_the_edges_render_what_the_linters_pass(render_once: Callable[..., Path], edges: int) -> None:
    """At the edge of each rule (a 63-character slug, the package named after it and an upstream
    name as long, quotes in the description), ruff, ruff format and yamllint pass as the rendered
    CI runs them; the description reads back from the app's source as typed."""
    dst = render_once(**EDGES[edges])
    workflow = yaml.safe_load((dst / ".github" / "workflows" / "ci.yml").read_text())
    commands = [step["run"].split()[2:] for step in workflow["jobs"]["lint"]["steps"] if "run" in step]
    linters = [command for command in commands if command[0] in LINTERS]
    assert len(linters) == 3, commands
    verdicts = [matrix.start_check(" ".join(c), [str(matrix.BIN / c[0]), *c[1:]], dst) for c in linters]
    assert [str(failure) for verdict in verdicts if (failure := verdict())] == []
    main = ast.parse(next((dst / "src").glob("*/main.py")).read_text())
    [description] = [
        keyword.value
        for node in ast.walk(main)
        for keyword in getattr(node, "keywords", [])
        if keyword.arg == "description"
    ]
    assert ast.literal_eval(description) == answers(dst)["description"]


# One render for the derived defaults and both questions left out.
DERIVED = {"project_name": "Billing & Payments  API!", "http_client": False, "request_tracing": False}


def test_defaults_derive_from_the_project_name(render_once: Callable[..., Path]) -> None:
    """The slug comes from the project name, and the package name from the slug."""
    dst = render_once(**DERIVED)
    recorded = answers(dst)
    assert recorded["service_slug"] == "billing-payments-api"
    assert recorded["package_name"] == "billing_payments_api"
    assert (dst / "src" / "billing_payments_api" / "main.py").is_file()


def test_defaults_match_the_contract(render_once: Callable[..., Path]) -> None:
    """``--defaults`` records the contract's default for every question."""
    recorded = answers(render_once())
    assert {k: v for k, v in recorded.items() if not k.startswith("_")} == {
        "project_name": "Example Service",
        "service_slug": "example-service",
        "package_name": "example_service",
        "description": recorded["description"],
        "python_version": "3.11",
        "port": 8000,
        "http_client": True,
        "upstream_services": "user-service",
        "health_checks": True,
        "database": "sqlite",
        "api_versioning": True,
        "request_tracing": True,
        "opentelemetry": False,
        "service_auth": True,
        "metrics": True,
    }


def test_upstreams_are_not_asked_without_the_client(render_once: Callable[..., Path]) -> None:
    """With ``http_client`` off, ``upstream_services`` is neither asked nor recorded."""
    recorded = answers(render_once(**DERIVED))
    assert recorded["http_client"] is False
    assert "upstream_services" not in recorded


def test_opentelemetry_is_not_asked_without_tracing(render_once: Callable[..., Path]) -> None:
    """With ``request_tracing`` off, ``opentelemetry`` is neither asked nor recorded."""
    recorded = answers(render_once(**DERIVED))
    assert recorded["request_tracing"] is False
    assert "opentelemetry" not in recorded


def test_computed_values_are_not_recorded(render_once: Callable[..., Path]) -> None:
    """Values derived from the answers stay out of the answers file."""
    recorded = answers(render_once())
    assert not {"upstreams", "tracing_otel", "default_database_url"} & set(recorded)


def test_every_contract_question_is_in_the_matrix() -> None:
    """Each bool question of the questionnaire is a flag of the matrix."""
    config = yaml.safe_load((matrix.REPO / "copier.yml").read_text())
    bools = {
        name
        for name, q in config.items()
        if isinstance(q, dict) and q.get("type") == "bool" and q.get("when") is not False
    }
    assert bools == set(matrix.FLAGS)


def refusal(template: Path, tmp_path: Path, question: str, value: object) -> str:
    """The message copier refuses ``value`` for ``question`` with, given by ``--data``."""
    with pytest.raises(ValueError, match=question) as caught:
        copy(template, tmp_path / "refused", **{question: value})
    return str(caught.value)


class Terminal:
    """Copier's interactive prompt on an 80-column terminal, as its user sees it."""

    def __init__(self, args: list[str]) -> None:
        """Start copier with ``args`` in a pseudo-terminal of 80 columns."""
        self.screen = pyte.Screen(WIDTH, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(
            str(matrix.BIN / "copier"),
            args,
            timeout=30,
            dimensions=(24, WIDTH),
            # pexpect's terminal does not answer prompt_toolkit's cursor-position
            # requests, and each prompt would wait a second for the answer; this
            # is prompt_toolkit's switch for such terminals.
            env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"},
        )

    def lines(self) -> list[str]:
        """What the screen shows, line by line."""
        return [line.rstrip() for line in self.screen.display]

    def shows(self, text: str) -> bool:
        """Whether one line of the screen holds ``text`` whole."""
        return any(text in line for line in self.lines())

    def wait_for(self, text: str) -> None:
        """Read copier's output until a line of the screen holds ``text``; fail with the screen if it never does."""
        while not self.shows(text):
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=30))
            except (pexpect.TIMEOUT, pexpect.EOF):
                screen = "\n".join(self.lines())
                pytest.fail(f"the screen never showed {text!r} on one line:\n{screen}")

    def answer(self, text: str) -> None:
        """Erase the default, type ``text`` and press Enter."""
        self.child.send("\x7f" * 40 + text + "\r")


def test_the_questionnaire_reads_whole_at_80_columns(template: Path, tmp_path: Path) -> None:
    """At an 80-column prompt every help line and every refusal shows whole, and a refused answer can be retyped."""
    config = yaml.safe_load((matrix.REPO / "copier.yml").read_text())
    helps = {
        name: question["help"] for name, question in config.items() if isinstance(question, dict) and "help" in question
    }
    bad = {
        "service_slug": "Bad_Slug_With_A_Long_Name",
        "port": "80",
        "upstream_services": "billing,billing",
    }
    good = {"service_slug": "example-service", "port": "8000", "upstream_services": "user-service"}
    expected = {
        name: refusal(template, tmp_path, name, int(value) if name == "port" else value) for name, value in bad.items()
    }
    dst = tmp_path / "service"
    terminal = Terminal(["copy", "--trust", str(template), str(dst)])
    try:
        for name, help_text in helps.items():
            if name == "metrics":
                break
            terminal.wait_for(help_text)
            if name == "port":
                # Copier's own words for a value that is not a number; the help gives the range.
                terminal.answer("abc")
                terminal.wait_for("Invalid input")
            if name in bad:
                terminal.answer(bad[name])
                terminal.wait_for(expected[name])
                terminal.answer(good[name])  # the prompt is still there and takes a good answer
            else:
                terminal.child.send("\r")  # keep the default
        terminal.wait_for(helps["metrics"])
    finally:
        terminal.child.sendcontrol("c")
        terminal.child.expect(pexpect.EOF)
    assert not dst.exists()
