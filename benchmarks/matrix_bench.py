"""The matrix: where the template suite's time goes, per combination and per phase.

Each combination goes through what ``tests/test_matrix.py`` does to it, with
the functions of the ``flag_matrix`` package, timed phase by phase: render (copier, in
process), content checks (in process), ruff (check and format, subprocesses),
mypy (a subprocess, one cache for the run: cold for the first combination, warm
after, as in a suite worker) and the rendered pytest (a forked child of the
warm fork server, which reports the child's CPU time).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from pathlib import Path

import flag_matrix as matrix
from benchmarks import common
from benchmarks.common import Stopwatch

PHASES = ["render", "content", "ruff", "mypy", "pytest"]


def _static_checks(tree: Path, wall: dict[str, float], cpu: dict[str, float]) -> list[matrix.Failure]:
    """ruff's two checks, then mypy, each to its end before the next starts, so that each phase is timed alone.

    The suite starts them at once (`flag_matrix.start_static_checks`); the commands are the same.
    """
    failures = []
    with Stopwatch() as watch:
        for name, args in (("ruff check", ["check"]), ("ruff format", ["format", "--check"])):
            failure = matrix.start_check(name, [str(matrix.BIN / "ruff"), *args, "--no-cache", "."], tree)()
            failures += [failure] if failure else []
    wall["ruff"], cpu["ruff"] = watch.wall, watch.cpu
    server = matrix.mypy_server()
    with Stopwatch() as watch:
        failure = server.submit(tree, ["--cache-dir", os.environ["MATRIX_MYPY_CACHE"]], {})()
    wall["mypy"], cpu["mypy"] = watch.wall, server.cpu  # the server's child, not this process
    return [*failures, *([failure] if failure else [])]


def run(template: Path, sample: int, seed: int) -> None:
    """Time every phase of ``sample`` combinations (all when 0), then summarise."""
    common.header("The template's matrix, phase by phase")
    combos = matrix.all_combos()
    if 0 < sample < len(combos):
        combos = sorted(random.Random(seed).sample(combos, sample))
    postgres = os.environ.get("TEST_POSTGRES_URL", matrix.DEFAULT_POSTGRES_URL)
    print(
        f"{len(combos)} of {len(matrix.all_combos())} combinations (seed {seed}), one after another in one"
        " process (the suite runs them on both cores with pytest -n auto)."
    )
    with common.workdir("bench-matrix-") as work:
        os.environ["MATRIX_MYPY_CACHE"] = str(work / "mypy-cache")
        snap = common.template_snapshot(template, work / "template")
        with Stopwatch() as start_server:
            server = matrix.ForkServer()
        print(f"fork server start (imports paid once per worker): {start_server.wall:.2f} s wall")
        per_combo: list[tuple[str, dict[str, float], dict[str, float], int]] = []
        times: dict[str, list[float]] = {f"{p}.{k}": [] for p in PHASES for k in ("wall", "cpu")}
        started = time.perf_counter()
        try:
            for combo in combos:
                wall: dict[str, float] = {}
                cpu: dict[str, float] = {}
                tree = work / combo.id
                with Stopwatch() as watch:
                    matrix.render(snap, tree, combo.data)
                wall["render"], cpu["render"] = watch.wall, watch.cpu
                with Stopwatch() as watch:
                    failures = list(matrix.content_checks(tree))
                wall["content"], cpu["content"] = watch.wall, watch.cpu
                failures += _static_checks(tree, wall, cpu)
                with Stopwatch() as watch:
                    failure = server.pytest(tree, matrix.test_env(combo, postgres))
                wall["pytest"], cpu["pytest"] = watch.wall, server.cpu
                failures += [failure] if failure else []
                for p in PHASES:
                    times[f"{p}.wall"].append(wall[p])
                    times[f"{p}.cpu"].append(cpu[p])
                per_combo.append((combo.id, wall, cpu, len(failures)))
                failed = (
                    f"  {len(failures)} check(s) FAILED: {', '.join(f.check for f in failures)}" if failures else ""
                )
                print(
                    f"  {combo.id:45} "
                    + " ".join(f"{p} {wall[p]:5.2f}" for p in PHASES)
                    + f"  total {sum(wall.values()):5.2f} s{failed}",
                    flush=True,
                )
                for failure in failures:  # enough to tell what broke; the suite shows the rest
                    print("      " + "\n      ".join(str(failure).splitlines()[:4]))
                shutil.rmtree(tree, ignore_errors=True)
        finally:
            server.close()
        total = time.perf_counter() - started
    _summarise(per_combo, times, total, len(matrix.all_combos()))


def _summarise(
    per_combo: list[tuple[str, dict[str, float], dict[str, float], int]],
    times: dict[str, list[float]],
    total: float,
    every: int,
) -> None:
    n = len(per_combo)
    all_wall = sum(sum(wall.values()) for _, wall, _, _ in per_combo)
    rows = []
    for p in PHASES:
        wall, cpu = times[f"{p}.wall"], times[f"{p}.cpu"]
        rows.append(
            [
                p,
                f"{sum(wall):.1f}",
                f"{sum(wall) / n:.2f}",
                f"{common.median(wall):.2f}",
                f"{max(wall):.2f}",
                f"{100 * sum(wall) / all_wall:.0f}%",
                f"{sum(cpu):.1f}",
                f"{sum(cpu) / n:.2f}",
            ]
        )
    print()
    print(common.table(rows, ["phase", "wall s", "wall/combo", "median", "max", "share", "CPU s", "CPU/combo"]))
    print(
        "mypy's cache is new for this run: a combination that first imports a library (OpenTelemetry, say)"
        " pays for analysing it once, as the first such combination in a suite worker does."
    )
    print(f"total: {total:.1f} s wall for {n} combinations, {total / n:.2f} s each")
    if n < every:
        print(f"at this rate all {every} take about {total / n * every / 60:.1f} min in one process")
    failed = [combo_id for combo_id, _, _, count in per_combo if count]
    if failed:
        print(f"combinations with failed checks (see the lines above): {', '.join(failed)}")
    slowest = sorted(per_combo, key=lambda item: -sum(item[1].values()))[:3]
    print("slowest: " + ", ".join(f"{cid} {sum(wall.values()):.2f} s" for cid, wall, _, _ in slowest))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    group = parser.add_argument_group("matrix")
    group.add_argument(
        "--sample", type=int, default=16, help="combinations to time, drawn at random; 0 for all 288 (16)"
    )
    group.add_argument("--seed", type=int, default=7, help="the random draw's seed (7)")


def main(args: argparse.Namespace) -> None:
    """Run from ``run.py``."""
    run(args.template, args.sample, args.seed)
