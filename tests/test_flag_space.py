"""The flag space is read from ``copier.yml``: a new bool question joins the matrix with no other change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import flag_matrix as matrix
from flag_matrix.space import FlagSpace

NEW_QUESTION = """
rate_limiting:
  type: bool
  help: Per-client rate limits
  default: false
"""


def template_with(folder: Path, text: str) -> Path:
    """``folder``'s ``copier.yml`` (the template's, if it has none) with ``text`` added to its questions."""
    copy = folder / "copier.yml"
    if not copy.exists():
        shutil.copy(matrix.REPO / "copier.yml", copy)
    copy.write_text(copy.read_text() + text)
    return copy


def test_the_template_s_space() -> None:
    """Every bool question asked is a flag, OpenTelemetry needs tracing, and the databases are the choices."""
    assert list(matrix.SPACE.flags) == [
        "http_client",
        "health_checks",
        "api_versioning",
        "request_tracing",
        "opentelemetry",
        "service_auth",
        "metrics",
    ]
    assert dict(matrix.SPACE.requires) == {"opentelemetry": "request_tracing"}
    assert list(matrix.SPACE.databases) == ["none", "sqlite", "postgresql"]
    assert "tracing_otel" not in matrix.SPACE.flags  # a computed value (when: false), never asked


def test_a_new_bool_question_doubles_the_matrix(tmp_path: Path) -> None:
    """One more bool question gives twice the combinations, each with an id that names it and parses back."""
    before = matrix.SPACE.combos()
    space = FlagSpace.from_copier_yml(template_with(tmp_path, NEW_QUESTION))
    after = space.combos()
    assert len(after) == 2 * len(before)
    assert len({combo.id for combo in after}) == len(after)
    assert {space.parse(combo.id) for combo in after} == set(after)
    with_it = [combo for combo in after if "rate_limiting" in combo.flags]
    assert len(with_it) == len(before)
    assert all("rate_limiting" in combo.id.split("-") for combo in with_it)
    assert all(combo.data["rate_limiting"] is (combo in with_it) for combo in after)


def test_a_new_flag_s_combination_renders(template: Path, tmp_path: Path) -> None:
    """A copy of the template with the new question renders its combinations as the suite renders any other."""
    copy = shutil.copytree(template, tmp_path / "template")
    space = FlagSpace.from_copier_yml(template_with(copy, NEW_QUESTION))
    combo = space.parse("client-rate_limiting-nodb")
    tree = matrix.render(copy, tmp_path / "service", combo.data)
    answers = (tree / ".copier-answers.yml").read_text()
    assert "\nrate_limiting: true\n" in answers
    assert "\nhttp_client: true\n" in answers
    assert "\ndatabase: none\n" in answers


def test_a_question_asked_under_another_flag_needs_it(tmp_path: Path) -> None:
    """A bool question with ``when: "{{ flag }}"`` is on only with that flag: half as many new combinations."""
    space = FlagSpace.from_copier_yml(template_with(tmp_path, NEW_QUESTION + '  when: "{{ metrics }}"\n'))
    combos = space.combos()
    assert len(combos) == len(matrix.SPACE.combos()) * 3 // 2
    assert all("metrics" in combo.flags for combo in combos if "rate_limiting" in combo.flags)


def test_a_condition_the_matrix_cannot_read_is_refused(tmp_path: Path) -> None:
    """A flag asked under any other condition stops the suite with the question's name, not a wrong matrix."""
    text = NEW_QUESTION + "  when: \"{{ metrics and database != 'none' }}\"\n"
    with pytest.raises(ValueError, match="rate_limiting's when"):
        FlagSpace.from_copier_yml(template_with(tmp_path, text))


def test_ids_name_unknown_flags_and_databases() -> None:
    """An id with a flag or database that does not exist is refused with what does."""
    with pytest.raises(ValueError, match="no flag is called cache"):
        matrix.Combo.from_id("client-cache-pg")
    with pytest.raises(ValueError, match="ends with no database"):
        matrix.Combo.from_id("client-mysql")
