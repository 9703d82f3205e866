"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from pathlib import Path


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


def proc_status() -> dict:
    """VmRSS and VmHWM of this process, in bytes (Linux's /proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out
