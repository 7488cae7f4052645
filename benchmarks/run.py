"""Run the benchmarks: figures to read, never a pass or a fail.

    python -m benchmarks.run                      # all six, in order
    python -m benchmarks.run throughput routes    # only those
    python -m benchmarks.run asgi --profile       # where the rendered service's time goes
    python -m benchmarks.run --template /path/to/another/checkout matrix --sample 8

Benchmarks: ``throughput`` (``/health/live`` of the rendered service and of
bare FastAPI, each on uvloop + httptools and on asyncio + h11, under wrk),
``routes`` (the rendered items routes against a hand-written FastAPI +
SQLAlchemy app, on SQLite and PostgreSQL, under wrk), ``asgi`` (the same three apps' cost per request in
process, no network; ``--profile`` adds a pyinstrument profile), ``client`` (the resilient client against raw httpx,
and an open circuit), ``matrix`` (the template suite's phases per combination),
``copier`` (``copier copy`` and ``copier update`` from the CLI). Each renders
from a snapshot of ``--template`` (default: this repository's working tree).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from benchmarks import asgi_bench, client_bench, common, copier_bench, matrix_bench, routes_bench, throughput

BENCHMARKS = {
    "throughput": throughput,
    "routes": routes_bench,
    "asgi": asgi_bench,
    "client": client_bench,
    "matrix": matrix_bench,
    "copier": copier_bench,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options; an unknown benchmark is an error."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "only", nargs="*", metavar="NAME", help=f"benchmarks to run ({', '.join(BENCHMARKS)}); all when none is named"
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=common.REPO,
        help="the template checkout to render from (default: this repository)",
    )
    for module in BENCHMARKS.values():
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    args.template = args.template.resolve()
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


def main() -> int:
    """Parse the options, then run each benchmark asked for."""
    args = parse()
    names = args.only or list(BENCHMARKS)
    print(f"benchmarks {', '.join(names)} of {args.template}")
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {common.machine()}")
    for name in names:
        BENCHMARKS[name].main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
