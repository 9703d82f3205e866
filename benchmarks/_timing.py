"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(case: str, measured: str, target: str, passed: bool | None, notes: str = "") -> dict:
    """One line of RESULTS.md."""
    return dict(case=case, measured=measured, target=target, passed=passed, notes=notes)
