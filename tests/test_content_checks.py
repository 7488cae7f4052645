"""The matrix's own checks catch what they are meant to catch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import flag_matrix as matrix

PYPROJECT = """\
[project]
name = "svc"
dependencies = ["fastapi>=0.115", "uvicorn>=0.30"]

[dependency-groups]
dev = ["pytest>=8"]
"""


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A small rendered-looking tree with a pyproject and ``files``."""
    defaults = {
        "pyproject.toml": PYPROJECT,
        "src/svc/__init__.py": '"""Svc."""\n',
        "src/svc/main.py": "import fastapi\nimport uvicorn\n\nfrom . import other\n",
    }
    for name, text in (defaults | files).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def problems(root: Path) -> str:
    """Everything content_checks says about ``root``."""
    return "\n".join(failure.output for failure in matrix.content_checks(root))


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    """A tree with declared imports and no debris has no problem."""
    assert problems(tree(tmp_path, {"tests/test_x.py": "import pytest\n"})) == ""


def test_jinja_left_over_is_caught(tmp_path: Path) -> None:
    """A Jinja tag or expression that survived rendering is reported with its file."""
    found = problems(tree(tmp_path, {"README.md": "Hello {{ name }}\n", "a.py": "x = 1  # {% if %}\n"}))
    assert "README.md: Jinja left over" in found
    assert "a.py: Jinja left over" in found


def test_github_expressions_are_not_jinja(tmp_path: Path) -> None:
    """GitHub Actions' ``${{ }}`` is meant to stay."""
    assert problems(tree(tmp_path, {"ci.yml": "run: echo ${{ matrix.python }}\n"})) == ""


def test_empty_files_and_modules_are_caught(tmp_path: Path) -> None:
    """An empty file, or a module with only comments, is reported."""
    found = problems(tree(tmp_path, {"src/svc/empty.py": "\n\n", "src/svc/note.py": "# nothing\n"}))
    assert "src/svc/empty.py: empty file" in found
    assert "src/svc/note.py: a module with nothing in it" in found


def test_undeclared_import_is_caught(tmp_path: Path) -> None:
    """A module that imports a library the project does not declare is reported."""
    found = problems(tree(tmp_path, {"src/svc/extra.py": "import httpx\n"}))
    assert "src/svc/extra.py:1: imports 'httpx'" in found


def test_dev_tools_are_for_tests_only(tmp_path: Path) -> None:
    """The service's code may not import what only the dev group installs."""
    found = problems(tree(tmp_path, {"src/svc/extra.py": "import pytest\n"}))
    assert "imports 'pytest'" in found


def test_unused_dependency_is_caught(tmp_path: Path) -> None:
    """A runtime dependency that no module imports is reported."""
    found = problems(tree(tmp_path, {"src/svc/main.py": "import fastapi\n"}))
    assert "depends on 'uvicorn', which no module imports" in found


def test_fast_render_matches_copier(template: Path, tmp_path: Path) -> None:
    """The matrix's sped-up renders write exactly what the ``copier copy`` command writes."""
    for combo in [
        matrix.Combo.from_id("client-health-v-trace-otel-auth-metrics-sqlite"),
        matrix.Combo.from_id("bare-nodb"),
    ]:
        plain = tmp_path / f"plain-{combo.id}"
        answers = [f"--data={key}={str(value).lower()}" for key, value in combo.data.items()]
        command = [str(matrix.BIN / "copier"), "copy", "--quiet", "--defaults", "--trust", "--skip-tasks"]
        subprocess.run([*command, *answers, str(template), str(plain)], check=True)
        fast = matrix.render(template, tmp_path / f"fast-{combo.id}", combo.data)
        names = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
        assert names == sorted(p.relative_to(fast) for p in fast.rglob("*") if p.is_file())
        for name in names:
            assert (plain / name).read_bytes() == (fast / name).read_bytes(), name
        # A second fast render in the same process, after others: still the same.
        again = matrix.render(template, tmp_path / f"again-{combo.id}", combo.data)
        assert all((again / name).read_bytes() == (plain / name).read_bytes() for name in names)
