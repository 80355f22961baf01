"""Helpers shared by the benchmark scripts: tables and timings."""

from __future__ import annotations

import statistics
import time

from kzoo.utils.tables import format_table


def table(title: str, rows: list[tuple]) -> None:
    """Print rows (the first is the header) as an aligned table; numbers right-aligned."""
    print("\n" + format_table(title, rows, right_align=True))


def median_seconds(fn, repeats: int, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
