"""Rendering in process, with the matrix's cache of compiled Jinja, gives what copier gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import jinja2
import pytest

import flag_matrix as matrix
from flag_matrix.render import EXTENSION

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


class CompileCounter(jinja2.Environment):
    """An environment that counts what it compiles."""

    sources: ClassVar[list[str]] = []

    def compile(self, source: Any, *args: Any, **kwargs: Any) -> Any:
        """Compile as Jinja does, and note the source."""
        CompileCounter.sources.append(source if isinstance(source, str) else "<nodes>")
        return super().compile(source, *args, **kwargs)


def counting_environment(**options: Any) -> jinja2.Environment:
    """A new environment with the matrix's extension (or ``extensions``), as copier makes one per render."""
    return CompileCounter(**({"extensions": [EXTENSION]} | options))


def test_a_string_is_compiled_once_and_renders_with_each_environments_globals() -> None:
    """The second environment reuses the code but not the first one's globals or filters."""
    source = "{{ name | shout }} {{ version }} / compiled once"
    first, second = counting_environment(), counting_environment()
    first.filters["shout"], second.filters["shout"] = str.upper, str.lower
    first.globals["version"] = "1"
    before = CompileCounter.sources.count(source)
    assert first.from_string(source).render(name="Ada") == "ADA 1 / compiled once"
    assert second.from_string(source, globals={"version": "2"}).render(name="Ada") == "ada 2 / compiled once"
    assert CompileCounter.sources.count(source) == before + 1


def test_environments_with_other_options_compile_their_own() -> None:
    """Code compiled with one set of syntax options or extensions is never given to another."""
    source = "{% if true %}\n  x\n{% endif %}\n{% do items.append(1) %}{{ items }}"
    plain = counting_environment(extensions=[EXTENSION, "jinja2.ext.do"])
    trimmed = counting_environment(extensions=[EXTENSION, "jinja2.ext.do"], trim_blocks=True, lstrip_blocks=True)
    assert plain.from_string(source).render(items=[]) == "\n  x\n\n[1]"
    assert trimmed.from_string(source).render(items=[]) == "  x\n[1]"
    # Without the do extension, the same source does not parse.
    with pytest.raises(jinja2.TemplateSyntaxError):
        counting_environment().from_string(source)


def test_template_files_are_compiled_once_per_source(tmp_path: Path) -> None:
    """A file loaded by two environments is compiled once; changed, it is compiled again."""
    (tmp_path / "page.txt").write_text("{{ title }}: first")
    loaded = []
    for title in ("a", "b"):
        environment = counting_environment(loader=jinja2.FileSystemLoader(tmp_path))
        loaded.append(environment.get_template("page.txt").render(title=title))
    compiled_before_change = len(CompileCounter.sources)
    (tmp_path / "page.txt").write_text("{{ title }}: second")
    environment = counting_environment(loader=jinja2.FileSystemLoader(tmp_path))
    loaded.append(environment.get_template("page.txt").render(title="c"))
    assert loaded == ["a: first", "b: first", "c: second"]
    assert len(CompileCounter.sources) == compiled_before_change + 1
