"""Helpers shared by the benchmark scripts: tables, timings, the machine's matmul rate and JSON results."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time

from kzoo.utils.files import write_json
from kzoo.utils.tables import format_table

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: Every table this process printed, in order: :func:`write_results` stores them beside the results.
PRINTED_TABLES: list[dict] = []


def table(title: str, rows: list[tuple]) -> None:
    """Print rows (the first is the header) as an aligned table; numbers right-aligned."""
    PRINTED_TABLES.append({"title": title, "rows": [[str(cell) for cell in row] for row in rows]})
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


def machine() -> dict:
    """The machine and library versions a result was measured with."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "torch", "torchvision", "kzoo"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(name: str, results: dict | None = None, path: str | None = None) -> str:
    """Write ``results``, the tables printed so far and :func:`machine` (machine, versions, date) as
    ``benchmarks/results/<name>.json`` (or ``path``); returns the path."""
    path = path or os.path.join(RESULTS_DIR, f"{name}.json")
    write_json(path, {"benchmark": name, "machine": machine(), "tables": PRINTED_TABLES, "results": results or {}})
    print(f"\nresults written to {path}")
    return path


def matmul_gflops(dtype: str = "float32", size: int = 4096, repeats: int = 5) -> float:
    """The machine's dense matmul rate in GFLOP/s (TF, ``size x size`` by ``size x size``)."""
    import tensorflow as tf

    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    seconds = median_seconds(lambda: matmul(a).numpy(), repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9
