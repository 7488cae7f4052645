"""The template's code and templates use only the public names of the libraries they run.

A private name (copier's ``_main`` module, pytest's ``_pytest`` package, a method
of copier's ``Worker`` that starts with an underscore) can change
in any release of its library; the suite, the benchmarks, the hooks and the
rendered service reach copier, Jinja, pytest, mypy and uvicorn through what
those document, so that upgrading them is a version bump. Files are read as
text, ``.jinja`` ones included, since those are not Python until rendered.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from pathlib import Path

import flag_matrix as matrix

SCANNED = ["flag_matrix", "tests", "benchmarks", "hooks", "scripts", "template", "includes"]
SUFFIXES = {".py", ".jinja", ".toml", ".yml", ".yaml", ".cfg", ".ini", ".md"}
# The repository's own modules, which may use their own private names.
FIRST_PARTY = {"flag_matrix", "benchmarks", "tests", "hooks", "scripts", "conftest"}


@functools.cache
def libraries() -> frozenset[str]:
    """The import names of the libraries installed here (not the standard library's), less the repository's own."""
    names = set(importlib.metadata.packages_distributions())
    own = {path.stem for folder in ("tests", "hooks", "scripts") for path in (matrix.REPO / folder).glob("*.py")}
    return frozenset(names - FIRST_PARTY - own)


def private_names(text: str) -> list[str]:
    """Each use of another library's private name in ``text``: its line, and what was found.

    Found: a private top-level module (``_pytest``); a dotted path from a
    library with a part that starts with one underscore (``copier._main``,
    ``"anyio._backends._asyncio"``, ``Worker._sync``); ``from LIB import _x``;
    and patching anything reached from a library (``uvicorn.server.asyncio = ...``,
    ``mock.patch.object(uvicorn.server, "asyncio", ...)``, ``monkeypatch.setattr``). A name
    imported from a library (``from copier import Worker``) counts as the library's.
    """
    library = "|".join(sorted(map(re.escape, libraries()), key=len, reverse=True))
    imported = set(re.findall(rf"^\s*import\s+(?:{library})(?:\.\w+)*\s+as\s+(\w+)", text, re.MULTILINE))
    for match in re.finditer(rf"^\s*from\s+(?:{library})(?:\.\w+)*\s+import\s+(\([^)]*\)|[^\n]*)", text, re.MULTILINE):
        imported |= {part.split()[-1] for part in re.sub(r"#[^\n]*|[()]", "", match[1]).split(",") if part.strip()}
    names = "|".join(sorted(map(re.escape, libraries() | imported), key=len, reverse=True))
    dotted = rf"(?<![\w.])(?:{names})(?:\.\w+)+"
    private_part = re.compile(r"\._(?!_)\w*")
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        hits = []
        for match in re.finditer(dotted, line):
            if private_part.search(match[0]):
                hits.append(match[0])
        for match in re.finditer(r"(?<![\w.])(_(?!_)\w+)(?=\.\w)|\b(?:import|from)\s+(_(?!_)\w+)", line):
            if (match[1] or match[2]) in libraries():
                hits.append(match[1] or match[2])
        for match in re.finditer(rf"\bfrom\s+((?:{library})(?:\.\w+)*)\s+import\s+\(?([^#]*)", line):
            hits += [f"{match[1]}.{n}" for n in re.findall(r"\b_(?!_)\w+", match[2])]
        for match in re.finditer(rf"^\s*({dotted})\s*(?:\[[^]]*\])?\s*[-+*/|&]?=(?!=)", line):
            hits.append(f"{match[1]} = (patched)")
        for match in re.finditer(rf"""\b(?:setattr|patch\.object)\(\s*({dotted}|{names})\s*,\s*(['"]\w+['"])""", line):
            hits.append(f"{match[1]}.{match[2][1:-1]} (patched)")
        found += [f"{number}: {hit}" for hit in dict.fromkeys(hits)]
    return found


def scanned_files() -> list[Path]:
    """The repository's code, templates and configuration, this file aside (it holds the planted examples)."""
    files = []
    for folder in SCANNED:
        for path in sorted((matrix.REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and path != Path(__file__).resolve():
                files.append(path)
    return [*files, matrix.REPO / "copier.yml", matrix.REPO / "pyproject.toml"]


PLANTED = {
    "from copier._main import Worker\n": "copier._main",
    "from _pytest.config import default_plugins\n": "_pytest",
    'importlib.import_module("anyio._backends._asyncio")\n': "anyio._backends._asyncio",
    "from jinja2.bccache import _private_helper, Bucket\n": "jinja2.bccache._private_helper",
    "copier._main.Worker._sync_git_index_executable_bit = noop\n": "copier._main.Worker._sync_git_index_executable_bit",
    "from copier import Worker\nWorker._sync_git_index_executable_bit = noop\n": "Worker._sync_git_index_executable_bit",
    "from _pytest.assertion import (\n    rewrite,\n)\nrewrite._rewrite_test = cached\n": "rewrite._rewrite_test",
    'with mock.patch.object(uvicorn.server, "asyncio", fake):\n': "uvicorn.server.asyncio (patched)",
    'monkeypatch.setattr(httpx, "AsyncClient", Fake)\n': "httpx.AsyncClient (patched)",
    "import _pytest\n": "_pytest",
    "jinja2.Environment.compile = compile_cached\n": "jinja2.Environment.compile = (patched)",
    "{% set patched = uvicorn.server._serve %}\n": "uvicorn.server._serve",  # a .jinja file's text
    "monkeypatch.setattr('fastapi.routing._prepare', fake)\n": "fastapi.routing._prepare",
}
CLEAN = [
    "os._exit(code)\n",  # the standard library documents os._exit
    "self._process.kill()\n",
    "print(pytest.__version__)\n",
    "{{ _copier_conf.src_path }}/hooks/env_file.py\n",  # copier's documented variables
    "from flag_matrix.space import _WHEN_FLAG\n",  # the repository's own
    "if jinja2.Environment.compile == other:\n",
    "def _pytest(args):\n    return _pytest(args)\n",  # a function of this repository's own
    'monkeypatch.setenv("HOST", "0.0.0.0")\n',
    'monkeypatch.setattr(settings_module, "load", fake)\n',  # not a library's
]


def test_the_scan_finds_each_planted_private_name() -> None:
    """Planted uses of private names are each reported; public names and the repository's own are not."""
    for text, expected in PLANTED.items():
        found = private_names(text)
        assert any(hit.endswith(f": {expected}") for hit in found), (text, found)
    for text in CLEAN:
        assert private_names(text) == [], text


def test_no_private_name_of_another_library_is_used() -> None:
    """Nothing in the suite, benchmarks, hooks, scripts or templates names another library's private module,
    attribute or patches a library."""
    found = {
        str(path.relative_to(matrix.REPO)): hits
        for path in scanned_files()
        if (hits := private_names(path.read_text(encoding="utf-8", errors="replace")))
    }
    assert found == {}
