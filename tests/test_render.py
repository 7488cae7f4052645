"""Rendering in process, with the matrix's cache of compiled Jinja, gives what copier gives."""

from __future__ import annotations

from pathlib import Path

import flag_matrix as matrix

COPIER_YML = """\
_subdirectory: template
_templates_suffix: .jinja
names:
  type: yaml
  default: [alpha, beta]
"""


def test_yield_paths_render_again_in_the_same_process(tmp_path: Path) -> None:
    """A path with copier's yield tag renders one file per item on every render, not only the first."""
    template = tmp_path / "template-repo"
    (template / "template").mkdir(parents=True)
    (template / "copier.yml").write_text(COPIER_YML)
    (template / "template" / "{% yield name from names %}{{ name }}.txt{% endyield %}.jinja").write_text("{{ name }}\n")
    for n in range(3):
        out = matrix.render(template, tmp_path / f"out{n}", {})
        assert sorted(p.name for p in out.iterdir() if p.suffix == ".txt") == ["alpha.txt", "beta.txt"]
        assert (out / "beta.txt").read_text() == "beta\n"
