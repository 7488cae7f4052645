"""The questionnaire: derived defaults, conditional questions, and a refusal per rule.

A bad answer given with ``--data`` (or reached with ``--defaults``) must stop
copier before a single file is written, with a message that says what is
allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pexpect
import pytest
import yaml
from copier import run_copy

import matrix


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
    ("project_name", "two\nlines", "one line of printable"),
    ("project_name", "tab\there", "one line of printable"),
    ("service_slug", "Upper", "DNS-1123"),
    ("service_slug", "1starts-with-digit", "DNS-1123"),
    ("service_slug", "ends-with-dash-", "DNS-1123"),
    ("service_slug", "under_score", "DNS-1123"),
    ("service_slug", "a" * 64, "DNS-1123"),
    ("service_slug", "slug\n", "DNS-1123"),
    ("package_name", "Upper", "lower-case Python identifier"),
    ("package_name", "9lives", "lower-case Python identifier"),
    ("package_name", "with-dash", "lower-case Python identifier"),
    ("package_name", "class", "keyword"),
    ("package_name", "json", "standard-library"),
    ("package_name", "asyncio", "standard-library"),
    ("package_name", "fastapi", "dependency"),
    ("package_name", "httpx", "dependency"),
    ("package_name", "tests", "dependency or folder"),
    ("description", "two\nlines", "one line"),
    ("python_version", "3.10", "3.11"),
    ("port", 80, "1024 to 65535"),
    ("port", 1023, "1024 to 65535"),
    ("port", 65536, "1024 to 65535"),
    ("upstream_services", "Billing", "DNS-1123"),
    ("upstream_services", "billing,,users", "DNS-1123"),
    ("upstream_services", "billing,", "DNS-1123"),
    ("upstream_services", "billing users", "DNS-1123"),
    ("upstream_services", "billing,billing", "appear once"),
    ("upstream_services", "example-service", "the service itself"),
    ("upstream_services", "items", "items resource"),
]


@pytest.mark.parametrize(
    ("question", "value", "message"),
    BAD_ANSWERS,
    ids=[f"{q}={v!r}"[:60] for q, v, _ in BAD_ANSWERS],
)
def test_bad_answer_is_refused_before_writing(
    template: Path, tmp_path: Path, question: str, value: object, message: str
) -> None:
    """Each rule refuses a bad value with a message naming what is allowed, and writes nothing."""
    dst = tmp_path / "service"
    with pytest.raises(ValueError, match=question) as caught:
        copy(template, dst, **{question: value})
    assert message in str(caught.value)
    assert not dst.exists()


def test_port_must_be_an_integer(template: Path, tmp_path: Path) -> None:
    """A port that is not a number is refused by copier's own parsing, before writing."""
    dst = tmp_path / "service"
    with pytest.raises(ValueError, match="eighty"):
        copy(template, dst, port="eighty")
    assert not dst.exists()


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("port", 1024),
        ("port", 65535),
        ("service_slug", "a"),
        ("service_slug", "a" * 63),
        ("package_name", "my_service2"),
        ("upstream_services", ""),
        ("upstream_services", "billing, users"),
        ("project_name", "Ünïcode Service"),
        ("description", 'Says "hello" \\ back.'),
    ],
)
def test_good_answer_at_the_edge_is_accepted(template: Path, tmp_path: Path, question: str, value: object) -> None:
    """Values at the edge of each rule are accepted and recorded."""
    dst = copy(template, tmp_path / "service", **{question: value})
    assert answers(dst)[question] == value


def test_defaults_derive_from_the_project_name(template: Path, tmp_path: Path) -> None:
    """The slug comes from the project name, and the package name from the slug."""
    dst = copy(template, tmp_path / "service", project_name="Billing & Payments  API!")
    recorded = answers(dst)
    assert recorded["service_slug"] == "billing-payments-api"
    assert recorded["package_name"] == "billing_payments_api"
    assert (dst / "src" / "billing_payments_api" / "main.py").is_file()


def test_defaults_match_the_contract(template: Path, tmp_path: Path) -> None:
    """``--defaults`` records the contract's default for every question."""
    recorded = answers(copy(template, tmp_path / "service"))
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


def test_upstreams_are_not_asked_without_the_client(template: Path, tmp_path: Path) -> None:
    """With ``http_client`` off, ``upstream_services`` is neither asked nor recorded."""
    recorded = answers(copy(template, tmp_path / "service", http_client=False))
    assert "upstream_services" not in recorded


def test_opentelemetry_is_not_asked_without_tracing(template: Path, tmp_path: Path) -> None:
    """With ``request_tracing`` off, ``opentelemetry`` is neither asked nor recorded."""
    recorded = answers(copy(template, tmp_path / "service", request_tracing=False))
    assert "opentelemetry" not in recorded


def test_computed_values_are_not_recorded(template: Path, tmp_path: Path) -> None:
    """Values derived from the answers stay out of the answers file."""
    recorded = answers(copy(template, tmp_path / "service"))
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


def test_bad_answer_is_refused_at_the_prompt(template: Path, tmp_path: Path) -> None:
    """Typed at copier's interactive prompt, a bad port is refused with the rule, and the prompt stays."""
    dst = tmp_path / "service"
    child = pexpect.spawn(
        str(matrix.BIN / "copier"),
        ["copy", "--trust", str(template), str(dst)],
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 200),
        # pexpect's terminal does not answer prompt_toolkit's cursor-position
        # requests, and each prompt would wait a second for the answer; this
        # is prompt_toolkit's switch for such terminals.
        env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"},
    )
    try:
        for help_text in [
            "Human-readable name",
            "Short name used",
            "Python import name",
            "One sentence",
            "Lowest Python version",
        ]:
            child.expect(help_text)
            child.send("\r")  # keep the default
        child.expect("TCP port")
        child.send("\x7f" * 8 + "80\r")  # erase the default, type 80
        child.expect(r"The port must be an integer from 1024 to 65535 \(got 80\)")
        child.send("\x7f" * 8 + "8080\r")  # the prompt is still there and takes a good answer
        child.expect("Resilient outbound HTTP client")
    finally:
        child.sendcontrol("c")
        child.expect(pexpect.EOF)
    assert not dst.exists()
