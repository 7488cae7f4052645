"""The machine's speed, which the suite's summary and the benchmarks' header print."""

from __future__ import annotations

from flag_matrix.machine import reference_seconds


def test_the_reference_is_the_fastest_of_its_rounds() -> None:
    """Of three rounds taking 5, 2 and 7 s on the clock, the reference is 2 s."""
    ticks = iter([0.0, 5.0, 10.0, 12.0, 20.0, 27.0])
    assert reference_seconds(3, clock=lambda: next(ticks)) == 2.0


def test_the_reference_is_this_process_cpu_time() -> None:
    """Measured for real, it is a positive time, below a minute on any machine that runs the suite."""
    assert 0.0 < reference_seconds(1) < 60.0
