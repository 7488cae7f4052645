"""The maintainers' documents give commands that the programs they name accept.

Each ``uv run python -m flag_matrix ...`` and ``uv run python -m
benchmarks.run ...`` line of a console block in CONTRIBUTING.md and
benchmarks/README.md is read from the document and parsed by the program's
own parser: a flag renamed in ``copier.yml``, a benchmark or an option
renamed, fails here rather than in a maintainer's shell.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import flag_matrix as matrix
from benchmarks import run as benchmarks_run
from flag_matrix import __main__ as flag_matrix_main

DOCUMENTS = ["CONTRIBUTING.md", "benchmarks/README.md"]
PROGRAMS = {"flag_matrix": flag_matrix_main.parse, "benchmarks.run": benchmarks_run.parse}


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(document, program, arguments) of each console line that runs one of `PROGRAMS`."""
    commands = []
    for name in DOCUMENTS:
        text = (matrix.REPO / name).read_text(encoding="utf-8")
        for block in re.findall(r"^```console\n(.*?)^```$", text, re.MULTILINE | re.DOTALL):
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                if words[:4] == ["uv", "run", "python", "-m"] and words[4] in PROGRAMS:
                    commands.append((name, words[4], words[5:]))
    return commands


COMMANDS = documented_commands()


def test_each_document_gives_both_programs() -> None:
    """The commands are found where the maintainers read them (this test is not empty)."""
    assert {program for _, program, _ in COMMANDS} == set(PROGRAMS)
    assert {document for document, _, _ in COMMANDS} == set(DOCUMENTS)


@pytest.mark.parametrize(
    ("document", "program", "arguments"), COMMANDS, ids=[f"{d}: {p} {' '.join(a)}" for d, p, a in COMMANDS]
)
def test_documented_command_parses(
    document: str, program: str, arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The program accepts the arguments; ``--help`` prints its usage and exits 0."""
    if "--help" in arguments:
        with pytest.raises(SystemExit) as exited:
            PROGRAMS[program](arguments)
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: python -m {program}")
        return
    parsed = PROGRAMS[program](arguments)
    if program == "flag_matrix":
        combo, data, _ = parsed
        assert combo in matrix.all_combos(), f"{document}: {arguments} is no combination of the matrix"
        assert combo.data.items() <= data.items()


@pytest.mark.parametrize(
    ("program", "arguments", "message"),
    [
        ("flag_matrix", ["client-helth-sqlite"], "no flag is called helth"),
        ("flag_matrix", ["bare-nodb", "databse=postgresql"], "'databse' is no question of copier.yml"),
        ("flag_matrix", ["bare-nodb", "port=abc"], "port='abc': port is an int"),
        ("flag_matrix", ["bare-nodb", "metrics=maybe"], "metrics='maybe': metrics is a bool"),
        (
            "flag_matrix",
            ["bare-nodb", "database=mysql"],
            "database='mysql': database is one of none, sqlite, postgresql",
        ),
        ("benchmarks.run", ["matrx"], "unknown benchmark(s) matrx"),
    ],
)
def test_a_mistyped_command_is_refused_with_what_is_wrong(
    program: str, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt flag, question or benchmark is an error that names it, not a run of something else."""
    with pytest.raises(SystemExit) as exited:
        PROGRAMS[program](arguments)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_answers_take_their_question_s_type() -> None:
    """An answer given as NAME=VALUE reaches copier as the question's type: a port an int, a flag a bool."""
    combo, data, _ = flag_matrix_main.parse(["bare-nodb", "port=9000", "metrics=yes", "python_version=3.12"])
    assert (data["port"], data["metrics"], data["python_version"]) == (9000, True, "3.12")
    assert combo.flags == {"metrics"}


def test_template_option_is_a_path(tmp_path: Path) -> None:
    """``--template`` takes the checkout to render from, resolved."""
    assert benchmarks_run.parse(["--template", str(tmp_path / "."), "matrix"]).template == tmp_path.resolve()
