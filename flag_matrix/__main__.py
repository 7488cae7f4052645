"""Render one combination and run every check the suite runs on it.

python -m flag_matrix client-health-v-trace-auth-metrics-sqlite
python -m flag_matrix --keep /tmp/out database=none metrics=false
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from flag_matrix.checks import DEFAULT_POSTGRES_URL, content_checks, static_checks, test_env
from flag_matrix.deploy import deploy_checks
from flag_matrix.forkserver import ForkServer
from flag_matrix.render import render, snapshot
from flag_matrix.space import FLAGS, QUESTIONS, Combo

BOOLS = {"true": True, "yes": True, "false": False, "no": False}


def answer(question: str, text: str) -> object:
    """``text`` as an answer to ``question``: of its type, one of its choices if it has them.

    ``ValueError`` says what is wrong, where copier would stop with a
    traceback (an ``int`` that is not one) or take it as something else
    (``maybe`` as a bool).
    """
    spec = QUESTIONS[question]
    kind = spec.get("type", "str")
    value: object = text
    if kind == "bool":
        if text.lower() not in BOOLS:
            msg = f"{question}={text!r}: {question} is a bool, one of {', '.join(BOOLS)}"
            raise ValueError(msg)
        value = BOOLS[text.lower()]
    elif kind == "int":
        try:
            value = int(text)
        except ValueError:
            msg = f"{question}={text!r}: {question} is an int"
            raise ValueError(msg) from None
    listed = spec.get("choices", [])
    choices = [str(choice) for choice in (listed.values() if isinstance(listed, Mapping) else listed)]
    if choices and text not in choices:
        msg = f"{question}={text!r}: {question} is one of {', '.join(choices)}"
        raise ValueError(msg)
    return value


def parse(argv: list[str] | None = None) -> tuple[Combo, dict[str, object], Path | None]:
    """The command line's combination, its answers (the combination's, then those given) and ``--keep``."""
    parser = argparse.ArgumentParser(
        prog="python -m flag_matrix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("combo", nargs="*", help="a combination id, or answers as NAME=VALUE")
    parser.add_argument("--keep", type=Path, help="render into this folder and keep it")
    args = parser.parse_args(argv)
    data: dict[str, object] = {}
    combo = Combo("sqlite", frozenset(flag for flag in FLAGS if flag != "opentelemetry"))
    for item in args.combo:
        if "=" in item:
            key, value = item.split("=", 1)
            if key not in QUESTIONS:
                parser.error(f"{key!r} is no question of copier.yml; questions: {', '.join(QUESTIONS)}")
            try:
                data[key] = answer(key, value)
            except ValueError as error:
                parser.error(str(error))
        else:
            try:
                combo = Combo.from_id(item)
            except ValueError as error:
                parser.error(str(error))
    data = combo.data | data
    combo = Combo(str(data["database"]), frozenset(flag for flag in FLAGS if data.get(flag) is True))
    return combo, data, args.keep


def main() -> int:
    """Render one combination and run every check on it."""
    combo, data, keep = parse()
    work = Path(tempfile.mkdtemp(prefix="matrix-"))
    tree = keep or work / "service"
    if tree.exists():
        shutil.rmtree(tree)
    render(snapshot(work / "template"), tree, data)
    print(f"rendered {data} into {tree}")
    failures = [*content_checks(tree), *deploy_checks(tree, combo), *static_checks(tree)]
    server = ForkServer()
    try:
        postgres = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        failures.extend(filter(None, [server.pytest(tree, test_env(combo, postgres))]))
    finally:
        server.close()
    for failure in failures:
        print(failure)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
