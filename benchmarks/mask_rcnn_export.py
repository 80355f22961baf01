"""Mask R-CNN export benchmark: file size, export/conversion time and single-image latency of the SavedModel and
of each builtin-only TFLite variant (float32, float16, dynamic-range int8, full-integer int8 network), beside the
Keras model, for the light MobileNetV2-FPN of configs/mask_rcnn_mobilenet_v2_fpn.yaml at 512 x 512. Prints a table.

    python benchmarks/mask_rcnn_export.py
    python benchmarks/mask_rcnn_export.py --variants none int8 --repeats 3 --threads 4
    python benchmarks/mask_rcnn_export.py --config configs/mask_rcnn_r50_fpn.yaml --variants none

Random weights (the graph and its cost do not depend on them: every shape is static, the mask head always runs on
``max_detections`` boxes). Latency is the median over ``--repeats`` runs after one warmup run, of one 512 x 512
image (``serving_default`` for the SavedModel; the LiteRT signature runner, XNNPACK on, ``--threads`` threads, for
the TFLite files). The int8 variant is calibrated on ``--calibration`` generated shapes images. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import median_seconds, table, write_results  # noqa: E402

from kzoo.applications import MaskRCNN  # noqa: E402
from kzoo.data.shapes import make_shapes_instances  # noqa: E402
from kzoo.export.mask_rcnn import convert_mask_rcnn_tflite, export_mask_rcnn_saved_model  # noqa: E402
from kzoo.export.tflite import QUANTIZE_MODES  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = {
    "none": "float32",
    "float16": "float16 weights",
    "dynamic": "dynamic range (int8 weights)",
    "int8": "int8 network, float post-processing",
}


def directory_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "mask_rcnn_mobilenet_v2_fpn.yaml"))
    parser.add_argument("--size", type=int, default=512, help="square input side (also min_size and max_size)")
    parser.add_argument("--variants", nargs="+", default=list(QUANTIZE_MODES), choices=QUANTIZE_MODES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="LiteRT CPU threads")
    parser.add_argument("--calibration", type=int, default=8, help="int8 calibration images")
    parser.add_argument("--no-saved-model", action="store_true")
    parser.add_argument("--out-dir", default=None, help="keep the files here (default: a temporary directory)")
    args = parser.parse_args()

    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(0)
    model = MaskRCNN(config=args.config, min_size=args.size, max_size=args.size)
    config = model.config
    model(np.zeros((1, args.size, args.size, 3), np.uint8))
    image = make_shapes_instances(1, args.size, seed=1)[0]["image"][None]
    calibration = np.stack([e["image"] for e in make_shapes_instances(args.calibration, args.size, seed=2)])
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores, LiteRT threads "
        f"{args.threads}; {os.path.basename(args.config)} at {args.size}x{args.size}, backbone {config.backbone.name}, "
        f"{model.count_params() / 1e6:.2f} M parameters"
    )

    pixels = image  # uint8: kzoo's .tflite files take uint8 pixels
    rows = [("artifact", "size (MB)", "export (s)", "latency (ms)")]
    graph = tf.function(model.call)
    graph(tf.constant(image))
    keras_ms = 1000 * median_seconds(lambda: graph(tf.constant(image)), args.repeats)
    rows.append(("Keras model (tf.function)", f"{model.count_params() * 4 / 1e6:.1f}", "-", f"{keras_ms:.0f}"))
    print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as temp:
        out_dir = args.out_dir or temp
        os.makedirs(out_dir, exist_ok=True)
        if not args.no_saved_model:
            start = time.perf_counter()
            path = export_mask_rcnn_saved_model(model, os.path.join(out_dir, "serving"), "mask_rcnn")
            seconds = time.perf_counter() - start
            serve = tf.saved_model.load(path).signatures["serving_default"]
            serve(images=tf.constant(image))
            ms = 1000 * median_seconds(lambda: serve(images=tf.constant(image)), args.repeats)
            rows.append(
                ("SavedModel serving_default", f"{directory_size(path) / 1e6:.1f}", f"{seconds:.0f}", f"{ms:.0f}")
            )
            print(rows[-1], flush=True)
        for quantize in args.variants:
            path = os.path.join(out_dir, f"mask_rcnn_{quantize}.tflite")
            start = time.perf_counter()
            convert_mask_rcnn_tflite(model, path, (args.size, args.size), quantize, representative_images=calibration)
            seconds = time.perf_counter() - start
            interpreter = Interpreter(model_path=path, num_threads=args.threads)
            runner = interpreter.get_signature_runner("serving_default")
            runner(images=pixels)
            ms = 1000 * median_seconds(lambda r=runner: r(images=pixels), args.repeats)
            rows.append(
                (f"TFLite {NAMES[quantize]}", f"{os.path.getsize(path) / 1e6:.1f}", f"{seconds:.0f}", f"{ms:.0f}")
            )
            print(rows[-1], flush=True)
    table(f"Mask R-CNN export, one {args.size}x{args.size} image (median of {args.repeats})", rows)
    write_results("mask_rcnn_export")


if __name__ == "__main__":
    main()
