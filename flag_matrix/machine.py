"""How fast this machine is: the CPU time of one fixed pure-Python loop.

Machines of the same kind differ: the suite's CPU seconds on one can be
three times those on another. Figures measured on two machines compare
once each is divided by this reference, measured on the same machine.
"""

from __future__ import annotations

import time

# Long enough to time steadily, short enough to run at the end of every run of the suite.
REFERENCE_LOOP = 3_000_000


def reference_seconds(rounds: int = 3) -> float:
    """The least CPU time, of ``rounds`` runs, of a fixed loop of integer arithmetic."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        sum(i * i for i in range(REFERENCE_LOOP))
        best = min(best, time.process_time() - started)
    return best
