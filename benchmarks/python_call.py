"""The Python call: ``model(images)`` (how most people meet a Keras model) against ``tf.function(model.call)`` and
``model.predict``, and against the op-by-op eager run kzoo replaced. Prints tables, writes
``benchmarks/results/python_call.json``.

    python benchmarks/python_call.py                      # Mask R-CNN R50-FPN at 480x640 and 800x800, and NIN
    python benchmarks/python_call.py --sizes 480x640 --repeats 3

What is timed: one call on one uint8 image (Mask R-CNN, random weights, the paper's 800/1333 resize) or a batch of
128 (NIN, the CIFAR-10 variant): the first call (tracing included) and the median of ``--repeats`` later calls.
Each way of calling runs in its own process, so that its peak resident memory (``ru_maxrss``, after the model is
built and all calls ran) is its own; the ways alternate over ``--rounds`` rounds and the tables give medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import table, write_results  # noqa: E402

WAYS = ("model(images)", "tf.function(model.call)", "model.predict", "op by op (before)")


def _one(model_name: str, size: str, way: str, repeats: int) -> dict:
    """Build the model, call it ``repeats + 1`` times ``way``; the timings and the peak RSS (this process)."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    if model_name == "mask_rcnn":
        from kzoo.applications import MaskRCNN

        model = MaskRCNN("resnet50_fpn")
        height, width = (int(v) for v in size.split("x"))
        images = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        inputs = images
    else:
        from kzoo.applications import NIN

        model = NIN(variant="cifar10", input_shape=(32, 32, 3), num_classes=10)
        images = np.random.default_rng(0).uniform(-1, 1, (128, 32, 32, 3)).astype(np.float32)
        inputs = images
    call = {
        "model(images)": lambda: model(inputs),
        "tf.function(model.call)": (lambda fn: lambda: fn(tf.constant(inputs)))(tf.function(model.call)),
        "model.predict": lambda: model.predict(inputs, verbose=0),
        # what model(images) ran before: Keras's eager call, op by op
        "op by op (before)": (lambda: model._inference(tf.constant(inputs)))
        if model_name == "mask_rcnn"
        else (lambda: super(type(model), model).call(tf.constant(inputs), training=False)),
    }[way]
    started = time.perf_counter()
    keras.tree.map_structure(np.asarray, call())
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        keras.tree.map_structure(np.asarray, call())
        times.append(time.perf_counter() - started)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"first_s": first, "median_s": statistics.median(times), "peak_rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["480x640", "800x800"], help="Mask R-CNN image sizes HxW")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-nin", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "SIZE", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(*args.one, args.repeats)))
        return

    cases = [("mask_rcnn", size) for size in args.sizes] + ([] if args.no_nin else [("nin", "128x32x32")])
    measured: dict[str, dict[str, list[dict]]] = {}
    for _ in range(args.rounds):
        for model_name, size in cases:
            for way in WAYS:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", model_name, size, way, "--repeats", str(args.repeats)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                measured.setdefault(f"{model_name} {size}", {}).setdefault(way, []).append(result)
                print(f"{model_name} {size} {way}: {result}", flush=True)

    results = {}
    for case, ways in measured.items():
        medians = {way: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for way, runs in ways.items()}
        base = medians["tf.function(model.call)"]
        rows = [("call", "first call (s)", "median call (s)", "vs tf.function", "peak RSS (MB)", "vs tf.function")]
        for way, m in medians.items():
            rows.append(
                (
                    way,
                    f"{m['first_s']:.2f}",
                    f"{m['median_s']:.3f}",
                    f"{m['median_s'] / base['median_s']:.2f}",
                    f"{m['peak_rss_mb']:.0f}",
                    f"{m['peak_rss_mb'] / base['peak_rss_mb']:.2f}",
                )
            )
        table(f"{case}: the Python call ({args.repeats} calls after the first, median of {args.rounds} rounds)", rows)
        results[case] = medians
    write_results("python_call", results)


if __name__ == "__main__":
    main()
