"""The flag matrix: every combination of the template's flags, how to render one, and how to check it.

What the template's suite (``tests/``) and its benchmarks (``benchmarks/``)
share: the flag space read from ``copier.yml`` (`space`), rendering
(`render`), the checks of a rendered tree (`checks`, `deploy`), the warm
servers that run its tests and mypy (`forkserver`), the other Pythons its
tests run on (`pythons`), and how fast the machine is (`machine`), so that
figures from different machines compare. From the shell, one combination at
a time::

    python -m flag_matrix client-health-v-trace-auth-metrics-sqlite
    python -m flag_matrix --keep /tmp/out database=none metrics=false
"""

from flag_matrix.checks import (
    BIN,
    DEFAULT_POSTGRES_URL,
    content_checks,
    dependency_problems,
    mypy_server,
    start_check,
    start_static_checks,
    static_checks,
    test_env,
)
from flag_matrix.forkserver import Failure, ForkServer
from flag_matrix.render import render, snapshot
from flag_matrix.space import DATABASES, FLAGS, REPO, SPACE, Combo, FlagSpace, all_combos

__all__ = [
    "BIN",
    "DATABASES",
    "DEFAULT_POSTGRES_URL",
    "FLAGS",
    "REPO",
    "SPACE",
    "Combo",
    "Failure",
    "FlagSpace",
    "ForkServer",
    "all_combos",
    "content_checks",
    "dependency_problems",
    "mypy_server",
    "render",
    "snapshot",
    "start_check",
    "start_static_checks",
    "static_checks",
    "test_env",
]
