"""How fast this machine is: the CPU time of one fixed pure-Python loop.

Machines of the same kind differ: the suite's CPU seconds on one can be
three times those on another. Figures measured on two machines compare
once each is divided by this reference, measured on the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Long enough to time steadily, short enough to run at the end of every run of the suite.
REFERENCE_LOOP = 3_000_000


def reference_seconds(rounds: int = 3, clock: Callable[[], float] = time.process_time) -> float:
    """The least time on ``clock`` (this process's CPU time), of ``rounds`` runs, of a fixed loop
    of integer arithmetic: the other load of a shared machine only ever adds to a run's."""
    best = float("inf")
    for _ in range(rounds):
        started = clock()
        sum(i * i for i in range(REFERENCE_LOOP))
        best = min(best, clock() - started)
    return best
